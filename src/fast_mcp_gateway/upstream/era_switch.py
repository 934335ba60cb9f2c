"""``protocol: auto`` learning that a replica needs the 2026-07-28 era, mid-run.

``auto`` opens the handshake era (``session.Era``).  A guard-style tool (one that asks
with an ``InputRequiredResult``) cannot answer there: FastMCP refuses it with -32602
"... only exists at MCP 2026-07-28" (``session.needs_modern``).  ``EraSwitch`` then
records the need, lets the calls in flight on the old session end (bounded by the
call timeout; new calls wait), reconnects the replica (``negotiate_auto``: 2026-07-28
when offered) and sends the refused call again, which is what the 2026-07-28 era does
with such a tool anyway: it re-runs it on every round.  Calls that met the refusal
meanwhile wait for the same reconnect.  The need holds for the replica's later
sessions, and with a store for later runs too (``era_memory.py``).

The other way round: towards a plain streamable-HTTP upstream ``auto`` opens
2026-07-28, and a tool that asks by push meets a refusal there: FastMCP's for
``ctx.elicit()``, or the MCP SDK's ``NoBackChannelError`` for a push through the
session (a lowlevel ``Server``'s ``elicit_form`` / ``create_message`` / ``list_roots``),
as an isError result (``session.asks_by_push``) or as the call's -32600 error
(``session.refuses_push``).  The same switch moves the replica to the handshake era; a
handshake host's call is sent again, a 2026-07-28 host keeps the refusal (what it would
get directly).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.upstream.session import asks_by_push, needs_modern, refuses_push
from fast_mcp_gateway.upstream.signals import ChangeSignal
from fast_mcp_gateway.upstream.stats import ReplicaAccounting
from fast_mcp_gateway.upstream.supervisor import Supervisor

logger = logging.getLogger(__name__)
T = TypeVar("T")


class EraSwitch:
    """Sends one replica's ``tools/call``s, moving it to 2026-07-28 when one needs it."""

    def __init__(self, supervisor: Supervisor, accounting: ReplicaAccounting,
                 changed: ChangeSignal, notify: Callable[[], None],
                 call_timeout: float) -> None:
        self._sup = supervisor
        self._stats = accounting
        self._changed = changed
        self._notify = notify
        self._call_timeout = call_timeout

    def _modern_and_ready(self) -> bool:
        return self._sup.is_modern and self._sup.session is not None

    async def send(self, name: str, send: Callable[[], Awaitable[T]],
                   modern_host: bool = False) -> T:
        """``send()``; once more in 2026-07-28 if the upstream says the tool needs it."""
        era, sup = self._sup.era, self._sup
        if era.switching:  # never start a call on the session about to be replaced
            await self._changed.wait_until(lambda: not era.switching, sup.connect_timeout * 3)
        try:
            result = await send()
            pushed = (asks_by_push(result) if sup.is_modern and era.mode == "auto"
                      and era.needs_handshake is None else None)
            if pushed is None:
                return result
            # A 2026-07-28 host would get the same refusal directly: it gets it, and
            # its next call the handshake session (where pushed asks become its rounds).
            return await send() if await self._to_handshake(name, pushed, modern_host) \
                else result
        except Exception as exc:
            pushed = (refuses_push(exc) if sup.is_modern and era.mode == "auto"
                      and era.needs_handshake is None else None)
            if pushed is not None:
                if await self._to_handshake(name, pushed, modern_host):
                    return await send()
                raise
            if sup.is_modern or era.mode != "auto" or not needs_modern(exc):
                raise
            if era.learn(f"tool '{name}' asks for input with an InputRequiredResult, which "
                         "exists only at 2026-07-28"):
                await self._switch(name, "the 2026-07-28 era", "2026-07-28")
            else:  # another call is switching: go on with it
                await self._changed.wait_until(lambda: not era.switching,
                                               sup.connect_timeout * 3)
            if not self._modern_and_ready():
                raise
        return await send()

    async def _to_handshake(self, name: str, pushed: str, modern_host: bool) -> bool:
        """Learn the handshake era from tool ``name``'s refused push (``pushed``: what
        it pushed) and reconnect in it; True when the call is to be sent again: a
        handshake host's, once the replica is in the handshake era."""
        era, sup = self._sup.era, self._sup
        if era.learn_handshake(f"tool '{name}' asks for input by push ({pushed}), which "
                               "exists only in the handshake era"):
            await self._switch(name, "the handshake era", "legacy")
        else:  # another call is switching: go on with it
            await self._changed.wait_until(lambda: not era.switching, sup.connect_timeout * 3)
        return not (modern_host or sup.is_modern or sup.session is None)

    async def _switch(self, tool: str, era: str, pin: str) -> None:
        """Reconnect the replica in ``era`` for ``tool`` (``pin``: the ``protocol:``
        value that would start it there)."""
        sup = self._sup
        logger.warning("upstream %s: tool '%s' needs %s; reconnecting in it (set "
                       "'protocol: %s' to start there)", sup.label, logged_name(tool), era,
                       pin)
        before = self._stats.connects
        try:
            with anyio.move_on_after(self._call_timeout):
                while self._stats.active:  # noqa: ASYNC110 - once per replica; no event
                    await anyio.sleep(0.05)
            sup.reconnect()
            await self._changed.wait_until(
                lambda: self._stats.connects > before and sup.session is not None,
                sup.connect_timeout * 2)
        finally:
            sup.era.switching = False
            self._notify()
