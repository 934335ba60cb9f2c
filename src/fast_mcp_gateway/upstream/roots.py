"""An upstream's ``roots/list`` outside any call: whose roots it is answered with.

A handshake-era upstream may ask for its client's roots when no call is in flight
(server-filesystem asks once initialized, and again at each
``notifications/roots/list_changed``).  Within a call the call's host is asked
(``relay.HostRelay``); outside one ``SoleHost.answer`` answers, by this rule:

1. the stdio gateway's one host, if it is a handshake-era host that declared roots:
   asked (through the express lane's request channel), as connected directly;
2. else the roots 2026-07-28 hosts gave (``HostRoots``).  Such a host is never asked
   outside a call (its era has no session to ask on); it gives its roots when it
   answers an upstream's ``roots/list`` within a call (an MRTR round:
   ``front/parked.py``), and each host's latest are kept.  Counted: the hosts that use
   the server -- the stdio gateway's one host (whichever server it answered), or over
   HTTP each caller (by its verified credential: unauthenticated hosts are one caller)
   that gave its roots in a call of this server.  The same roots from all of them:
   those; different ones: an error saying so (-32600): the gateway never answers with
   one host's roots for another (a server asking outside calls serves them all on one
   session);
3. none known: no roots (``[]``: the upstream keeps its own directories).

A session answered by rule 2 or 3 is told ``notifications/roots/list_changed`` once
the answer may differ -- a handshake-era stdio host's handshake (``arrived``), a
2026-07-28 host giving roots, or other roots (``learned``) -- and asks again, as it
would of a host connected directly that changed its roots.  HTTP hosts of the
handshake era are never asked outside a call (an answer for a shared session could
come from the wrong host): rule 2 counts 2026-07-28 hosts only.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import suppress
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.upstream.relay import STDIO_HOST, FrontCall

_ANNOUNCE_WITHIN = 10.0  # seconds a session may take to read a roots/list_changed
MAX_HOSTS = 256
"""Hosts whose roots are kept (the least recently answered are forgotten first)."""


def _shown(roots: list[types.Root]) -> tuple[tuple[str, str | None], ...]:
    return tuple((str(root.uri), root.name) for root in roots)


class HostRoots:
    """The roots 2026-07-28 hosts gave, by host, and the servers they gave them in
    calls of (the module docstring's rule 2)."""

    def __init__(self) -> None:
        self._hosts: OrderedDict[Hashable, tuple[list[types.Root], set[str]]] = \
            OrderedDict()

    def learned(self, host: Hashable, server: str, roots: list[types.Root]) -> bool:
        """``host`` answered ``server``'s ``roots/list`` within a call with ``roots``;
        whether that may change what a server is answered outside calls."""
        before = self._hosts.pop(host, None)
        servers = before[1] if before is not None else set()
        changed = before is None or _shown(before[0]) != _shown(roots) \
            or server not in servers
        self._hosts[host] = (list(roots), servers | {server})
        while len(self._hosts) > MAX_HOSTS:
            self._hosts.popitem(last=False)
        return changed

    def of(self, server: str) -> types.ListRootsResult | types.ErrorData | None:
        """What ``server`` is answered outside calls: the roots every host using it
        gave, an error when they differ, None when no host gave any."""
        given = [roots for host, (roots, servers) in self._hosts.items()
                 if host == STDIO_HOST or server in servers]
        if not given:
            return None
        if len({_shown(roots) for roots in given}) > 1:
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"server '{server}' asked for roots outside any call, and the "
                f"{len(given)} hosts that gave their roots in its calls gave different ones: "
                "the gateway answers none rather than one host's roots for another (ask "
                "for roots within a call, where the call's own host answers)")
        return types.ListRootsResult(roots=given[-1])


def host_key(front: FrontCall) -> Hashable:
    """Who ``front``'s host is, for ``HostRoots``: the stdio gateway's one host, else
    its caller (a 2026-07-28 host has no session; by its verified credential)."""
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
        self._told: weakref.WeakSet[ClientSession] = weakref.WeakSet()  # answered by 2, 3

    def get(self) -> FrontCall | None:
        return self.front() if self.front is not None else None

    async def answer(self, server: str, session: Any) -> Any:
        """``server``'s ``roots/list`` outside any call, on ``session``."""
        sole = self.get()
        if sole is not None and sole.can_ask("roots"):
            try:
                return await sole.list_roots()
            except MCPError as exc:
                return exc.error
        given = self.roots.of(server)
        self._told.add(session)
        if sole is None and given is None:
            self.unasked.add(session)  # no host yet: told when one comes
        return given if given is not None else types.ListRootsResult(roots=[])

    async def learned(self, server: str, front: FrontCall,
                      result: types.ListRootsResult) -> None:
        """A 2026-07-28 host (of ``front``) answered ``server``'s ``roots/list`` within a
        call: kept, and each session answered outside calls is told if that may change
        its answer."""
        if front.is_modern and self.roots.learned(host_key(front), server, result.roots):
            await _tell(list(self._told))

    async def arrived(self) -> None:
        """The host's handshake is done and it declared roots: each session answered
        ``[]`` before gets ``roots/list_changed`` (and asks again)."""
        sessions, self.unasked = list(self.unasked), weakref.WeakSet()
        await _tell(sessions)


async def _tell(sessions: list[ClientSession]) -> None:
    for session in sessions:  # a session that ended meanwhile has nobody to tell
        with anyio.move_on_after(_ANNOUNCE_WITHIN), suppress(Exception):
            await session.send_notification(types.RootsListChangedNotification())
