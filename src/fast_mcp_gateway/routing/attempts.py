"""What happened to one call: the replica each attempt went to and how it ended.

``CallPath`` is kept on the call (its record's ``replica`` and ``route``, a retried
result's ``_meta``); ``run_attempt`` runs one try on one replica and adds its outcome:
``ok`` (the replica answered: a result, an ``isError`` one too, or a JSON-RPC error,
which the record's ``status`` and ``error`` tell), a ``FailureKind`` (``connect``,
``timeout``, ``error``), or ``cancelled`` when the host cancelled the call or went away
while it ran there -- so a cancelled call's record still names the replica it was on,
most often the one that hung, and a refused one the replica that refused it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import anyio
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.errors import (
    UpstreamError,
    UpstreamRequestFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from fast_mcp_gateway.policies import FailureKind
from fast_mcp_gateway.upstream.relay import FrontCall
from fast_mcp_gateway.upstream.replica import Upstream

T = TypeVar("T")
CANCELLED = "cancelled"


@dataclass
class CallPath:
    """What happened to one call: each attempt's replica and outcome."""

    attempts: list[tuple[str, str]] = field(default_factory=list)
    stale: bool = False
    # What the result's ``_meta`` should tell the host besides (``SESSION_META``: its
    # per_client session was given back or reaped idle, ``routing/isolation.py``); None:
    # nothing.
    notes: dict[str, Any] | None = None

    @property
    def retries(self) -> int:
        return max(0, len(self.attempts) - 1)

    def route_meta(self) -> dict[str, Any]:
        """The attempts, as a retried result's ``_meta`` reports them."""
        return {"attempts": [{"replica": r, "outcome": o} for r, o in self.attempts]}


def failure_kind(exc: BaseException) -> FailureKind:
    """How an upstream failure counts for the retry policy."""
    if isinstance(exc, UpstreamUnavailable):
        return FailureKind.NOT_SENT
    if isinstance(exc, UpstreamTimeout):
        return FailureKind.TIMEOUT
    return FailureKind.TRANSPORT


async def run_attempt(path: CallPath, upstream: Upstream,
                  op: Callable[[Upstream], Awaitable[T]]) -> T:
    """``op`` on ``upstream``, its outcome added to ``path``; exceptions propagate."""
    try:
        result = await op(upstream)
    except (UpstreamUnavailable, UpstreamTimeout, UpstreamRequestFailed) as error:
        path.attempts.append((upstream.label, failure_kind(error).value))
        raise
    except anyio.get_cancelled_exc_class():
        path.attempts.append((upstream.label, CANCELLED))
        raise
    except MCPError:  # the upstream's error answer: an answer, as an isError result is
        path.attempts.append((upstream.label, "ok"))
        raise
    path.attempts.append((upstream.label, "ok"))
    return result


def rising(report: ProgressFnT | None) -> ProgressFnT | None:
    """``report`` for every attempt of one call, passing on only progress above the last
    passed on: a retry's attempt reports from the start again, and the host's token must
    see its progress increase with each notification (the specification's MUST)."""
    if report is None:
        return None
    last: list[float] = []

    async def relay(progress: float, total: float | None, message: str | None) -> None:
        if last and progress <= last[0]:
            return
        last[:] = [progress]
        await report(progress, total, message)

    return relay


def host_progress(front: FrontCall | None) -> ProgressFnT | None:
    """Where the progress of every attempt of ``front``'s request goes (``rising``)."""
    return rising(front.progress if front is not None and front.session is not None else None)


def last_of(exc: UpstreamError, path: CallPath) -> UpstreamError:
    """``exc``, ending a call sent more than once, saying so: a timed-out read-only call
    retried twice told its host "did not answer within 2s" after some 6 s and three runs."""
    if len(path.attempts) < 2 or not isinstance(exc, (UpstreamTimeout, UpstreamRequestFailed)):
        return exc
    outcomes = ", ".join(outcome for _, outcome in path.attempts)
    detail = f"{exc.detail} (the last of {len(path.attempts)} attempts: {outcomes})"
    if isinstance(exc, UpstreamTimeout):
        return UpstreamTimeout(exc.server, detail, still_running=exc.still_running)
    return type(exc)(exc.server, detail)


def noted(result: T, path: CallPath) -> T:
    """``result`` with ``path.notes`` added to its ``_meta`` (a JSON result or a typed
    one); unchanged when there are none."""
    notes = path.notes
    if not notes:
        return result
    if isinstance(result, dict):
        result["_meta"] = {**(result.get("_meta") or {}), **notes}
        return result
    if hasattr(result, "meta") and hasattr(result, "model_copy"):
        return cast(T, result.model_copy(update={"meta": {**(result.meta or {}),
                                                                 **notes}}))
    return result
