"""A call that finds no replica usable waits first, when waiting can help.

At most a call timeout, and only in two cases (a call, and a name bound to a server whose
catalog lacks it now: ``until_offered``): every replica is still making its first
connect attempt (``initialize`` is answered before the upstreams connect, and hosts such
as the Inspector CLI read or call right after it), or every one is on its way back (its
session just ended, or it reconnects with the next attempt under way or due within a call
timeout, and its last attempt was not refused or timed out): a crashed stdio server is
restarted at once, and a call right after the crash waited for nothing before, failing
"is reconnecting".  So does each retry of a call (``Service._route``): a read-only call
that broke because its server crashed is sent again once the restart under way is done.
The common case, a usable first replica, costs one property read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState

T = TypeVar("T")

WaitUntil = Callable[[Callable[[], bool], float], Awaitable[bool]]
"""``Service.wait_until``: wait (bounded) until a predicate holds, checked at each change."""


async def until_usable(replicas: Sequence[Upstream], wait_until: WaitUntil) -> None:
    """Return at once unless waiting can help (module docstring); then once a replica is
    usable, an attempt ended (a failed one: the call fails with its reason), waiting can
    no longer help, or a call timeout passed."""
    if all_starting(replicas):
        await _first_connects(replicas)
    elif coming_back(replicas):
        before = _attempts(replicas)
        await wait_until(
            lambda: any(r.session is not None for r in replicas)
            or _attempts(replicas) > before or not coming_back(replicas),
            max(r.call_timeout for r in replicas))


async def until_offered(replicas: Sequence[Upstream], offered: Callable[[], bool],
                        wait_until: WaitUntil, within: float) -> bool:
    """For a name bound to the server of ``replicas`` that its catalog lacks now: when
    waiting can help (module docstring; the gateway just started, or a reload restarted
    a server hosts did not see listed: no catalog until it connects), wait until
    ``offered()``, an attempt ended (a failed one: the name is refused, saying the
    server's state), waiting can no longer help, or a call timeout (at most ``within``)
    passed.  True when it is offered."""
    def waiting_helps() -> bool:
        return all_starting(replicas) or coming_back(replicas)

    if not waiting_helps():
        return False
    before = _attempts(replicas)
    # A successful attempt ends after the catalog built with it (``manager._rebuild``).
    await wait_until(lambda: offered() or _attempts(replicas) > before or not waiting_helps(),
                     min(within, max(r.call_timeout for r in replicas)))
    return offered()


def all_starting(replicas: Sequence[Upstream]) -> bool:
    return bool(replicas) and all(r.state is UpstreamState.STARTING for r in replicas)


def still_offered(server: str, tool: str, send: Callable[[Upstream], Awaitable[T]]
                  ) -> Callable[[Upstream], Awaitable[T]]:
    """``send`` for a call made while a restarted server stood in with the catalog hosts
    saw (``Service.previous``): a replica whose new session no longer lists ``tool`` has
    it refused in the gateway's words, not sent (the server would answer its own
    "Unknown tool", or run something else under the name)."""
    async def checked(replica: Upstream) -> T:
        if not any(t.name == tool for t in replica.catalog.tools):
            raise UpstreamError(server, f"tool '{tool}' is no longer offered: the server was "
                                "restarted (its configuration changed) and its new session "
                                "does not list it; list the tools again")
        return await send(replica)
    return checked


def still_first_starting(replicas: Sequence[Upstream]) -> bool:
    """No replica ready and one still starting: a restarted service keeps standing in
    with its old catalog (one replica failing while another may yet come up is no
    reason to take the tools away)."""
    states = {r.state for r in replicas}
    return UpstreamState.STARTING in states and UpstreamState.READY not in states


def coming_back(replicas: Sequence[Upstream]) -> bool:
    """No replica usable, and every one on its way back (module docstring)."""
    if not replicas or replicas[0].session is not None:
        return False  # usable: the common case, one property read
    now = time.time()
    for replica in replicas:
        if replica.session is not None:
            return False
        state = replica.state
        if state is UpstreamState.READY or state is UpstreamState.STARTING:
            continue  # READY without a session: it ended, the loop restarts it
        if state is not UpstreamState.RECONNECTING:
            return False  # failed, disabled or stopped: nothing to wait for
        if replica.down:
            return False  # refused or timed out: down, its next attempt likely too
        due = replica.next_retry_at
        if due is not None and due - now >= replica.call_timeout:
            return False  # backing off longer than a call may wait
    return True


def _attempts(replicas: Sequence[Upstream]) -> int:
    return sum(r.attempts for r in replicas)


async def _first_connects(replicas: Sequence[Upstream]) -> None:
    with anyio.move_on_after(max(r.call_timeout for r in replicas)):
        async with anyio.create_task_group() as tg:
            for replica in replicas:
                tg.start_soon(_first_of, replica, tg.cancel_scope)


async def _first_of(replica: Upstream, scope: anyio.CancelScope) -> None:
    await replica.wait_first_attempt()
    scope.cancel()
