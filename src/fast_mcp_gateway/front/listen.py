"""``subscriptions/listen`` for 2026-07-28 hosts, with resource subscriptions made upstream.

The SDK's ``ListenHandler`` serves a listen stream from an event bus (``FrontHub.bus``);
it subscribes nothing.  A host's ``resource_subscriptions`` name exposed URIs, whose
upstream only sends ``resources/updated`` (or listen events) once *it* is subscribed.
``SubscribingListen`` subscribes each on its owning upstream (the namespaced URI
mapped back to the upstream's own) before the stream is acknowledged, and
unsubscribes when the stream ends, unless another host (a listen stream or a
handshake-era ``resources/subscribe``) still holds the URI.

A URI that cannot be subscribed (unknown, not visible to the caller, its upstream
does not offer subscriptions, or the upstream refused) is left out of the ack's
honored filter, so the host can tell, and the reason is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.hub import FrontHub
from fast_mcp_gateway.routing.service import Service

logger = logging.getLogger(__name__)

UNSUBSCRIBE_BUDGET = 5.0
"""Seconds the unsubscriptions of an ended stream may take (it ends on a disconnect)."""


class SubscribingListen:
    """The ``subscriptions/listen`` request handler (see the module docstring).

    ``origin(uri)`` maps an exposed URI to its service and the upstream's URI, raising
    ``MCPError`` when the caller has no such resource.
    """

    def __init__(self, hub: FrontHub, origin: Callable[[str], tuple[Service, str]]) -> None:
        self._hub = hub
        self._origin = origin
        self._handler = ListenHandler(hub.bus)

    async def __call__(self, ctx: ServerRequestContext[Any],
                       params: types.SubscriptionsListenRequestParams
                       ) -> types.SubscriptionsListenResult:
        wanted = list(params.notifications.resource_subscriptions or ())
        held: list[tuple[str, Service, str]] = []
        try:
            for uri in wanted:
                subscribed = await self._subscribe(uri)
                if subscribed is not None:
                    held.append((uri, *subscribed))
            if len(held) != len(wanted):
                honored = [uri for uri, _, _ in held] or None
                params = params.model_copy(update={"notifications": params.notifications
                                                   .model_copy(update={
                                                       "resource_subscriptions": honored})})
            return await self._handler(ctx, params)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(UNSUBSCRIBE_BUDGET):
                for uri, service, original in held:
                    if self._hub.unlisten(uri):
                        try:
                            await service.unsubscribe(original)
                        except (UpstreamError, MCPError) as exc:
                            logger.debug("unsubscribe %s upstream failed: %s",
                                         logged_name(uri), exc)

    async def _subscribe(self, uri: str) -> tuple[Service, str] | None:
        shown = logged_name(uri)  # a host's to choose: a long one is cut in log lines
        try:
            service, original = self._origin(uri)
        except MCPError as exc:
            logger.info("subscriptions/listen: not subscribing %s: %s", shown,
                        exc.error.message)
            return None
        caps = service.capabilities
        if caps is None or caps.resources is None or not caps.resources.subscribe:
            logger.info("subscriptions/listen: not subscribing %s: upstream '%s' does not "
                        "support resource subscriptions", shown, service.name)
            return None
        try:
            await service.subscribe(original)
        except (UpstreamError, MCPError) as exc:
            logger.warning("subscriptions/listen: not subscribing %s: upstream '%s' refused: "
                           "%s", shown, service.name, exc)
            return None
        self._hub.listen(uri)
        return service, original
