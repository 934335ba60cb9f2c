"""Per-client upstream sessions: ``isolation: per_client``.

A shared upstream session serves every host; what the upstream says during a call
(asks, logs) then has to be attributed, and over stdio that is by timing only
(``upstream/relay.py``).  ``per_client`` removes the question: each host session
gets an upstream session of its own (for stdio, its own process), so everything on
it belongs to that host.

* **Which host**: a handshake-era host is its connection (one ``Mcp-Session-Id``,
  or the one stdio host); a 2026-07-28 host has no session, so it is its verified
  caller identity (its token), and unauthenticated 2026-07-28 hosts share one
  session; a server with ``${caller.*}`` headers is keyed by caller identity
  always (its sessions carry that caller's credential).  A call with no host at all
  (the in-process library, admin inspection) uses the server's catalog session.
* **Roots**: a server known to ask for its client's roots once initialized (it asked
  outside a call before: ``upstream/roots.py``) is waited for, at most about
  ``SETTLE_WITHIN`` seconds for its ask (plus the ask timeout for its answer, and
  ``APPLY_GRACE`` for the server to apply it), before a new session's first call goes
  to it: that call raced the server's ``roots/list`` and saw the server's own
  directories, the next ones the host's roots.
* **Lifetime**: created on the host's first call (``max_clients`` at most: beyond,
  a clear refusal, unless one is given back -- *fairness* below); reaped when the
  host's connection closes (the SDK unwinds its
  ``exit_stack``), or after ``idle_timeout`` without a call; stopped with the
  gateway.  Reaping stops the replica's supervisor, which ends the session and
  terminates its process group: no process outlives its host.
* **Catalog, health, breakers**: the server's configured replica stays as the
  *catalog session*: it lists the catalog (every host sees the same names), is
  probed for health, and decides the server's state; it serves no host's calls.
  Each client session has its own breaker and health window (a host's failures do
  not open another's breaker); balancing and failover do not apply (a host has one
  session; a failed call is not re-sent to another host's).
* **Fairness**: a handshake-era host is a connection, so one token opening many MCP
  sessions took every slot and locked every other caller out.  Each session counts for
  its *owner*, the verified caller (its principal: a token's name, a JWT's subject;
  every unauthenticated host is one owner).  When all ``max_clients`` are taken and a
  caller needs one, the owner holding the most -- at least two more than that caller,
  so giving one back never just swaps who holds more -- gives back its least recently
  used idle session (no call in flight; its host gets a new one at its next call, if
  there is room then).  Otherwise the refusal says how many this caller holds and what
  to do; it never names another caller.  So slots end shared as evenly as the callers
  need them, and one caller alone may still use them all.
* **Telling the host whose session was given back**: its next call that gets a session
  (a new one: what a stateful server kept for the old one is gone) carries a notice, a
  ``notifications/message`` at level ``warning`` related to that call (at the levels
  the host asked for) and ``_meta["io.github.fast-mcp-gateway/session"]`` on its
  result (``Service`` adds it from ``CallPath.notes``): which server, why (another
  caller needed the slot, ``max_clients=N``) and what to do (keep the session busy, or
  raise ``max_clients``).  Until then a refusal for want of room says so too.  Kept per
  host key until told, forgotten when the host leaves (``_NOTICES`` at most).
* **Telling the host whose session was reaped idle**: the same notice, ``reason``
  ``idle`` with ``idle_timeout`` (seconds): its session sat idle for more than
  ``idle_timeout`` and was closed; to keep one, raise ``idle_timeout`` or keep the
  session busy.  Only reaping for idleness is told: a host that left is not there to
  tell, and a gateway stopping tells no one.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.errors import NoHealthyReplica, UpstreamUnavailable
from fast_mcp_gateway.policies.stalls import ToolTimes
from fast_mcp_gateway.routing.attempts import CallPath
from fast_mcp_gateway.upstream.credentials import for_caller
from fast_mcp_gateway.upstream.relay import FrontCall
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState
from fast_mcp_gateway.upstream.roots import Settling, SoleHost

logger = logging.getLogger(__name__)

MakeUpstream = Callable[[ServerConfig, str, dict[str, Any] | None, Hashable], Upstream]
"""A client session of a server (its config, label, the client capabilities of the one
host it serves, which it declares no more than: None, all it can relay, and that host's
key: whose roots it is answered outside calls, ``upstream/roots.py``)."""
Spawn = Callable[[Callable[[], object], str], None]
# (server, params, host key): a log one host's session sent between its calls.
HostLog = Callable[[str, types.LoggingMessageNotificationParams, Hashable], None]

SESSION_META = "io.github.fast-mcp-gateway/session"
"""The ``_meta`` key of a result whose call runs on a new session because the host's
previous one was given back for another caller or reaped idle (module doc)."""
NOTICE_LOGGER = "fast-mcp-gateway"
"""The ``logger`` of the gateway's own ``notifications/message`` to a host."""
_NOTICES = 1024  # host keys told at their next call at most (the oldest go first)


@dataclass(eq=False)
class _Client:
    key: Hashable
    upstream: Upstream
    calls: int = 0
    last_used: float = 0.0
    ready: anyio.Event = field(default_factory=anyio.Event)
    host: Hashable = None  # the host key of its calls: where its idle logs go
    owner: str | None = None  # the caller it counts for (module doc: fairness)
    owner_kind: str | None = None  # what owner names: token | jwt
    roots: Settling | None = None  # its first roots/list, awaited before its first call


class ClientSessions:
    """The per-host upstream sessions of one ``per_client`` server (module doc)."""

    def __init__(self, config: ServerConfig, make: MakeUpstream, spawn: Spawn,
                 log: HostLog | None = None, roots: SoleHost | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._roots = roots
        self._make = make
        self._spawn = spawn
        self._log = log
        self._clock = clock
        self._clients: dict[Hashable, _Client] = {}
        self._seq = itertools.count(1)
        self._wake = anyio.Event()
        self._reaping = False
        self.created = 0
        self.reaped = 0
        self.reclaimed = 0  # given back for another caller (counted in ``reaped`` too)
        # Host key -> the notice its next call carries (module doc: telling the host).
        self._notices: dict[Hashable, dict[str, Any]] = {}
        self._times = ToolTimes()   # its tools' times, over its hosts' sessions (stalls)

    @property
    def upstreams(self) -> list[Upstream]:
        """The live client sessions (status reports, shutdown)."""
        return [c.upstream for c in self._clients.values()]

    @property
    def owned(self) -> list[tuple[tuple[str | None, str | None], Upstream]]:
        """The live client sessions, each with the caller it counts for (its owner's
        kind, token or jwt, and name: None for unauthenticated hosts): a status shows a
        caller its own only."""
        return [((c.owner_kind, c.owner), c.upstream) for c in self._clients.values()]

    def of_host(self, key: Hashable) -> Upstream | None:
        """The live session keyed by ``key`` (a host's connection, a caller), if any."""
        client = self._clients.get(key)
        return client.upstream if client is not None else None

    def key_of(self, front: FrontCall | None) -> Hashable | None:
        """The host a call belongs to, for choosing its session (None: no host)."""
        if self.config.uses_caller_credentials:
            caller = front.caller if front is not None else None
            return ("caller", caller.identity) if caller is not None else ("caller", None)
        if front is None or not front.reachable:
            return None
        if front.is_modern:
            return ("caller", front.caller.identity if front.caller is not None else None)
        host: Hashable = front.host
        return host

    @asynccontextmanager
    async def session(self, front: FrontCall | None,
                      path: CallPath | None = None) -> AsyncIterator[Upstream | None]:
        """The session of ``front``'s host for the duration of one request (None: the
        call has no host; use the catalog session).  A host whose previous session was
        given back is told (module doc), its notice put in ``path.notes`` too."""
        key = self.key_of(front)
        if key is None:
            yield None
            return
        client = self._clients.get(key) or self._open(key, front)
        client.calls += 1  # counted from now: the reaper never takes a session in use
        client.host = front.host if front is not None else None
        try:
            await self._ready(client)
            if self._notices and (notice := self._notices.pop(key, None)) is not None:
                await _tell(front, path, notice)
            yield client.upstream
        finally:
            client.calls -= 1
            client.last_used = self._clock()
            self._wake.set()

    async def _ready(self, client: _Client) -> None:
        if client.ready.is_set():
            return
        upstream = client.upstream
        # As long as its first attempt may last: a server that visibly works (a first
        # npx download) is given more than timeouts.connect, and so is its first caller.
        with anyio.move_on_after(upstream.longest_attempt):
            await upstream.wait_first_attempt()
        if upstream.state is not UpstreamState.READY:
            client.ready.set()
            reason = upstream.unavailable_reason()
            self.release(client.key)  # a failed first connect is not kept retrying
            raise UpstreamUnavailable(upstream.label, reason)
        if client.roots is not None and self._roots is not None:  # module doc: roots
            # Each first call waits for the same answer (one may be cancelled meanwhile).
            await self._roots.first_answer(self.config.name, client.key, client.roots)
        client.roots = None
        client.ready.set()

    def _open(self, key: Hashable, front: FrontCall | None) -> _Client:
        name, limit = self.config.name, self.config.max_clients
        caller = front.caller if front is not None else None
        owner = caller.name if caller is not None else None
        if len(self._clients) >= limit:
            self._make_room(owner, key)
        config = self.config
        if config.uses_caller_credentials:
            config = for_caller(config, front.caller if front is not None else None)
        declares = declares_of(key, front)
        upstream = self._make(config, f"{name}~{next(self._seq)}", declares, key)
        upstream.share_tool_times(self._times)
        client = _Client(key, upstream, last_used=self._clock(), owner=owner,
                         owner_kind=caller.kind if caller is not None else None)
        if self._roots is not None and (declares is None or "roots" in declares):
            client.roots = self._roots.expect(name, key)   # before it can ask
        log = self._log
        if log is not None:
            async def idle_log(params: types.LoggingMessageNotificationParams) -> None:
                log(name, params, client.host)

            upstream.send_idle_logs_to(idle_log)
        self._clients[key] = client
        self.created += 1
        self._spawn(upstream.run, f"upstream:{upstream.label}")
        exit_stack = getattr(key, "exit_stack", None)
        if exit_stack is not None:  # an SDK connection: reap when the host leaves
            exit_stack.callback(self._left, key)
        if not self._reaping:
            self._reaping = True
            self._spawn(self._reap_idle, f"per-client reaper:{name}")
        logger.info("upstream %s: new per-client session %s (%d of at most %d)", name,
                    upstream.label, len(self._clients), limit)
        return client

    def _make_room(self, owner: str | None, key: Hashable) -> None:
        """Give back the least recently used idle session of the owner holding the most,
        at least two more than ``owner`` (module doc: fairness); else the refusal (for
        the host of ``key``)."""
        name, limit = self.config.name, self.config.max_clients
        held = Counter(c.owner for c in self._clients.values())
        mine = held[owner]
        over = [c for c in self._clients.values() if held[c.owner] >= mine + 2]
        idle = [c for c in over if not c.calls]
        if idle:
            given = min(idle, key=lambda c: (-held[c.owner], c.last_used))
            logger.warning(
                "upstream %s: all %d per-client sessions taken; session %s of caller %s "
                "(holding %d) given back for caller %s (holding %d)", name, limit,
                given.upstream.label, _shown(given.owner), held[given.owner],
                _shown(owner), mine)
            self.reclaimed += 1
            self.release(given.key)
            self._keep_notice(given.key, _reclaimed_notice(name, limit, held[given.owner]))
            return
        who = f"caller '{owner}'" if owner is not None else "unauthenticated callers"
        lost = _lost(self._notices.get(key))
        why = ("another caller holds more, but each of its sessions has a call in "
               "flight: retry when one is idle, " if over else
               "no other caller holds two more than that, so none is given back for it: "
               f"close another MCP session of {who}, ")
        raise NoHealthyReplica(
            name, f"has isolation: per_client and already serves {limit} host sessions "
            f"(max_clients: {limit}), {mine} of them held by {who}{lost}; {why}wait until an idle "
            f"one is reaped (idle_timeout: {self.config.idle_timeout:g}s), or raise "
            f"max_clients for server '{name}' in servers.yaml")

    def release(self, key: Hashable) -> None:
        """Stop the session of ``key``'s host (it left, or went idle)."""
        client = self._clients.pop(key, None)
        if client is None:
            return
        self.reaped += 1
        logger.info("upstream %s: per-client session %s ended", self.config.name,
                    client.upstream.label)
        client.upstream.stop()

    def _left(self, key: Hashable) -> None:
        """``key``'s host left: its session ends and nothing is kept to tell it."""
        self._notices.pop(key, None)
        self.release(key)

    def _keep_notice(self, key: Hashable, notice: dict[str, Any]) -> None:
        self._notices.pop(key, None)
        self._notices[key] = notice
        while len(self._notices) > _NOTICES:
            del self._notices[next(iter(self._notices))]

    def stop_all(self) -> None:
        for key in list(self._clients):
            self.release(key)

    def kill_all(self) -> None:
        for client in list(self._clients.values()):
            client.upstream.kill()

    async def _reap_idle(self) -> None:
        idle = self.config.idle_timeout
        try:
            while True:
                self._wake = anyio.Event()
                now = self._clock()
                due: float | None = None
                for key, client in list(self._clients.items()):
                    if client.calls:
                        continue
                    expires = client.last_used + idle
                    if expires <= now:
                        self.release(key)
                        self._keep_notice(key, _idle_notice(self.config.name, idle))
                    else:
                        due = expires if due is None else min(due, expires)
                with anyio.move_on_after(idle if due is None else due - now):
                    await self._wake.wait()
        finally:
            self._reaping = False
            with suppress(Exception):
                self.stop_all()


def declares_of(key: Hashable, front: FrontCall | None) -> dict[str, Any] | None:
    """The client capabilities a session for ``key`` declares no more than: those of
    its one handshake-era host (its ``initialize``'s, as fixed as the session's own
    ad); None (all the gateway relays) for a session keyed by a caller, whose hosts
    (2026-07-28 ones declare per request: narrowed there) may differ."""
    if front is None or front.is_modern or key != front.host:
        return None
    return front.declared_capabilities()


def _shown(owner: str | None) -> str:
    return f"'{owner}'" if owner is not None else "(unauthenticated)"


def _reclaimed_notice(name: str, limit: int, held: int) -> dict[str, Any]:
    """What a host whose session was given back is told (as ``SESSION_META``)."""
    message = (
        f"server '{name}': this call runs on a new upstream session; the previous session "
        f"of this host was given back for another caller, as all max_clients={limit} "
        f"per-client sessions were taken and this host's caller held {held} of them "
        "(the least recently used idle session of the caller holding the most goes "
        "first).  Anything the server kept for the previous session (a login, open "
        "handles, a working state) is gone: set it up again if needed.  To keep a "
        "session, keep it busy (an idle one is given back first), use fewer sessions "
        f"per caller, or raise max_clients for server '{name}' in servers.yaml")
    return {"renewed": True, "server": name, "reason": "given_back",
            "max_clients": limit, "message": message}


def _idle_notice(name: str, idle: float) -> dict[str, Any]:
    """What a host whose session was reaped idle is told (as ``SESSION_META``)."""
    message = (
        f"server '{name}': this call runs on a new upstream session; the previous session "
        f"of this host was closed because it was idle for more than {idle:g}s (no call "
        f"within idle_timeout: {idle:g}s).  Anything the server kept for the previous "
        "session (a login, open handles, a working state) is gone: set it up again if "
        f"needed.  To keep a session, raise idle_timeout for server '{name}' in "
        f"servers.yaml, or keep the session busy (a call at least every {idle:g}s)")
    return {"renewed": True, "server": name, "reason": "idle", "idle_timeout": idle,
            "message": message}


def _lost(notice: dict[str, Any] | None) -> str:
    """What a refusal adds for a host whose previous session is gone (none: nothing)."""
    if notice is None:
        return ""
    why = ("was given back for another caller" if notice["reason"] == "given_back" else
           f"was closed after idle_timeout ({notice['idle_timeout']:g}s)")
    return f" (this host's previous session {why}: its next session is a new one)"


async def _tell(front: FrontCall | None, path: CallPath | None,
                notice: dict[str, Any]) -> None:
    """Tell the host of ``front`` (a log related to its call) and its result (``path``)."""
    if path is not None:
        path.notes = {**(path.notes or {}), SESSION_META: notice}
    if front is None or not front.reachable:
        return
    params = types.LoggingMessageNotificationParams(
        level="warning", logger=NOTICE_LOGGER, data=notice["message"])
    with suppress(Exception):  # a host gone or not asking for logs: the result says it
        await front.log(params)
