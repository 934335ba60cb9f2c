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

A stream's updates are sent only while its caller may use the URI's server as the
running config has it (``may_use``, asked per event: a reload that narrows a token's
``servers`` stops them at once, as for a handshake-era ``resources/subscribe``).  The
SDK's handler registers each stream's listener on the bus from the stream's own task:
``_StreamBus`` wraps that listener in the stream's filter (``_KEEP``), and the one
handler keeps its limit on open streams.

A stream ends when its caller's credential no longer stands (a reload removed the token
from ``gateway.auth``, or its JWT expired), or when it may reach none of its URIs any
more and asked for no list changes (a reload narrowed the token's ``servers``, or
removed their server): it would deliver nothing more, yet hold its slot and its
upstream subscriptions until the host left.  The host is sent the stream's result, the
spec's graceful close; a new request with a removed credential is refused (401) as any
is.  Each is looked at again at ``FrontHub.reach_changed``.  A stream that still
reaches a URI stays open, and lets go of the URIs it lost at once (the upstream is
unsubscribed unless another host holds them); one that comes back while the stream is
open (a later reload gives the server back, or the token's ``servers`` again) is taken
up again: the host's filter, acknowledged, still names it, and nothing told the host
it was lost.  A URI a reload gave to another server follows it (``front/moving.py``):
each of a stream's URIs is held where it resolves for its caller (a ``Holding``, which
``FrontHub.rehome`` moves), and the stream keeps the updates of that server only
(``ServedUpdate``: another caller may hold the URI at another server).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    ListenHandler,
    ResourceUpdated,
    ServerEvent,
    SubscriptionBus,
)
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.homes import Home
from fast_mcp_gateway.front.hub import FrontHub, Holding, ServedUpdate
from fast_mcp_gateway.principal import Standing
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.routing.waiting import until_usable
from fast_mcp_gateway.upstream.model import UpstreamState

logger = logging.getLogger(__name__)

UNSUBSCRIBE_BUDGET = 5.0
"""Seconds the unsubscriptions of an ended stream may take (it ends on a disconnect)."""

def _held() -> None:
    return None


_KEEP: ContextVar[Callable[[ServerEvent], bool] | None] = ContextVar("listen_keep",
                                                                     default=None)


class _StreamBus:
    """``bus`` whose listeners, registered in a listen stream's task, are given only the
    events that stream's filter (``_KEEP``) keeps."""

    def __init__(self, bus: SubscriptionBus) -> None:
        self._bus = bus

    async def publish(self, event: ServerEvent) -> None:
        await self._bus.publish(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        keep = _KEEP.get()
        if keep is None:
            return self._bus.subscribe(listener)

        def deliver(event: ServerEvent) -> None:
            if keep(event):
                listener(event)

        return self._bus.subscribe(deliver)


class SubscribingListen:
    """The ``subscriptions/listen`` request handler (see the module docstring).

    ``origin(uri, visible)`` maps an exposed URI to its service and the upstream's URI,
    raising ``MCPError`` when the caller has no such resource (of a server ``visible``
    says it may use, if given); ``caller()``, asked in the request, its caller's
    standing and whether it may use a server when asked (``caller_may_use``);
    ``current(server)`` the server as it runs now; ``unsubscribe_old(uri, home)`` lets go
    of a URI's subscription where it was held before another server served it;
    ``placing()``, called as a URI is resolved, what to call once the hub holds it
    (``SubscriptionMover.placing``: a catalog build in between may have moved it).
    """

    def __init__(self, hub: FrontHub,
                 origin: Callable[[str, Callable[[str], bool] | None], tuple[Service, str]],
                 caller: Callable[[], tuple[Standing, Callable[[str], bool]]],
                 current: Callable[[str], Service | None],
                 unsubscribe_old: Callable[[str, Home], Awaitable[None]], *,
                 placing: Callable[[], Callable[[], None]] = lambda: _held) -> None:
        self._hub = hub
        self._placing = placing
        self._origin = origin
        self._caller = caller
        self._current = current
        self._unsubscribe_old = unsubscribe_old
        self._handler = ListenHandler(_StreamBus(hub.bus))

    async def __call__(self, ctx: ServerRequestContext[Any],
                       params: types.SubscriptionsListenRequestParams
                       ) -> types.SubscriptionsListenResult:
        wanted = list(params.notifications.resource_subscriptions or ())
        standing, may_use = self._caller()
        held: dict[str, Holding] = {}   # by URI, where each is subscribed for this caller
        try:
            for uri in wanted:
                holding = None if uri in held else await self._subscribe(uri, may_use)
                if holding is not None:
                    held[uri] = holding
            if any(uri not in held for uri in wanted):
                honored = [uri for uri in wanted if uri in held] or None
                params = params.model_copy(update={"notifications": params.notifications
                                                   .model_copy(update={
                                                       "resource_subscriptions": honored})})
            released: set[str] = set()   # lost at a reload (let go of: see _until_unusable)

            def keep(event: ServerEvent) -> bool:
                if not isinstance(event, ResourceUpdated):
                    return True
                holding = held.get(event.uri)   # only its server's (another caller's)
                server = event.server if isinstance(event, ServedUpdate) else None
                return holding is not None and server in (None, holding.home.server) \
                    and may_use(holding.home.server)

            async def until_unusable() -> None:
                await self._until_unusable(ctx, params.notifications, standing, may_use,
                                           held, released)

            token = _KEEP.set(keep)
            try:
                return await self._while_usable(ctx, params, until_unusable)
            finally:
                _KEEP.reset(token)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(UNSUBSCRIBE_BUDGET):
                for holding in list(held.values()):
                    await self._let_go(holding)

    def _reaches(self, holding: Holding, may_use: Callable[[str], bool]) -> bool:
        """Whether the stream's caller may still reach its URI where it is held."""
        server = holding.home.server
        return self._hub.home(holding.uri, server) is not None \
            and self._current(server) is not None and may_use(server)

    def _back(self, uri: str, may_use: Callable[[str], bool]) -> bool:
        """Whether ``uri``, lost, is served again by a server the caller may use, ready
        (a URI in a server's namespace resolves, as a link, while it starts, before it
        has capabilities to ask)."""
        try:
            service, _ = self._origin(uri, may_use)
        except MCPError:
            return False
        return service.state is UpstreamState.READY

    async def _until_unusable(self, ctx: ServerRequestContext[Any],
                              wanted: types.SubscriptionFilter, standing: Standing,
                              may_use: Callable[[str], bool], held: dict[str, Holding],
                              released: set[str]) -> None:
        """Return once the stream can deliver nothing more: its caller's credential no
        longer stands, or it lost every URI it held (a reload narrowed the token's
        ``servers``, or removed their server) and asked for no list changes.  Looked at
        again at each ``FrontHub.reach_changed``; a URI lost meanwhile is let go of then
        (moved from ``held`` to ``released``), whether the stream ends or not, and one
        lost that is back is subscribed again (one refused is tried again once it was
        gone and came back, not at each catalog build meanwhile)."""
        principal = standing()
        caller = f" '{principal.name}'" if principal is not None else ""
        lists = wanted.tools_list_changed or wanted.prompts_list_changed \
            or wanted.resources_list_changed
        refused: set[str] = set()   # back, but refused: tried again once it came back
        while standing() is not None:
            lost = [h for h in held.values() if not self._reaches(h, may_use)]
            back = []
            for uri in sorted(released):
                if not self._back(uri, may_use):
                    refused.discard(uri)
                elif uri not in refused:
                    back.append(uri)
            if not lost and not back:
                await self._hub.reach_changed(standing)
                continue
            with anyio.CancelScope(shield=True), anyio.move_on_after(UNSUBSCRIBE_BUDGET):
                for holding in lost:
                    del held[holding.uri]
                    released.add(holding.uri)
                    await self._let_go(holding)
            for uri in back:
                taken = await self._subscribe(uri, may_use, may_use)
                if taken is not None:
                    released.discard(uri)
                    held[uri] = taken
                else:
                    refused.add(uri)
            if not held and not lists:
                logger.info("subscriptions/listen: closed stream %r: its caller%s may reach "
                            "none of its resources any more (a reload narrowed its token's "
                            "servers, or removed theirs)", ctx.request_id, caller)
                return
            # Looked at again at once: what changed while those were let go of is seen.
        logger.info("subscriptions/listen: closed stream %r: the credential of its caller%s "
                    "no longer stands (removed from gateway.auth by a reload, or expired)",
                    ctx.request_id, caller)

    async def _while_usable(self, ctx: ServerRequestContext[Any],
                            params: types.SubscriptionsListenRequestParams,
                            until_unusable: Callable[[], Awaitable[None]]
                            ) -> types.SubscriptionsListenResult:
        """The SDK's stream, ended (with its result: a graceful close) once
        ``until_unusable`` returns."""
        done: list[types.SubscriptionsListenResult] = []
        failed: list[Exception] = []
        self._hub.streams += 1
        try:
            async with anyio.create_task_group() as tg:

                async def end_when_unusable() -> None:
                    await until_unusable()
                    tg.cancel_scope.cancel()

                tg.start_soon(end_when_unusable)
                try:  # re-raised as is below, not wrapped in the task group's ExceptionGroup
                    done.append(await self._handler(ctx, params))
                except Exception as exc:  # noqa: BLE001 - handed on unchanged
                    failed.append(exc)
                tg.cancel_scope.cancel()
        finally:
            self._hub.streams -= 1
        if failed:
            raise failed[0]
        return done[0] if done else types.SubscriptionsListenResult(
            _meta={SUBSCRIPTION_ID_META_KEY: ctx.request_id})

    async def _let_go(self, holding: Holding) -> None:
        """The stream no longer holds its URI: unsubscribe its home (the server as it
        runs now: a restart carried the subscription; none if a reload removed it) if
        nobody else holds it there (``FrontHub.release``)."""
        home = self._hub.unlisten(holding)
        if home is not None:
            await self._hub.release(holding.uri, home)

    async def _subscribe(self, uri: str, may_use: Callable[[str], bool],
                         visible: Callable[[str], bool] | None = None) -> Holding | None:
        """Subscribe ``uri`` where it is served (of a server ``visible`` says the caller
        may use, if given: else the request's caller's), for a caller that may use a
        server if ``may_use`` says so; its hold (None: not held, logged)."""
        shown = logged_name(uri)  # a host's to choose: a long one is cut in log lines
        placed = self._placing()
        try:
            service, original = self._origin(uri, visible)
        except MCPError as exc:
            logger.info("subscriptions/listen: not subscribing %s: %s", shown,
                        exc.error.message)
            return None
        # Not connected yet (its first attempts, or coming back): no capabilities to
        # ask; waited for, as a read is (``service.subscribe`` says why it is not up).
        await until_usable(service.replicas, service.wait_until)
        caps = service.capabilities
        if caps is not None and (caps.resources is None or not caps.resources.subscribe):
            logger.info("subscriptions/listen: not subscribing %s: upstream '%s' does not "
                        "support resource subscriptions", shown, service.name)
            return None
        try:
            await service.subscribe(original)
        except (UpstreamError, MCPError) as exc:
            logger.warning("subscriptions/listen: not subscribing %s: upstream '%s' refused: "
                           "%s", shown, service.name, exc)
            return None
        holding, moved = self._hub.listen(uri, Home(service.name, original), may_use)
        placed()
        for old in moved:
            await self._unsubscribe_old(uri, old)
        return holding
