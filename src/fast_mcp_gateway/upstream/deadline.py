"""A request's deadline: ``timeouts.call``, pushed out by the request's progress.

A request that reports progress is alive: each ``notifications/progress`` for it moves
its deadline to ``timeouts.call`` from then, never past ``timeouts.max_total`` from its
start (the TypeScript SDK's ``resetTimeoutOnProgress`` with ``maxTotalTimeout``).  One
that stops reporting times out ``timeouts.call`` after its last progress.  A
``max_total`` not above ``call`` turns the extension off.

``Deadline`` is the express lanes' taps' (``http_tap``, ``stdio_tap``): one timer per
request.  ``progress_bounded`` is the same rule around a request the SDK's session sends
(the full path, and the SDK fallbacks of the lanes).  Either ends a request that ran out
with ``DeadlineReached``, which says which limit it hit.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import anyio
import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

T = TypeVar("T")
Limit = Literal["call", "max_total"]


@dataclass
class Pace:
    """What one upstream request's time says of its replica's speed
    (``ReplicaAccounting.record``): whether it reported progress (long by design), and
    how long it waited on its host's answers.  A question the request put to its host
    (``HostRelay._put``: ``asked``) holds its deadline, within ``timeouts.max_total``
    from its start: a person filling an elicitation form is not a server that does not
    answer; the answer gives it ``timeouts.call`` again, as a progress report does."""

    progressed: bool = False
    waited: float = 0.0  # seconds with a question pending (several at once count once)
    asking: int = 0  # questions pending
    moved: list[Callable[[], None]] = field(default_factory=list)  # deadlines to tell
    since: float = 0.0  # when the questions pending began (while ``asking``)

    def asked(self, pending: bool, now: float) -> None:
        """A question was put (``pending``) or answered, at ``now`` (anyio's clock).
        The time waited is that with any question pending: two put at once and answered
        ten seconds later are ten seconds of the host's, not twenty (which, taken off
        the request's time, made a slow call's latency 0 ms)."""
        if pending:
            if not self.asking:
                self.since = now
            self.asking += 1
        else:
            self.asking -= 1
            if not self.asking:
                self.waited += now - self.since
        for tell in self.moved:
            tell()


PACE: ContextVar[Pace | None] = ContextVar("gateway_request_pace", default=None)
"""The ``Pace`` of the upstream request the current task sends (``Requests.request``):
the deadlines made in that task (``Deadline``, ``progress_bounded``) mark its progress."""

SPENT: ContextVar[float] = ContextVar("gateway_request_spent", default=0.0)
# The reason the host gave when it cancelled the call this task serves (its
# ``notifications/cancelled``), looked up as the cancellation goes upstream: the
# gateway's own words replaced it (fidelity15).  Set by the front that reads the host's
# cancellations (``front/lane.py``); the gateway's own cancels (a timeout) keep theirs.
HOST_REASON: ContextVar[Callable[[], str | None] | None] = ContextVar(
    "gateway_host_cancel_reason", default=None)


def host_reason(default: str) -> str:
    """The host's reason for cancelling this task's call, else ``default``."""
    told = HOST_REASON.get()
    reason = told() if told is not None else None
    return reason if isinstance(reason, str) else default
"""Seconds of the current request's time spent before it was sent (``Requests.request``:
one sent again on a new session, its refusal and the renewal): its deadlines made in
that task (``Deadline``, ``progress_bounded``) run from that much earlier, so that its
first ``call`` and its ``max_total`` are what is left of them; progress gives it
``call`` again, as any request (not what was left at the resend)."""


class DeadlineReached(MCPError):
    """``REQUEST_TIMEOUT`` (as the SDK's session raises it), saying which limit ended the
    request: ``call`` (no answer, or no progress, for ``seconds``) or ``max_total``
    (still reporting progress at ``seconds`` in all)."""

    def __init__(self, limit: Limit, seconds: float, progress: int) -> None:
        super().__init__(code=types.REQUEST_TIMEOUT, message=f"Timed out after {seconds:g}s")
        self.limit, self.seconds, self.progress = limit, seconds, progress


def extends(call: float, max_total: float | None) -> bool:
    """Whether progress pushes a request's deadline out at all."""
    return max_total is not None and max_total > call and math.isfinite(call)


class Deadline:
    """Cancels the calling task once ``seconds`` pass, as ``asyncio.timeout`` does, with
    one timer and no lookups of the running loop (each is a getpid() on 3.11: anyio's
    ``fail_after``, then ``asyncio.timeout``, cost ~4 % and ~2 % of the gateway's CPU
    per relayed call).  ``progressed()`` moves the deadline (module docstring); the
    timer is moved lazily, when it fires early, so progress costs no timer."""

    __slots__ = ("at", "cancelling", "due", "end", "expired", "first", "handle", "loop",
                 "pace", "progress", "seconds", "task", "total")
    end: float | None  # when max_total is reached; None: progress does not extend

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float,
                 max_total: float | None = None) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a tap request runs in an asyncio task")
        self.task, self.expired, self.loop, self.seconds = task, False, loop, seconds
        self.pace = PACE.get()
        if self.pace is not None:
            self.pace.moved.append(self._asked)
        self.cancelling = task.cancelling()
        self.progress = 0
        self.total = max_total if max_total is not None else seconds
        spent = SPENT.get()  # (a request sent again: its time so far)
        self.first = seconds - spent  # its first window (no progress yet)
        if not math.isfinite(seconds):
            self.handle: asyncio.TimerHandle | None = None
            self.end = None
            return
        now = loop.time() - spent
        self.at = self.due = now + seconds
        self.end = now + max_total if max_total is not None and extends(seconds, max_total) \
            else None
        self.handle = loop.call_at(self.at, self._expire)

    def progressed(self, heard: Callable[[], None] | None = None) -> None:
        """A progress notification of the request came: it is alive (``heard``, the
        tap's, is told of it, whether or not it moves the deadline: the replica is
        working either way, ``policies/stalls.py``)."""
        if heard is not None:
            heard()
        if self.pace is not None:
            self.pace.progressed = True
        if self.handle is not None and self.end is not None:
            self.progress += 1
            self.due = min(self.loop.time() + self.seconds, self.end)

    def _asked(self) -> None:
        """A question was put (``_expire`` waits while one is pending, up to ``end``) or
        answered: ``seconds`` from now, as a progress report (never past ``end``)."""
        if self.handle is not None and self.end is not None:
            self.due = min(self.loop.time() + self.seconds, self.end)

    def _expire(self) -> None:
        if self.pace is not None and self.pace.asking and self.end is not None:
            self.due = min(self.loop.time() + self.seconds, self.end)  # the host is asked
        if self.due > self.at:  # progress came meanwhile: wait for the new deadline
            self.at = self.due
            self.handle = self.loop.call_at(self.at, self._expire)
            return
        self.expired = True
        self.task.cancel()

    def reached(self) -> bool:
        """After a ``CancelledError``: whether it was this deadline's alone (then it is
        taken back; a cancellation from outside goes on)."""
        self.stop()
        return self.expired and self.task.uncancel() <= self.cancelling

    def error(self) -> DeadlineReached:
        """What the request raises once ``reached()``."""
        if self.end is not None and self.due >= self.end:
            return DeadlineReached("max_total", self.total, self.progress)
        return DeadlineReached("call", self.seconds if self.progress else self.first,
                               self.progress)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


async def progress_bounded(call: float, max_total: float | None,
                           on_progress: ProgressFnT | None,
                           send: Callable[[ProgressFnT | None, float], Awaitable[T]],
                           heard: Callable[[], None] | None = None) -> T:
    """``send(progress callback, SDK timeout)`` -- a request the SDK's session sends --
    under the module's rule.  The SDK's own timeout bounds the whole run (``max_total``,
    on its clock, which stops while it waits on a person); a cancel scope here ends the
    request ``call`` seconds after its start or its last progress (the SDK then cancels
    it upstream, as for any caller's cancellation).  The callback is always given when
    progress extends the deadline: the request then carries a progress token, or the
    upstream would report none.  ``heard`` is told of each progress (the replica is
    working: ``policies/stalls.py``), whether or not progress extends the deadline, and
    so is the request's ``PACE``."""
    pace, spent = PACE.get(), SPENT.get()
    if pace is not None:
        heard = _pacing(pace, heard)
    if max_total is None or not extends(call, max_total):
        if heard is None or on_progress is None:
            return await send(on_progress, call - spent)
        return await send(_telling(heard, on_progress), call - spent)
    start = anyio.current_time() - spent  # (a request sent again: its time so far)
    seen, end = 0, start + max_total
    with anyio.CancelScope(deadline=start + call) as scope:
        if pace is not None:   # a question pending holds the deadline; its answer moves it
            def asked() -> None:
                scope.deadline = end if pace.asking else min(anyio.current_time() + call, end)

            pace.moved.append(asked)

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            nonlocal seen
            seen += 1
            scope.deadline = min(anyio.current_time() + call, end)
            if heard is not None:
                heard()
            if on_progress is not None:
                await on_progress(progress, total, message)

        try:
            return await send(relay, max_total - spent)
        except MCPError as exc:
            if exc.error.code == types.REQUEST_TIMEOUT and not isinstance(exc, DeadlineReached) \
                    and anyio.current_time() - start >= max_total:  # not the upstream's own
                raise DeadlineReached("max_total", max_total, seen) from None
            raise
    if scope.deadline >= end:
        raise DeadlineReached("max_total", max_total, seen)
    raise DeadlineReached("call", call if seen else call - spent, seen)


def _telling(heard: Callable[[], None], on_progress: ProgressFnT) -> ProgressFnT:
    """``on_progress``, telling ``heard`` of each report first."""
    async def told(progress: float, total: float | None, message: str | None) -> None:
        heard()
        await on_progress(progress, total, message)

    return told


def _pacing(pace: Pace, heard: Callable[[], None] | None) -> Callable[[], None]:
    """``heard``, marking ``pace`` progressed first."""
    def told() -> None:
        pace.progressed = True
        if heard is not None:
            heard()

    return told
