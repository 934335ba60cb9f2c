"""The host's resource and completion requests the gateway answers itself.

A handshake-era HTTP host's ``notifications/roots/list_changed`` is forwarded to its
own ``per_client`` sessions (keyed by its connection), which then ask it again
(``upstream/roots.py``); no other session is told.  The stdio host's goes through the
lane (``front/lane.py``): its sessions are keyed ``STDIO_HOST``, never a connection.  A
2026-07-28 HTTP host's never reaches this handler (the SDK's modern entry answers it 202
and drops it): ``http/roots_changed.py`` notes it in front of the SDK.

``resources/subscribe`` and ``resources/unsubscribe`` (the front hub fans an upstream's
``resources/updated`` out to the subscribed host connections), ``subscriptions/listen``
(2026-07-28) and ``completion/complete``: each finds the upstream behind an exposed
name or URI -- a listed resource, a template it matches, or a link a result gave -- the
caller may reach (its principal's servers, within the profile in force; outside them
the answer is "Unknown ...", as for lists) and asks that server with its own names.

A handshake-era host that sets a level with ``logging/setLevel`` asked for logs: the
hub tracks it then (``FrontHub.track``), as when it lists the catalog, so that the logs
an upstream sends between calls reach it even if it never lists (a script, or the
Inspector's CLI, calling a tool it knows by name).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mcp_types as types
from fastmcp import FastMCP
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway._compat import connection_of, current_transport, low_level_server
from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.homes import Home
from fast_mcp_gateway.front.listen import SubscribingListen
from fast_mcp_gateway.front.moving import SubscriptionMover, unsubscribe_within
from fast_mcp_gateway.front.outbox import caller_name
from fast_mcp_gateway.front.server import caller_may_use
from fast_mcp_gateway.routing.lifecycle import tell_host_roots_changed
from fast_mcp_gateway.routing.view import normalize_uri
from fast_mcp_gateway.routing.waiting import until_usable

if TYPE_CHECKING:
    from fast_mcp_gateway.front.hub import FrontHub
    from fast_mcp_gateway.front.provider import GatewayProvider
    from fast_mcp_gateway.front.server import StartupGate
    from fast_mcp_gateway.principal import Standing
    from fast_mcp_gateway.routing.manager import UpstreamManager
    from fast_mcp_gateway.routing.service import Service

logger = logging.getLogger(__name__)

LET_GO_BUDGET = 4.0
"""Seconds the upstream unsubscriptions of a host that left may take: they run in the
closing connection's cleanup, which the SDK bounds at 5 s."""


class HostRequests:
    """Subscribe, unsubscribe, listen and complete, routed to the owning upstream."""

    def __init__(self, manager: UpstreamManager, provider: GatewayProvider, hub: FrontHub,
                 startup: StartupGate) -> None:
        self._manager = manager
        self._provider = provider
        self._hub = hub
        self._startup = startup
        hub.release = self._let_go
        # Run by the gateway's root task group (``Gateway``).
        self.mover = SubscriptionMover(manager, hub, self._resource_origin)

    def install(self, server: FastMCP[Any]) -> None:
        """Register the handlers on ``server``'s low-level server."""
        low = low_level_server(server)
        low.add_request_handler(
            "subscriptions/listen", types.SubscriptionsListenRequestParams,
            SubscribingListen(self._hub, self._resource_origin, self._caller,
                              self._manager.services.get, self.mover.unsubscribe_old,
                              placing=self.mover.placing))
        low.add_request_handler("resources/subscribe", types.SubscribeRequestParams,
                                self._on_subscribe)
        low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams,
                                self._on_unsubscribe)
        low.add_request_handler("completion/complete", types.CompleteRequestParams,
                                self._on_complete)
        low.add_notification_handler("notifications/roots/list_changed",
                                     types.NotificationParams, self._on_roots_changed)
        low.middleware.append(self._track_level_setter)

    async def _track_level_setter(self, ctx: ServerRequestContext[Any, Any],
                                  call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        connection = connection_of(ctx.session)
        # Answered: the host asked for logs.  One the hub knows keeps what its requests
        # told (``CallerStanding`` refreshes it at each through FastMCP's own context).
        if ctx.method == "logging/setLevel" and not self._hub.knows(connection):
            self._hub.track(connection, sole_host=current_transport() == "stdio",
                            may_use=caller_may_use(self._provider),
                            who=caller_name(self._provider))
        return result

    async def _on_roots_changed(self, ctx: ServerRequestContext[Any],
                                params: types.NotificationParams) -> None:
        host = connection_of(ctx.session)
        if host is not None:
            await tell_host_roots_changed(self._manager.services.values(), host)

    def _caller(self) -> tuple[Standing, Callable[[str], bool]]:
        """The current request's caller for later: its standing, and whether it may use
        a server (``caller_may_use``)."""
        standing = self._provider.pipeline.standing()
        return standing, caller_may_use(self._provider, standing)

    def _visible(self, server: str) -> bool:
        """Whether the caller reaches ``server``'s resources and completions: its own
        access, within the profile in force (outside it: "Unknown ...", as for lists)."""
        active = self._provider.active_profile()
        return self._provider.pipeline.resolve_principal().may_use(server) and (
            active is None or active.shows_server(server))

    def _resource_origin(self, uri: str, visible: Callable[[str], bool] | None = None
                         ) -> tuple[Service, str]:
        visible = visible or self._visible
        view = self._manager.view
        entry = view.resources.get(uri) or view.resources.get(normalize_uri(uri))
        if entry is not None and visible(entry[0].server):
            return self._manager.services[entry[0].server], entry[0].original
        from fastmcp.resources.template import forward_uri, match_uri_template

        for exposed, (origin, _) in view.templates.items():
            params = match_uri_template(uri, exposed)
            if params is not None and visible(origin.server):
                service = self._manager.services[origin.server]
                return service, forward_uri(origin.original, params, uri)
        linked = self._provider.links.resolve(uri)  # a link a result or prompt gave
        if linked is not None and visible(linked[0]):
            return self._manager.services[linked[0]], linked[1]
        raise MCPError(code=types.INVALID_PARAMS,
                       message=self._provider.unknown("resource", uri), data={"uri": uri})

    async def _on_subscribe(self, ctx: ServerRequestContext[Any],
                            params: types.SubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        placed = self.mover.placing()
        upstream, original = self._resource_origin(uri)
        # A server still making its first connect (or coming back) has no capabilities
        # yet: wait for it as a read does, rather than refuse what it may well support.
        await until_usable(upstream.replicas, upstream.wait_until)
        caps = upstream.capabilities
        if caps is not None and (caps.resources is None or not caps.resources.subscribe):
            raise MCPError(code=types.INVALID_PARAMS, message=f"upstream '{upstream.name}' "
                           "does not support resource subscriptions")
        # No capabilities: not connected (``upstream.subscribe`` says why).
        connection = connection_of(ctx.session)
        home = Home(upstream.name, original)
        again = self._hub.subscribed(uri, connection)
        # Held from now on: a host letting go of the URI while the upstream is asked
        # leaves it subscribed (it unsubscribed it, after this request, before).  Where
        # it was held until now, if elsewhere (moved by a reload), is let go of.
        moved = self._hub.subscribe(uri, connection, home, caller_may_use(self._provider))
        placed()
        try:
            await upstream.subscribe(original)
        except UpstreamError as exc:
            left = None if again else self._hub.unsubscribe(uri, connection)
            if left is not None:
                await self._let_go(uri, left)  # another host's, let go of meanwhile
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from exc
        finally:
            for old in moved:
                await self.mover.unsubscribe_old(uri, old)
        return types.EmptyResult()

    async def _let_go(self, uri: str, home: Home) -> None:
        """Unsubscribe ``home``'s server from its URI: the last host subscribed to
        ``uri`` left without unsubscribing (``FrontHub.release``).  The server as it
        runs now (a restart carried the subscription to its new session); not if a
        reload removed it (its sessions, and their subscriptions, are gone); a failure
        is logged."""
        upstream = self._manager.services.get(home.server)
        if upstream is None:
            return
        failure = await unsubscribe_within(upstream, home.original, LET_GO_BUDGET)
        if failure is None:
            return
        logger.warning("could not unsubscribe upstream '%s' from %s after the last host "
                       "subscribed to it left: %s (it may go on sending updates, which "
                       "reach nobody)", upstream.name, logged_name(uri), failure)

    async def _on_unsubscribe(self, ctx: ServerRequestContext[Any],
                              params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        uri, connection = str(params.uri), connection_of(ctx.session)
        if not self._hub.subscribed(uri, connection):
            self._resource_origin(uri)   # an unknown URI is refused as unknown
            return types.EmptyResult()
        # Its own subscription is let go of where it is held (``FrontHub.home``), even
        # when a reload took the server from its caller since: the upstream's would stay
        # subscribed otherwise.  One whose server was removed is held nowhere (answered,
        # not refused as unknown: it was the host's to let go of).
        home = self._hub.unsubscribe(uri, connection)
        upstream = self._manager.services.get(home.server) if home is not None else None
        if home is not None and upstream is not None:
            try:
                await upstream.unsubscribe(home.original)
            except (UpstreamError, MCPError) as exc:
                logger.debug("unsubscribe %s upstream failed: %s", logged_name(uri), exc)
        return types.EmptyResult()

    async def _on_complete(self, ctx: ServerRequestContext[Any],
                           params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        upstream_ref: types.PromptReference | types.ResourceTemplateReference
        known = (self._manager.route_prompt(ref.name) if isinstance(ref, types.PromptReference)
                 else self._manager.view.templates.get(ref.uri))
        if known is None:  # its server may still be connecting (initialize does not wait)
            await self._startup.settled()
        if isinstance(ref, types.PromptReference):
            route = self._manager.route_prompt(ref.name)
            if route is None or not self._visible(route[0].name):
                raise MCPError(code=types.INVALID_PARAMS,
                               message=self._provider.unknown("prompt", ref.name))
            upstream = route[0]
            upstream_ref = types.PromptReference(type="ref/prompt", name=route[1].name)
        else:
            entry = self._manager.view.templates.get(ref.uri)
            if entry is None or not self._visible(entry[0].server):
                raise MCPError(code=types.INVALID_PARAMS,
                               message=f"Unknown resource template: {ref.uri!r} "
                                       "(resources/templates/list lists them)")
            upstream = self._manager.services[entry[0].server]
            upstream_ref = types.ResourceTemplateReference(type="ref/resource",
                                                           uri=entry[0].original)
        caps = upstream.capabilities
        if caps is None or caps.completions is None:
            return types.CompleteResult(completion=types.Completion(values=[]))
        context_args = params.context.arguments if params.context else None
        try:
            return await upstream.complete(
                upstream_ref, {"name": params.argument.name, "value": params.argument.value},
                context_args,
            )
        except UpstreamError as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from exc
