"""Connected hosts, and what the gateway pushes to them when the catalog changes."""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway._compat import client_log_level
from fast_mcp_gateway.front.homes import Home, Homes
from fast_mcp_gateway.front.outbox import Outbox, Outboxes
from fast_mcp_gateway.principal import Standing
from fast_mcp_gateway.routing.view import normalize_uri
from fast_mcp_gateway.upstream.held_logs import size_of
from fast_mcp_gateway.upstream.relay import STDIO_HOST, log_levels_from

_MAX_IDLE_LOGS = 1000  # queued between wake-ups; beyond, the oldest are dropped
LIST_CHANGED_PAUSE = 0.5
"""Seconds between two ``list_changed`` announcements: a server changing its list in a
loop (~20 a second) made hosts re-list as often; now they re-list twice a second at
most, and the last change is always announced."""


@dataclass(frozen=True)
class ServedUpdate(ResourceUpdated):
    """A ``ResourceUpdated`` of the server it came from: a listen stream keeps those of
    the server it holds the URI at."""

    server: str = ""


@dataclass(eq=False)
class Holding:
    """A listen stream's hold of an exposed URI: where it is subscribed (``home``: moved
    by ``FrontHub.rehome``) and whether its caller may use a server (``may_use``)."""

    uri: str
    home: Home
    may_use: Callable[[str], bool]


Release = Callable[[str, Home], Coroutine[Any, Any, None]]
"""Lets go of an exposed URI's subscription at ``Home`` (logs, never raises, a failure)."""


async def _release_nothing(_uri: str, _home: Home) -> None:
    return None


def _every_server(_server: str) -> bool:
    return True


class FrontHub:
    """Connected hosts, and what to push to them when the catalog changes.

    Handshake-era hosts get ``notifications/*/list_changed`` and
    ``notifications/resources/updated`` on their connection; 2026-07-28 hosts get
    the same events on their ``subscriptions/listen`` streams (via ``bus``).  List
    changes are announced at most once per ``LIST_CHANGED_PAUSE`` (``clock``, ``pause``):
    at once after a quiet time, else together after the pause; resource updates and
    logs are not held.

    Upstream logs sent while no call was in flight (``log``) go to the handshake-era
    hosts that set a level with ``logging/setLevel`` (at or above it), and to the
    one host of a stdio gateway whatever it set (2026-07-28 hosts take logs per
    request only), if their caller may use the server (a token's ``servers``, asked
    at each send: a reload that narrows them narrows what an open session gets).  The
    logger names the server: ``<server>`` or ``<server>.<logger>``.

    Lifetimes: a ``resources/subscribe`` lasts until the host unsubscribes or its
    connection closes (``subscribe``): one whose server is removed (``server_removed``)
    or that no holder may use any more (``unreached``) is held with no home (``lost``)
    until the URI is served again for one of them (``resume``: the host was never told
    it ended, there is no such notice in the handshake era); a listen stream
    until its host leaves, its caller's credential no longer stands, or it may reach
    none of its URIs (``reach_changed``: ``front/listen.py``).  Either way the upstream
    is unsubscribed (``release``) when nobody holds the URI any more.

    A URI held has one ``Home`` per server it is held at (an upstream subscription its
    hosts there share): callers that may use different servers can resolve one URI to
    different servers (a ``namespace: ""`` server listing a URI in another's namespace,
    which a caller of that one only reaches as a link), and neither displaces the
    other's.  A home is where hosts subscribed, or where ``rehome`` moved them (a reload
    gave the URI to another server: ``front/moving.py``); an upstream's update reaches
    the hosts holding the URI at its server.
    """

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        # uri -> subscribed connection -> the resource's server (its caller may use it?)
        self._subscribers: dict[str, weakref.WeakKeyDictionary[Connection, str]] = {}
        self._holdings: dict[str, list[Holding]] = {}  # 2026-07-28 listen streams'
        self.streams = 0   # 2026-07-28 listen streams open now
        # (uri, server) -> where it is subscribed upstream, while anyone holds it there
        self._homes = Homes()
        self.release: Release = _release_nothing  # lets go of a home nobody holds (HostRequests)
        self.host_known = anyio.Event()  # a stdio gateway's host made its first request
        # a subscribed connection -> its URIs (its exit stack lets go of them: ``_left``)
        self._held: weakref.WeakKeyDictionary[Connection, set[str]] = \
            weakref.WeakKeyDictionary()
        self._lists: set[str] = set()   # kinds changed and not announced yet
        self._lists_wake = anyio.Event()
        self.clock: Callable[[], float] = time.monotonic   # tests stop it
        self.pause: Callable[[float], Awaitable[None]] = anyio.sleep   # and hold this
        self._updated: list[tuple[str, str]] = []   # (uri, server)
        self._logs: list[tuple[str, types.LoggingMessageNotificationParams, Any]] = []
        self._may_use: weakref.WeakKeyDictionary[Connection, Callable[[str], bool]] = \
            weakref.WeakKeyDictionary()  # a restricted caller's servers, by connection
        self._sole_host: weakref.ref[Connection] | None = None
        self._outboxes = Outboxes()  # what each host is sent between its requests
        self._wake = anyio.Event()
        self._standings = anyio.Event()   # set (and replaced) at each gateway.auth reload
        self.reload = anyio.Event()   # set (and replaced) at each reload, and ``refresh``
        # waits out the rest of a credential's time (a JWT's): tests hold it
        self.expiry: Callable[[float], Awaitable[None]] = anyio.sleep

    def track(self, connection: Connection | None, *, sole_host: bool = False,
              may_use: Callable[[str], bool] | None = None, who: str = "?") -> None:
        """Remember a host's connection; ``sole_host``: the one host of a stdio gateway;
        ``may_use``: whether its caller may use a server (None: every one), asked for
        each log between calls (only those of its servers reach it); ``who``: its
        credential's name (its ``Outbox`` names it when it drops its logs)."""
        if connection is not None and connection.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._connections.add(connection)
            self._outboxes.of(connection, who)
            if may_use is not None:
                self._may_use[connection] = may_use
            if sole_host:
                self._sole_host = weakref.ref(connection)
                self.host_known.set()

    def log(self, server: str, params: types.LoggingMessageNotificationParams,
            host: Any = None) -> None:
        """An upstream's log sent between calls, for the hosts that asked for logs
        (``host``: only that host, the one a per_client session serves) and may use
        ``server``."""
        name = f"{server}.{params.logger}" if params.logger else server
        self._logs.append((server, params.model_copy(update={"logger": name}), host))
        del self._logs[:-_MAX_IDLE_LOGS]
        self._wake.set()

    def subscribe(self, uri: str, connection: Connection | None, home: Home,
                  may_use: Callable[[str], bool] | None = None) -> list[Home]:
        """``connection`` is told of updates to ``uri`` (subscribed at ``home``) while
        its caller may use its server (``may_use``, as ``track``'s: a reload may narrow
        a token's).  Returns the homes to let go of: the one ``uri`` had at that server
        if another, the one the connection held it at if elsewhere and nobody else
        holds it there.

        When the connection closes (a stdio host exits, an HTTP session is deleted or
        expires, an SSE connection drops: the SDK unwinds its ``exit_stack``), it is
        unsubscribed from each URI it still holds, and ``release`` lets go of the
        upstream's subscription if nobody else holds it."""
        if connection is None:
            return []
        subs = self._subscribers.setdefault(uri, weakref.WeakKeyDictionary())
        before, subs[connection] = subs.get(connection), home.server
        displaced = self._place(uri, home)
        left = self._vacated(uri, before) if before not in (None, home.server) else None
        if may_use is not None:
            self._may_use[connection] = may_use
        held = self._held.get(connection)
        if held is None:
            held = self._held[connection] = set()
            connection.exit_stack.push_async_callback(self._left, weakref.ref(connection))
        held.add(uri)
        return displaced + ([left] if left is not None else [])

    def _place(self, uri: str, home: Home) -> list[Home]:
        """``uri``'s home at ``home.server`` is ``home`` from now on; the one it had
        there if another (to let go of)."""
        before = self._homes.place(uri, home)
        return [before] if before not in (None, home) and not self._shared(before) else []

    def _shared(self, home: Home) -> bool:
        """Whether another held URI is subscribed at ``home`` (its upstream URI in another
        form: ``file://ns//a``, as a template expands, and ``file://ns/a``, as URL parsers
        and the lists write it): not to let go of while it is (its hosts got no more
        updates once the other form's last host let go)."""
        return bool(self._homes.holding(home.server, (home.original,)))

    def _holds(self, uri: str, server: str) -> bool:
        """Whether a host whose caller may use ``server`` holds ``uri`` there (one a
        reload narrowed holds it with no home once nobody else does: ``unreached``)."""
        return any(at == server and self._may_use.get(c, _every_server)(server)
                   for c, at in list(self._subscribers.get(uri, {}).items())) or any(
            h.home.server == server and h.may_use(server)
            for h in self._holdings.get(uri, ()))

    def _unshared(self, uri: str, home: Home) -> list[Home]:
        """``home``, to let go of, unless hosts hold ``uri`` there."""
        return [] if self._homes.get((uri, home.server)) == home or self._shared(home) \
            else [home]

    def home(self, uri: str, server: str) -> Home | None:
        """Where ``uri`` is subscribed upstream at ``server`` (None: nobody holds it
        there)."""
        return self._homes.get((uri, server))

    def homes(self) -> list[tuple[str, Home]]:
        """Each URI held, and each of its homes."""
        return [(uri, home) for (uri, _), home in self._homes.items()]

    def held(self) -> set[str]:
        """Each URI a host holds (with a home or not)."""
        return set(self._subscribers) | set(self._holdings)

    def callers(self, uri: str, server: str) -> list[Callable[[str], bool]]:
        """Whether each host holding ``uri`` at ``server`` may use a server."""
        subs = self._subscribers.get(uri)
        return [self._may_use.get(c, _every_server) for c, at in list((subs or {}).items())
                if at == server] + [h.may_use for h in self._holdings.get(uri, ())
                                    if h.home.server == server]

    def rehome(self, uri: str, old: Home, new: Home) -> list[Home]:
        """The hosts holding ``uri`` at ``old`` were subscribed at ``new``, which serves
        it for them now: the subscriptions to let go of -- ``old`` (and what ``uri`` had
        at ``new.server`` if another), or ``new`` itself if nobody holds ``uri`` at
        ``old`` any more (and nobody at ``new``)."""
        if self._homes.get((uri, old.server)) != old:
            return self._unshared(uri, new)
        for connection, at in list(self._subscribers.get(uri, {}).items()):
            if at == old.server:
                self._subscribers[uri][connection] = new.server
        for holding in self._holdings.get(uri, ()):
            if holding.home.server == old.server:
                holding.home = new
        self._homes.pop(uri, old.server)
        return [*([] if self._shared(old) else [old]), *self._place(uri, new)]

    async def _left(self, gone: weakref.ref[Connection]) -> None:
        """A subscribed host's connection closed: let go of what it held."""
        connection = gone()
        if connection is None:
            return
        releases: list[tuple[str, Home]] = []
        for uri in sorted(self._held.pop(connection, ())):
            home = self.unsubscribe(uri, connection)
            if home is not None:
                releases.append((uri, home))
        async with anyio.create_task_group() as tg:   # side by side: one budget for all
            for uri, home in releases:
                tg.start_soon(self.release, uri, home)

    def refresh(self, connection: Connection | None, may_use: Callable[[str], bool]) -> None:
        """A request of a host this hub sends to between its requests: its caller's
        credential of now stands from now on (a session's client refreshes its JWT, or
        sends the token a rotation put in place of the one it listed with); a URI it holds
        with no home that this gives back (``unreached``) is taken up again (``reload``)."""
        if connection is not None and connection in self._may_use:
            before, self._may_use[connection] = self._may_use[connection], may_use
            for uri in self._held.get(connection, ()):
                subs = self._subscribers.get(uri)
                at = subs.get(connection) if subs is not None else None
                if at is not None and (uri, at) not in self._homes and may_use(at) \
                        and not before(at):
                    self.reload.set()   # the mover takes it up
                    self.reload = anyio.Event()
                    return

    def knows(self, connection: Connection | None) -> bool:
        """Whether ``connection``'s caller is asked before it is sent anything."""
        return connection is not None and connection in self._may_use

    def subscribed(self, uri: str, connection: Connection | None) -> bool:
        """Whether ``connection`` is subscribed to ``uri``."""
        return connection is not None and connection in self._subscribers.get(uri, {})

    def unsubscribe(self, uri: str, connection: Connection | None) -> Home | None:
        """Drop one subscriber; ``uri``'s home where it held it when nobody holds it
        there any more (to let go of)."""
        subs = self._subscribers.get(uri)
        server = None
        if subs is not None and connection is not None:
            server = subs.pop(connection, None)
            self._held.get(connection, set()).discard(uri)
        if subs is not None and not subs:
            del self._subscribers[uri]
        return self._vacated(uri, server) if server is not None else None

    def _vacated(self, uri: str, server: str) -> Home | None:
        """``uri``'s home at ``server`` if nobody holds ``uri`` there now (forgotten
        then)."""
        home = None if self._holds(uri, server) else self._homes.pop(uri, server)
        return None if home is None or self._shared(home) else home

    def listen(self, uri: str, home: Home, may_use: Callable[[str], bool]
               ) -> tuple[Holding, list[Home]]:
        """A 2026-07-28 listen stream (of a caller that may use a server if ``may_use``
        says so) covers ``uri``, subscribed at ``home`` (its events come from ``bus``):
        its hold, and the home ``uri`` had at that server if another (to let go of)."""
        holding = Holding(uri, home, may_use)
        self._holdings.setdefault(uri, []).append(holding)
        return holding, self._place(uri, home)

    def unlisten(self, holding: Holding) -> Home | None:
        """A listen stream let go of its ``holding``; its home when nobody holds the URI
        there any more."""
        held = self._holdings.get(holding.uri, [])
        if holding in held:
            held.remove(holding)
        if not held:
            self._holdings.pop(holding.uri, None)
        return self._vacated(holding.uri, holding.home.server)

    def reloaded(self) -> None:
        """A reload ran (``gateway.auth`` may have changed): ``standings_changed``, and
        ``SubscriptionMover`` looks at where a lost URI is served for its hosts' callers
        (one a token got back is taken up, as a listen stream's is)."""
        self.reload.set()
        self.reload = anyio.Event()
        self.standings_changed()

    def standings_changed(self) -> None:
        """A reload ran (``gateway.auth`` may have changed), or the catalog was rebuilt
        (a URI came back, or moved): whoever waits in ``reach_changed`` looks at its
        caller's standing, and what it may reach, again."""
        self._standings.set()
        self._standings = anyio.Event()

    def server_removed(self, server: str) -> None:
        """``server`` was removed (a reload, an admin removal): its URIs lose their home
        (there is nothing to let go of: its sessions, and their subscriptions, ended with
        it).  Handshake-era hosts still hold them (``lost``: taken up again where they are
        served next, ``resume``), and listen streams look at what they hold again."""
        self._homes.drop_server(server)
        self.standings_changed()

    def unreached(self, uri: str, home: Home) -> bool:
        """No host holding ``uri`` at ``home`` may use its server any more (a reload
        narrowed their tokens): forget the home, as a removed server's (True: the caller
        lets go of it upstream; False: ``uri`` has another home there by now, or another
        form of it is held at this one: ``_shared``).  Its
        handshake-era hosts still hold it (``lost``, ``resume``); listen streams let go."""
        if self._homes.get((uri, home.server)) != home:
            return False
        self._homes.pop(uri, home.server)
        return not self._shared(home)

    def lost(self) -> list[tuple[str, str, list[Callable[[str], bool]]]]:
        """Each URI handshake-era hosts hold at a server with no home there (it was
        removed, or ``unreached``): the URI, that server, and whether each of their
        callers may use a server (``may_use``)."""
        found: dict[tuple[str, str], list[Callable[[str], bool]]] = {}
        for uri, subs in self._subscribers.items():
            for connection, at in list(subs.items()):
                if (uri, at) not in self._homes:
                    found.setdefault((uri, at), []).append(
                        self._may_use.get(connection, _every_server))
        return [(uri, at, callers) for (uri, at), callers in found.items()]

    def resume(self, uri: str, lost: str, home: Home) -> list[Home]:
        """The hosts holding ``uri`` at ``lost`` with no home (``lost``) were subscribed
        at ``home``, which serves it for them now: the subscriptions to let go of --
        ``home`` itself when none of them is left (and nobody else holds it there)."""
        subs = self._subscribers.get(uri)
        moved = [c for c, at in list((subs or {}).items())
                 if at == lost and (uri, at) not in self._homes]
        if subs is None or not moved:
            return self._unshared(uri, home)
        for connection in moved:
            subs[connection] = home.server
        return self._place(uri, home)

    async def reach_changed(self, standing: Standing) -> None:
        """Return at the next ``standings_changed`` or ``server_removed``, or once
        ``standing``'s ``remaining`` time is over (``expiry``)."""
        changed, remaining = self._standings, standing.remaining()
        async with anyio.create_task_group() as tg:

            async def expire(rest: float) -> None:
                await self.expiry(rest)
                tg.cancel_scope.cancel()

            if remaining is not None:
                tg.start_soon(expire, max(remaining, 0.0))
            await changed.wait()
            tg.cancel_scope.cancel()

    def changed(self, kinds: set[str]) -> None:
        self._lists |= kinds
        self._lists_wake.set()

    @property
    def lists_pending(self) -> bool:
        """A list change waits to be announced (the pause after the last one runs)."""
        return bool(self._lists)

    def resource_updated(self, exposed: str, server: str, original: str) -> None:
        """Upstream ``server`` updated its ``original`` (``exposed``, as its lists name
        it): for the hosts holding it there, by any URI it is subscribed as (looked up
        by server and URI: ``Homes.holding``)."""
        uris = self._homes.holding(server, {original, normalize_uri(original)})
        if (exposed, server) in self._homes:
            uris.add(exposed)
        self._updated += [(uri, server) for uri in sorted(uris)]
        self._wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._announce_lists)
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                updated, self._updated = self._updated, []
                logs, self._logs = self._logs, []
                await self._broadcast(set(), updated)
                for server, params, host in logs:
                    await self._send_log(server, params, host)

    async def _announce_lists(self) -> None:
        """``list_changed`` at once when none went out in the last ``LIST_CHANGED_PAUSE``
        seconds, else after the rest of that pause, with every change made meanwhile
        (the last one always)."""
        last = -math.inf
        while True:
            await self._lists_wake.wait()
            rest = last + LIST_CHANGED_PAUSE - self.clock()
            if rest > 0:
                await self.pause(rest)
            self._lists_wake = anyio.Event()
            kinds, self._lists = self._lists, set()
            await self._broadcast(kinds, [])
            last = self.clock()

    async def _send_log(self, server: str, params: types.LoggingMessageNotificationParams,
                        host: Any) -> None:
        sole = self._sole_host() if self._sole_host is not None else None
        if host is None:
            targets = list(self._connections)
        elif host == STDIO_HOST:
            targets = [sole] if sole is not None else []
        else:  # a per_client session's host: its SDK connection
            targets = [host] if isinstance(host, Connection) else []
        payload = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        size = size_of(payload.get("data"))  # UTF-8 bytes, not characters
        for connection in targets:
            level = client_log_level(connection)
            if level is None and connection is not sole:
                continue  # this host never asked for logs
            if params.level not in log_levels_from(level) or not self._may_use.get(
                    connection, _every_server)(server):  # or not a server its token may use
                continue
            self._outbox(connection).put(
                partial(connection.notify, "notifications/message", payload), size=size)

    def _outbox(self, connection: Connection) -> Outbox:
        return self._outboxes.of(connection)

    async def _broadcast(self, kinds: set[str], updated: list[tuple[str, str]]) -> None:
        events: list[Any] = []
        if "tools" in kinds:
            events.append(ToolsListChanged())
        if "prompts" in kinds:
            events.append(PromptsListChanged())
        if "resources" in kinds:
            events.append(ResourcesListChanged())
        events += [ServedUpdate(uri=uri, server=server) for uri, server in updated]
        for event in events:
            await self.bus.publish(event)
        for connection in list(self._connections):
            outbox = self._outbox(connection)
            if outbox.gone:
                self._connections.discard(connection)
            for kind in [k for k in ("tools", "prompts", "resources") if k in kinds]:
                outbox.put(getattr(connection, f"send_{kind[:-1]}_list_changed"), key=kind)
        for uri, server in updated:
            subs = self._subscribers.get(uri)
            if subs is None:
                continue
            for connection, at in list(subs.items()):
                if at != server or not self._may_use.get(connection, _every_server)(at):
                    continue  # a reload took the server from its caller
                outbox = self._outbox(connection)
                if outbox.gone:
                    subs.pop(connection, None)
                outbox.put(partial(connection.send_resource_updated, uri),
                           key=("updated", uri))
