"""Hosts' resource subscriptions follow what serves their URIs now.

A URI hosts hold (``FrontHub``: handshake-era ``resources/subscribe`` and 2026-07-28
listen streams alike) is subscribed once upstream, at its ``Home``.  A reload can give
an exposed URI to another server (two servers' namespaces swapped, say): the old server
stayed subscribed -- sending updates the gateway dropped, as it no longer serves the
URI -- and the new one was never asked, so its hosts got no updates.  After each
catalog build (``UpstreamManager.changed``) ``SubscriptionMover`` subscribes the
server that serves each held URI now, once it is ready (a restarted one lists the
catalog it had while it starts), and unsubscribes the old one (if it still runs).
A URI nobody serves now stays where it is (its server may list it again), unless its
server was removed (``FrontHub.server_removed``), or none of the hosts holding it there
may use that server any more (a reload narrowed their tokens' ``servers``:
``FrontHub.unreached``, and the server is unsubscribed; before, it stayed subscribed,
sending updates the gateway filtered out): handshake-era hosts still hold it, with no
home (``FrontHub.lost``), and it is subscribed again where it is served next for one
of their callers (a later reload gives the server back, or gave its namespace
to another server, or gives a token the server back: looked at after each reload too,
``FrontHub.reloaded``), once that server is ready (``FrontHub.resume``).  Before, such a
host got no more updates, never told its subscription had ended (the handshake era has
no such notice), while a listen stream took the URI up again.

Within a server, a subscription follows a replica that is up (``Service.follow_ready``):
one a replica held that went down, or that a restart carried to a replica that did not
come up (``Service.carry``), is moved to a ready one.

Then listen streams look at what they may reach again (``FrontHub.standings_changed``):
a URI a stream lost is taken up again once it is back (``front/listen.py``).

A host subscribing while a build moves its URI (resolved before the build, held by
the hub after it: a listen stream's URI once its upstream answered) is looked at
again (``SubscriptionMover.placing``): before, it stayed at the old home until the
next build that changed a held URI's route.

All this is done only after a build that changed what it depends on (``_Routes``: the
held URIs' listed entries, the templates, each server's replicas' states): a server
changing its lists in a loop (a tool's description, say) made every held URI be
resolved, and every listen stream woken, at each of its builds.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import anyio.abc
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.homes import Home
from fast_mcp_gateway.front.hub import FrontHub
from fast_mcp_gateway.routing.naming import Origin
from fast_mcp_gateway.routing.view import normalize_uri
from fast_mcp_gateway.upstream.model import UpstreamState

if TYPE_CHECKING:
    from fast_mcp_gateway.routing.manager import UpstreamManager
    from fast_mcp_gateway.routing.service import Service

logger = logging.getLogger(__name__)

class _Routes(NamedTuple):
    """What ``SubscriptionMover`` acts on, as of one catalog build (``_routes``)."""

    listed: dict[str, Origin | None]
    templates: dict[str, Origin]
    states: dict[str, tuple[int, tuple[UpstreamState, ...]]]

    def changed_from(self, before: _Routes) -> bool:
        """Whether a URI held then and now may be served elsewhere, or a server's
        readiness changed (a URI held since was subscribed where it was served then)."""
        return self.templates != before.templates or self.states != before.states or any(
            uri in before.listed and before.listed[uri] != origin
            for uri, origin in self.listed.items())


MOVE_BUDGET = 10.0
"""Seconds the unsubscription of a URI's old server may take (the next waits)."""


class SubscriptionMover:
    """Moves hosts' subscriptions to where their URIs are served now (module docstring).

    ``origin(uri, visible)`` maps an exposed URI to its service and the upstream's URI
    (of a server ``visible`` says the caller may use), raising ``MCPError`` when none
    serves it (``HostRequests._resource_origin``)."""

    def __init__(self, manager: UpstreamManager, hub: FrontHub,
                 origin: Callable[[str, Callable[[str], bool]], tuple[Service, str]]
                 ) -> None:
        self._manager = manager
        self._hub = hub
        self._origin = origin
        self.followed = -1   # the catalog generation last looked at (tests wait on it)
        self._seen: _Routes | None = None   # what the next build is compared with
        self._seen_at = -1   # ... as of this catalog generation
        self._recheck = anyio.Event()   # set: ``follow`` now (``placed``)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """``follow`` after each catalog build that changed what it depends on, and
        after each reload (a token's servers may have changed), until cancelled."""
        task_status.started()
        built, reload = -1, self._hub.reload
        manager = self._manager

        def rebuilt(since: int) -> Callable[[], bool]:
            return lambda: manager.view.generation != since

        while True:
            async with anyio.create_task_group() as tg:

                async def after(event: Callable[[], Awaitable[Any]]) -> None:
                    await event()
                    tg.cancel_scope.cancel()

                tg.start_soon(after, functools.partial(
                    manager.changed.wait_until, rebuilt(built), within=math.inf))
                tg.start_soon(after, self._recheck.wait)
                await reload.wait()
                tg.cancel_scope.cancel()
            reloaded, reload = reload.is_set(), self._hub.reload
            rechecked = self._recheck.is_set()
            if rechecked:
                self._recheck = anyio.Event()
            built = manager.view.generation
            before, self._seen, self._seen_at = self._seen, self._routes(), built
            if reloaded or rechecked or before is None or self._seen.changed_from(before):
                await self.follow()
                self._hub.standings_changed()
            self.followed = built

    def placing(self) -> Callable[[], None]:
        """Called as a host's URI is resolved to subscribe it; what it returns, once the
        hub holds the URI (``FrontHub.subscribe``, ``listen``).  A catalog build that
        ran in between (a listen stream's URI is held once its upstream answered) may
        have moved the URI where the mover, which looked at what was held then, never
        moved it: then every held URI is looked at again (``follow``).  Else the URI is
        made part of what the next build is compared with (it was not held when this
        build was looked at: a build moving it next would be taken for one changing no
        held URI's route)."""
        generation = self._manager.view.generation

        def placed() -> None:
            if self._manager.view.generation != generation:
                self._recheck.set()
            elif self._seen_at == generation:
                self._seen = self._routes()

        return placed

    def _routes(self) -> _Routes:
        """What where a held URI is served, and whether its server is ready, depend on:
        each held URI's listed entry (by server and its own URI), the templates (a URI
        no list names matches one), and each server's replicas' states (a ready one is
        subscribed; a restart makes another ``Service``).  A URI a link names is
        resolved by what the link gave, which no build changes."""
        view = self._manager.view
        listed = {}
        for uri in self._hub.held():
            entry = view.resources.get(uri) or view.resources.get(normalize_uri(uri))
            listed[uri] = entry[0] if entry is not None else None
        return _Routes(listed, {exposed: origin for exposed, (origin, _) in view.templates.items()},
                       {name: (id(service), tuple(r.state for r in service.replicas))
                        for name, service in self._manager.services.items()})

    async def follow(self) -> None:
        """Move each held URI served by another server now, then each subscription of a
        replica that is down to one that is up.  A failure is logged: it must stop
        neither the other moves nor the gateway (this is one of its root tasks)."""
        for uri, home in self._hub.homes():
            try:
                await self._follow(uri, home)
            except Exception:   # logged; the next URI is moved all the same
                logger.exception("could not move hosts' subscription to %s (held at "
                                 "upstream '%s')", logged_name(uri), home.server)
        for uri, lost, callers in self._hub.lost():
            try:
                await self._resume(uri, lost, callers)
            except Exception:   # logged; the next URI is taken up all the same
                logger.exception("could not subscribe %s again for the hosts that held it "
                                 "when its server was removed", logged_name(uri))
        for service in list(self._manager.services.values()):
            try:
                await service.follow_ready()
            except Exception:   # logged; the next server's all the same
                logger.exception("server %s: could not move its subscriptions to a "
                                 "replica that is up", service.name)

    def _served(self, uri: str, visible: Callable[[str], bool]) -> Home | None:
        """Where the exposed ``uri`` is served now (by a server ``visible``); None:
        nowhere."""
        try:
            service, original = self._origin(uri, visible)
        except MCPError:
            return None
        return Home(service.name, original)

    async def _resume(self, uri: str, lost: str, callers: list[Callable[[str], bool]]
                      ) -> None:
        """Subscribe ``uri``, which handshake-era hosts held when its server was removed,
        where it is served now for the first of their ``callers`` that may reach it, once
        that server is ready (a later catalog build tries again until then)."""
        now = next((home for home in (self._served(uri, visible) for visible in callers)
                    if home is not None), None)
        service = self._manager.services.get(now.server) if now is not None else None
        if now is None or service is None or service.state is not UpstreamState.READY:
            return
        caps = service.capabilities
        if caps is None or caps.resources is None or not caps.resources.subscribe:
            logger.warning("hosts subscribed to %s, which upstream '%s' serves now, get no "
                           "updates of it: it does not support resource subscriptions",
                           logged_name(uri), now.server)
            return
        try:
            await service.subscribe(now.original)
        except (UpstreamError, MCPError) as exc:
            logger.warning("hosts subscribed to %s get no updates of it: subscribing it "
                           "again at upstream '%s', which serves it now, failed: %s (tried "
                           "again when where it is served, or a server's readiness, changes)",
                           logged_name(uri), now.server, exc)
            return
        # ``now`` itself if every host let go of it meanwhile
        for gone in self._hub.resume(uri, lost, now):
            await self.unsubscribe_old(uri, gone)

    async def _follow(self, uri: str, home: Home) -> None:
        """Move the hosts holding ``uri`` at ``home`` to where it is served for them now
        (by a server one of them may use); let go of it if none may use its server and
        it is served nowhere else for them."""
        callers = self._hub.callers(uri, home.server)
        now = self._served(uri, lambda server: any(may(server) for may in callers))
        if self._hub.home(uri, home.server) != home:
            return
        if now is None and not any(may(home.server) for may in callers):
            await self._let_go(uri, home)
            return
        if now is None or now == home:
            return
        service = self._manager.services.get(now.server)
        if service is not None and service.state is UpstreamState.READY:
            await self._move(uri, home, now, service)

    async def _let_go(self, uri: str, home: Home) -> None:
        """Unsubscribe ``home``, which none of the hosts holding ``uri`` there may use
        any more (``FrontHub.unreached``: taken up again when one may)."""
        service = self._manager.services.get(home.server)
        if not self._hub.unreached(uri, home) or service is None:
            return
        failure = await unsubscribe_within(service, home.original, MOVE_BUDGET)
        if failure is not None:
            logger.warning("could not unsubscribe upstream '%s' from %s, which no host "
                           "holding it may use any more: %s (it may go on sending updates, "
                           "which reach nobody)", home.server, logged_name(uri), failure)

    async def _move(self, uri: str, home: Home, now: Home, service: Service) -> None:
        shown = logged_name(uri)
        caps = service.capabilities
        failure = None
        if caps is None or caps.resources is None or not caps.resources.subscribe:
            failure = "it does not support resource subscriptions"
        else:
            try:
                await service.subscribe(now.original)
            except (UpstreamError, MCPError) as exc:
                failure = str(exc)
        if failure is not None:
            logger.warning("hosts subscribed to %s, which upstream '%s' serves now (no "
                           "longer '%s'), get no updates of it: subscribing it there "
                           "failed: %s (a host subscribing or listening again retries)", shown,
                           now.server, home.server, failure)
        # the old home, or ``now`` itself if every host let go of it meanwhile
        for gone in self._hub.rehome(uri, home, now):
            await self.unsubscribe_old(uri, gone)

    async def unsubscribe_old(self, uri: str, old: Home) -> None:
        """Unsubscribe ``old`` (if its server still runs): ``uri`` is held elsewhere now;
        a failure is logged."""
        service = self._manager.services.get(old.server)
        if service is None:
            return   # removed: its subscriptions ended with its sessions
        failure = await unsubscribe_within(service, old.original, MOVE_BUDGET)
        if failure is None:
            return
        logger.warning("could not unsubscribe upstream '%s' from %s, which another server "
                       "serves now: %s (it may go on sending updates, which reach nobody)",
                       old.server, logged_name(uri), failure)


async def unsubscribe_within(service: Service, original: str, budget: float) -> str | None:
    """Unsubscribe ``service`` from its URI ``original`` within ``budget`` seconds:
    None once done, else why not (for the caller's warning)."""
    failure = f"no answer within {budget:g}s"
    with anyio.move_on_after(budget):
        try:
            await service.unsubscribe(original)
            return None
        except (UpstreamError, MCPError) as exc:
            failure = str(exc)
    return failure
