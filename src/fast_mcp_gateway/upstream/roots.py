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

**Roots first** (``before_call``): a 2026-07-28 host declaring ``roots`` is asked for
them within its call (an MRTR round of the gateway's own, before the call goes
upstream) when it calls a server that asked for roots outside a call (``asking``), the
roots it would get are that host's (stdio; a ``per_client`` session over HTTP), and the
gateway has none of that host's (or it said they changed: ``HostRoots.changed``, from
``front/lane.py`` for a stdio host, ``http/roots_changed.py`` over HTTP).  Its
answer is kept (``learned``: the sessions that host's roots apply to are told), and the
call waits (bounded) until that server's told sessions asked again and were answered,
so the first call already sees them -- as a host connected directly gets them before
its first call.  One round per host (a call meanwhile waits for it), none for hosts
without ``roots``, shared HTTP sessions, or servers that never asked.

**A new session's first ask** (``expect`` / ``first_answer``): a ``per_client`` session
opens at its host's first call; a server known to ask once initialized (``asking``) is
waited for (bounded) until its first ``roots/list`` was answered, or that call raced it.
A wait that runs out is logged once and the server is not waited for again.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.connection import Connection
from mcp.shared.exceptions import MCPError, NoBackChannelError

from fast_mcp_gateway.upstream.credentials import Caller
from fast_mcp_gateway.upstream.relay import STDIO_HOST, FrontCall

logger = logging.getLogger(__name__)

_ANNOUNCE_WITHIN = 10.0  # seconds a session may take to read a roots/list_changed
SETTLE_WITHIN = 10.0
"""Seconds a server known to ask for roots may take to ask (once initialized, or told
they changed) before a call waiting for its answer goes on without (``Settling``)."""
APPLY_GRACE = 0.1
"""Seconds a call waits after a server read its roots before going to it: servers apply
them asynchronously (server-filesystem resolves each root first: 3-10 ms after its
answer, measured; a call meanwhile sees its old directories, connected directly too)."""
MAX_HOSTS = 256
"""Hosts whose roots are kept (the least recently answered are forgotten first)."""


def _shown(roots: list[types.Root]) -> tuple[tuple[str, str | None], ...]:
    return tuple((str(root.uri), root.name) for root in roots)


class HostRoots:
    """The latest roots each 2026-07-28 host gave within a call, by host key
    (``host_key``)."""

    def __init__(self) -> None:
        self._hosts: OrderedDict[Hashable, list[types.Root]] = OrderedDict()
        self._stale: set[Hashable] = set()   # said their roots changed since

    def learned(self, host: Hashable, roots: list[types.Root]) -> bool:
        """``host`` answered a ``roots/list`` within a call with ``roots``; whether they
        differ from what it gave before (or it gave none)."""
        before = self._hosts.pop(host, None)
        self._hosts[host] = list(roots)
        self._stale.discard(host)
        while len(self._hosts) > MAX_HOSTS:
            self._stale.discard(self._hosts.popitem(last=False)[0])
        return before is None or _shown(before) != _shown(roots)

    def changed(self, host: Hashable) -> None:
        """``host`` said its roots changed: the ones kept are still answered until it
        gives others, but it is asked again (``wanted``)."""
        if host in self._hosts:
            self._stale.add(host)

    def wanted(self, host: Hashable) -> bool:
        """Whether ``host`` should be asked for its roots: none kept, or stale."""
        return host not in self._hosts or host in self._stale

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
    return caller_key(front.caller)


def caller_key(caller: Caller | None) -> Hashable:
    """The host key of an HTTP caller (its verified credential; None: unauthenticated,
    one caller), as ``host_key`` gives it for its calls (``http/roots_changed.py``)."""
    return ("caller", caller.identity if caller is not None else None)


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
        self.asking: set[str] = set()   # servers that asked for roots outside a call
        # Sessions answered by rule 2 or 3 in stdio mode: their server.
        self._told: weakref.WeakKeyDictionary[ClientSession, str] = \
            weakref.WeakKeyDictionary()
        # per_client sessions over HTTP answered for their owner: (its host key, server).
        self._owned: weakref.WeakKeyDictionary[ClientSession, tuple[Hashable, str]] = \
            weakref.WeakKeyDictionary()
        # Roots first (module doc): told sessions' next asks, new sessions' first ones,
        # hosts being asked, hosts that refused, servers whose wait ran out once.
        self._settling: weakref.WeakKeyDictionary[ClientSession, Settling] = \
            weakref.WeakKeyDictionary()
        self._expected: dict[tuple[str, Hashable], Settling] = {}
        self._rounds: dict[Hashable, anyio.Event] = {}
        self._declined: OrderedDict[Hashable, None] = OrderedDict()
        self._unwaited: set[str] = set()
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
        self.asking.add(server)
        settling = self._settling.get(session)
        if settling is None and owner is not None:
            settling = self._expected.pop((server, owner), None)   # its first ask
        if settling is None:
            return await self._answer(server, session, owner)
        if settling.session is None:
            settling.session = session
        settling.asked.set()
        try:
            return await self._answer(server, session, owner)
        finally:
            settling.answered.set()

    async def _answer(self, server: str, session: Any, owner: Hashable | None) -> Any:
        if self.front is None:   # not a stdio gateway: several callers may use the server
            if isinstance(owner, Connection):
                return await self._ask_owner(server, owner)
            if owner is not None:
                self._owned[session] = (owner, server)
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
        self._told[session] = server
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
        sessions = [session for session, _ in self._sessions_of(key)]
        for session in sessions:   # awaited by a call that asked for them (before_call)
            self._settling[session] = Settling()
        await _tell(sessions)

    def _sessions_of(self, key: Hashable) -> list[tuple[ClientSession, str]]:
        """The sessions answered outside calls with ``key``'s roots, and their servers."""
        if key == STDIO_HOST:
            return list(self._told.items())
        return [(session, server) for session, (owner, server) in list(self._owned.items())
                if owner == key]

    # -- roots first (module doc) -------------------------------------------------------

    async def before_call(self, server: str, front: FrontCall, per_client: bool) -> None:
        """Before ``front``'s call of ``server`` goes upstream (a 2026-07-28 host's,
        through parking: ``front`` asks it in a round): ask the host for its roots if
        ``server`` needs them and the gateway has none of that host's, then wait
        (bounded) until ``server``'s sessions that host's roots apply to got them."""
        if server not in self.asking or not front.is_modern or not front.can_ask("roots"):
            return
        if self.front is None and not per_client:
            return   # a shared session over HTTP is answered none whatever a host gives
        key = host_key(front)
        while self.roots.wanted(key) and key not in self._declined:
            asking = self._rounds.get(key)
            if asking is not None:   # another call of this host asks it: one round per
                await asking.wait()  # host (ended unanswered: this call asks)
                continue
            self._rounds[key] = asking = anyio.Event()
            try:
                await front.list_roots()   # kept and told by ``learned``
            except MCPError as exc:   # it refused: not asked again, the call goes on
                logger.debug("upstream %s: the host refused roots/list: %s", server,
                             exc.error.message)
                self._declined[key] = None
                while len(self._declined) > MAX_HOSTS:
                    self._declined.popitem(last=False)
                return
            finally:
                del self._rounds[key]
                asking.set()
            break
        for session, of in self._sessions_of(key):
            settling = self._settling.get(session) if of == server else None
            if settling is not None and not await self._settled(server, settling):
                return

    def expect(self, server: str, owner: Hashable) -> Settling | None:
        """A ``per_client`` session of ``server`` for ``owner`` (its host key) opens: its
        first ``roots/list`` to wait for (``first_answer``), if ``server`` asks once
        initialized (it did on an earlier session); call before it starts."""
        if server not in self.asking or server in self._unwaited:
            return None
        settling = self._expected[(server, owner)] = Settling()
        return settling

    async def first_answer(self, server: str, owner: Hashable, settling: Settling) -> None:
        """Wait (bounded) until the session ``expect`` gave ``settling`` for got its
        first roots (before its first call goes to it)."""
        await self._settled(server, settling)   # cancelled: still awaited by others
        if self._expected.get((server, owner)) is settling:
            del self._expected[(server, owner)]

    async def _settled(self, server: str, settling: Settling) -> bool:
        """Wait for a session's ask and its answer; False when the server did not ask
        within ``SETTLE_WITHIN`` or was not answered (then it is not waited for again)."""
        if server in self._unwaited:
            return False
        with anyio.move_on_after(SETTLE_WITHIN):
            await settling.asked.wait()
        if settling.asked.is_set():
            with anyio.move_on_after(self.ask_within + SETTLE_WITHIN):
                await settling.answered.wait()
        if not settling.answered.is_set():
            if server not in self._unwaited:
                self._unwaited.add(server)
                logger.info(
                    "upstream %s asked for its client's roots outside a call before, but "
                    "did not ask again within %gs (once initialized, or told they "
                    "changed); its calls no longer wait for it", server, SETTLE_WITHIN)
            return False
        # The answer is on the session's write stream, ahead of this ping: once the ping
        # is answered the server has read it (a call the express lane writes to its stdin
        # directly could overtake it otherwise); then it has APPLY_GRACE to apply it.
        with anyio.move_on_after(SETTLE_WITHIN), suppress(Exception):
            await settling.session.send_ping()
        await anyio.sleep(APPLY_GRACE)
        return True

    async def arrived(self) -> None:
        """The host's handshake is done and it declared roots: each session answered
        ``[]`` before gets ``roots/list_changed`` (and asks again)."""
        sessions, self.unasked = list(self.unasked), weakref.WeakSet()
        await _tell(sessions)

    def owned_by(self, owner: Hashable) -> OwnerRoots:
        """What a ``per_client`` session of ``owner``'s (its host key) is answered."""
        return OwnerRoots(self, owner)


@dataclass(eq=False)
class Settling:
    """One session's next ``roots/list`` outside a call, awaited (roots first)."""

    asked: anyio.Event = field(default_factory=anyio.Event)
    answered: anyio.Event = field(default_factory=anyio.Event)
    session: Any = None   # the session that asked


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
