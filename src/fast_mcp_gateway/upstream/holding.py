"""The held session: what runs while a supervisor holds one connected session.

``hold`` returns once ``ended`` is set: by its own watchers, through ``end(reason)``
(the first reason wins), when the stdio server's stderr reaches end of file (its
process exited) or the SDK's dispatcher closes the session; or by the owner (stop,
reconnect, a fatal protocol error).  Meanwhile ``HealthProbe`` checks the server every
``health.interval`` and records each answer in the replica's health window, and the
owner's per-session tasks (``serve``) run in the same task group.  Every task started
here is cancelled before ``hold`` returns.  Nothing here restarts anything: the
supervisor (supervisor.py) decides what follows the end; ``SupervisorHooks`` is what its
owner (the replica) gives it for each session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

from fast_mcp_gateway._compat import session_closed
from fast_mcp_gateway.upstream.model import describe_error

if TYPE_CHECKING:
    from mcp import ClientSession

    from fast_mcp_gateway.upstream.stats import ReplicaAccounting

logger = logging.getLogger(__name__)


class SupervisorHooks(Protocol):
    """What the replica owning a ``Supervisor`` adds to each session (must not block)."""

    def session_kwargs(self) -> dict[str, Any]:
        """Callbacks and options for each new ``ClientSession``."""
        ...

    def serve(self, session: ClientSession, tg: anyio.abc.TaskGroup) -> None:
        """Start the tasks that live as long as ``session`` is held."""
        ...

    def state_changed(self, status: str, detail: str) -> None: ...

    def catalog_changed(self) -> None: ...

    def notify(self) -> None:
        """Anything changed (state, attempt, catalog, health): wake waiters."""
        ...

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait until ``predicate()`` holds, re-checked at each ``notify`` and at the
        end of the replica's last request in flight; False if not within ``within``."""
        ...


@dataclass(frozen=True, kw_only=True)
class HealthProbe:
    """The health probe of one held session: ``ping``, or ``server/discover`` with
    ``discover`` (the session's 2026-07-28 version; None for ping) every ``interval``
    seconds (a gateway's ping carries ``tell()``'s ``_meta``, and its answer names the
    gateways behind it: ``check``, as a discover's).  A failed or late probe is a health
    fact (logged at INFO), never an error; after each probe the replica's status is set
    (``ready``) and its waiters woken.  A probe the server refused for a session it no
    longer knows is never recorded: the refusal ends the session
    (``SessionEnd.forgotten``, before the SDK's client says it), and ``hold`` cancels
    the probe with it."""

    label: str
    interval: float
    timeout: float
    discover: str | None
    accounting: ReplicaAccounting
    ready: Callable[[], bool]
    notify: Callable[[], None]
    check: Callable[[Any], None] = lambda _meta: None  # a discover's _meta (loops.py)
    tell: Callable[[], dict[str, Any]] | None = None  # a gateway's ping's _meta (loops.py)

    async def run(self, session: ClientSession) -> None:
        """Probe until cancelled (``hold`` cancels it when the session ends)."""
        clock, health = self.accounting.clock, self.accounting
        while True:
            await anyio.sleep(self.interval)
            started = clock()
            try:
                with anyio.fail_after(self.timeout):
                    if self.discover is not None:
                        told = (await session.send_discover(self.discover)).get("_meta")
                    elif self.tell is not None:  # a gateway: its gateways as they are now
                        told = (await session.send_ping(meta=self.tell())).meta  # type: ignore[arg-type]
                    else:
                        await session.send_ping()
            except Exception as exc:  # noqa: BLE001 - a failed probe is a health fact
                health.health.record_probe(clock(), False)
                logger.info("upstream %s: health probe failed: %s", self.label,
                            describe_error(exc) or "timed out")
            else:
                health.health.record_probe(clock(), True, (clock() - started) * 1000)
                if self.discover is not None or self.tell is not None:
                    self.check(told)
            health.status(self.ready())
            self.notify()


SETTLE_WITHIN = 2.0
"""How long a session the server forgot is kept for the requests in flight on it."""
SIGNED_OUT_WITHIN = 3600.0
"""How long a session signed out of is kept for its requests in flight (each ends by
its own deadline first: the call timeout, ``max_total``; this bounds only a stray)."""


async def settle(busy: Callable[[], bool],
                 wait_until: Callable[[Callable[[], bool], float], Awaitable[bool]],
                 signed_out: bool = False) -> None:
    """Before a session the server forgot is closed, let the requests in flight on it
    end (each is answered 404 at once, and sent again on the next session): closing
    the session under them failed them as a broken connection (which may have run).
    So too for a session signed out of (``signed_out``): its calls running finish.
    Woken when the last of them ends (``SupervisorHooks.wait_until``), not polled."""
    within = SIGNED_OUT_WITHIN if signed_out else SETTLE_WITHIN
    await wait_until(lambda: not busy(), within)


async def hold(
    session: ClientSession,
    *,
    ended: anyio.Event,
    end: Callable[[str], None],
    stderr_done: anyio.Event | None,
    probe: HealthProbe,
    serve: Callable[[ClientSession, anyio.abc.TaskGroup], None],
) -> None:
    """Hold ``session`` until ``ended`` is set (see the module docstring).
    ``stderr_done`` is set when a stdio server's stderr closes (None: not stdio);
    ``end(reason)`` ends the session with a reason; ``serve`` starts the owner's tasks
    (it must not block)."""
    async with anyio.create_task_group() as tg:

        async def watch_stderr() -> None:
            assert stderr_done is not None
            await stderr_done.wait()
            end("process exited")

        async def watch_dispatcher() -> None:
            # No public "closed" event: poll the SDK's flag (see _compat).
            while not session_closed(session):  # noqa: ASYNC110
                await anyio.sleep(0.5)
            end("connection closed")

        if stderr_done is not None:
            tg.start_soon(watch_stderr)
        tg.start_soon(watch_dispatcher)
        tg.start_soon(probe.run, session)
        serve(session, tg)
        await ended.wait()
        tg.cancel_scope.cancel()
