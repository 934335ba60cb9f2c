"""An upstream's ``roots/list`` outside any call: whose roots it is answered with.

A handshake-era upstream may ask for its client's roots when no call is in flight
(server-filesystem asks once initialized, and again at each
``notifications/roots/list_changed``).  Within a call the call's host is asked
(``relay.HostRelay``); outside one ``SoleHost.answer`` answers, by whom the session
belongs to:

* **a stdio gateway** (one host, so every session is that host's):

  1. the host, if it is a handshake-era host that declared roots: asked (through the
     express lane's request channel), as connected directly;
  2. else the roots it gave as a 2026-07-28 host (``HostRoots``).  Such a host is never
     asked outside a call (its era has no session to ask on); it gives its roots when it
     answers an upstream's ``roots/list`` within a call (an MRTR round:
     ``front/parked.py``), of whichever server, and its latest are kept;
  3. none known: no roots (``[]``: the upstream keeps its own directories).

* **a shared session over HTTP** (or in library use): always ``[]``.  It serves every
  caller of the server, and servers such as server-filesystem *replace* their allowed
  directories with the client's roots: one caller's roots there would let every other
  caller reach that caller's directories.  Logged once per server at INFO, saying that
  ``isolation: per_client`` gives each caller its own session with its own roots.
* **a per_client session over HTTP** (``OwnerRoots``): it serves one host, so it gets
  that host's roots, never another's:

  - keyed by a handshake-era host's connection (its MCP session): that host is asked
    on its standalone stream, as connected directly, for at most ``ask_within``
    seconds (the gateway's ``ask_timeout``); if it has no stream, is gone, refuses or
    does not answer in time, the latest roots the gateway saw from it (answering such
    an ask, or within a call), else ``[]``, with one INFO line.  Its
    ``notifications/roots/list_changed`` is forwarded to its own sessions only
    (``front/host_requests.py``);
  - keyed by a caller (2026-07-28 hosts; servers with ``${caller.*}`` headers): that
    caller's roots as rule 2 keeps them (by verified credential: unauthenticated
    2026-07-28 hosts are one caller); ``[]`` until that caller gave some.

A session answered by rule 2 or 3, or for its owner, is told
``notifications/roots/list_changed`` once its answer may differ -- a handshake-era
stdio host's handshake (``arrived``), or its host giving roots or other roots
(``learned``) -- and asks again, as it would of a host connected directly that changed
its roots.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import suppress
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.connection import Connection
from mcp.shared.exceptions import MCPError, NoBackChannelError

from fast_mcp_gateway.upstream.relay import STDIO_HOST, FrontCall

logger = logging.getLogger(__name__)

_ANNOUNCE_WITHIN = 10.0  # seconds a session may take to read a roots/list_changed
MAX_HOSTS = 256
"""Hosts whose roots are kept (the least recently answered are forgotten first)."""


def _shown(roots: list[types.Root]) -> tuple[tuple[str, str | None], ...]:
    return tuple((str(root.uri), root.name) for root in roots)


class HostRoots:
    """The latest roots each 2026-07-28 host gave within a call, by host key
    (``host_key``)."""

    def __init__(self) -> None:
        self._hosts: OrderedDict[Hashable, list[types.Root]] = OrderedDict()

    def learned(self, host: Hashable, roots: list[types.Root]) -> bool:
        """``host`` answered a ``roots/list`` within a call with ``roots``; whether they
        differ from what it gave before (or it gave none)."""
        before = self._hosts.pop(host, None)
        self._hosts[host] = list(roots)
        while len(self._hosts) > MAX_HOSTS:
            self._hosts.popitem(last=False)
        return before is None or _shown(before) != _shown(roots)

    def of(self, host: Hashable) -> list[types.Root] | None:
        """The roots ``host`` gave last; None when it gave none."""
        roots = self._hosts.get(host)
        return list(roots) if roots is not None else None


def host_key(front: FrontCall) -> Hashable:
    """Who ``front``'s host is, for ``HostRoots``: the stdio gateway's one host, else
    its caller (a 2026-07-28 host has no session; by its verified credential), the key
    of its ``per_client`` session too (``routing/isolation.py``)."""
    if front.host == STDIO_HOST:
        return STDIO_HOST
    return ("caller", front.caller.identity if front.caller is not None else None)


class SoleHost:
    """Whom an upstream's ``roots/list`` outside any call is answered for (module
    docstring): ``front``, the one host of a stdio gateway (unset: HTTP, library use),
    and ``roots``, what 2026-07-28 hosts gave.

    Before the stdio host's handshake (stdio upstreams start first) the one host cannot
    be asked: such a session is kept in ``unasked``, and ``arrived`` tells it the roots
    changed once a host that declared roots can be asked."""

    def __init__(self) -> None:
        self.front: Callable[[], FrontCall | None] | None = None
        self.unasked: weakref.WeakSet[ClientSession] = weakref.WeakSet()
        self.roots = HostRoots()
        self._told: weakref.WeakSet[ClientSession] = weakref.WeakSet()  # stdio: 2, 3
        # per_client sessions over HTTP answered for their owner (its host key).
        self._owned: weakref.WeakKeyDictionary[ClientSession, Hashable] = \
            weakref.WeakKeyDictionary()
        self._explained: set[str] = set()   # servers whose shared session got [] (logged)
        # Handshake-era HTTP hosts: the latest roots each gave (by connection), and how
        # long one is asked outside a call (the gateway sets its ask_timeout).
        self._seen: weakref.WeakKeyDictionary[Connection, list[types.Root]] = \
            weakref.WeakKeyDictionary()
        self.ask_within = 120.0

    def get(self) -> FrontCall | None:
        return self.front() if self.front is not None else None

    async def answer(self, server: str, session: Any, owner: Hashable | None = None) -> Any:
        """``server``'s ``roots/list`` outside any call, on ``session`` (of a
        ``per_client`` session: ``owner`` is its host key)."""
        if self.front is None:   # not a stdio gateway: several callers may use the server
            if isinstance(owner, Connection):
                return await self._ask_owner(server, owner)
            if owner is not None:
                self._owned[session] = owner
                return types.ListRootsResult(roots=self.roots.of(owner) or [])
            self.unasked.add(session)   # told if a stdio host ever comes (tests, library)
            self._explain(server)
            return types.ListRootsResult(roots=[])
        sole = self.get()
        if sole is not None and sole.can_ask("roots"):
            try:
                return await sole.list_roots()
            except MCPError as exc:
                return exc.error
        given = self.roots.of(STDIO_HOST)
        self._told.add(session)
        if sole is None and given is None:
            self.unasked.add(session)  # no host yet: told when one comes
        return types.ListRootsResult(roots=given or [])

    async def _ask_owner(self, server: str, host: Connection) -> types.ListRootsResult:
        """Ask the handshake-era HTTP host owning a per_client session of ``server``
        for its roots (bounded); not answered: the latest it gave, else none."""
        caps = host.client_capabilities
        if caps is None or caps.roots is None:   # nothing to ask (nor declared upstream)
            return types.ListRootsResult(roots=self._seen.get(host) or [])
        why = f"did not answer within {self.ask_within:g}s (ask_timeout)"
        with anyio.move_on_after(self.ask_within):
            try:
                result = await host.send_request(types.ListRootsRequest())
            except MCPError as exc:
                why = ("is gone (its connection closed)"
                       if exc.error.code == types.CONNECTION_CLOSED
                       else f"refused it ({exc.error.message})")
            except (NoBackChannelError, anyio.BrokenResourceError,
                    anyio.ClosedResourceError) as exc:
                why = f"could not be asked ({type(exc).__name__}: it has no stream open)"
            else:
                self._seen[host] = list(result.roots)
                return result
        given = self._seen.get(host)
        logger.info(
            "upstream %s asked for its client's roots outside any call on the per-client "
            "session of an HTTP host, which was asked and %s: answered with %s", server,
            why, "the latest roots it gave" if given is not None else "none (it keeps its "
            "own directories)")
        return types.ListRootsResult(roots=given or [])

    def saw(self, front: FrontCall, result: Any) -> None:
        """The host of ``front`` answered a ``roots/list`` within a call with
        ``result``: kept for its per_client sessions, should it not answer outside one."""
        if isinstance(front.host, Connection) and not front.is_modern and \
                isinstance(result, types.ListRootsResult):
            self._seen[front.host] = list(result.roots)

    def _explain(self, server: str) -> None:
        if server in self._explained:
            return
        self._explained.add(server)
        logger.info(
            "upstream %s asked for its client's roots outside any call on its shared "
            "session: answered with none (it keeps its own directories), as that session "
            "serves every caller of the server and one caller's roots would become every "
            "caller's; 'isolation: per_client' for server '%s' in servers.yaml gives each "
            "caller its own session, answered with that caller's roots", server, server)

    async def learned(self, server: str, front: FrontCall,
                      result: types.ListRootsResult) -> None:
        """A 2026-07-28 host (of ``front``) answered ``server``'s ``roots/list`` within a
        call: kept, and each session answered for that host outside calls (the stdio
        host's, or that caller's own ``per_client`` ones) is told if they changed."""
        if not front.is_modern:
            return
        key = host_key(front)
        if not self.roots.learned(key, result.roots):
            return
        if key == STDIO_HOST:
            await _tell(list(self._told))
        else:
            await _tell([session for session, owner in list(self._owned.items())
                         if owner == key])

    async def arrived(self) -> None:
        """The host's handshake is done and it declared roots: each session answered
        ``[]`` before gets ``roots/list_changed`` (and asks again)."""
        sessions, self.unasked = list(self.unasked), weakref.WeakSet()
        await _tell(sessions)

    def owned_by(self, owner: Hashable) -> OwnerRoots:
        """What a ``per_client`` session of ``owner``'s (its host key) is answered."""
        return OwnerRoots(self, owner)


class OwnerRoots:
    """Roots outside calls for one ``per_client`` session: its owner's (module doc)."""

    def __init__(self, sole: SoleHost, owner: Hashable) -> None:
        self._sole = sole
        self._owner = owner

    async def answer(self, server: str, session: Any) -> Any:
        return await self._sole.answer(server, session, self._owner)

    def saw(self, front: FrontCall, result: Any) -> None:
        self._sole.saw(front, result)


async def _tell(sessions: list[ClientSession]) -> None:
    for session in sessions:  # a session that ended meanwhile has nobody to tell
        with anyio.move_on_after(_ANNOUNCE_WITHIN), suppress(Exception):
            await session.send_notification(types.RootsListChangedNotification())
