"""Why no replica could take a call: the words of a ``NoHealthyReplica`` (``Service``).

Each replica that could not says why: it is draining, it is not ready (its state's own
reason), or its circuit breaker refused the call -- open ("circuit open for 12s, next
probe in 18s"), or half-open with every trial call it lets through in flight ("circuit
half-open: its trial call is in flight; other calls are refused until it answers").
The half-open case read "circuit open for 32s, next probe in 0.0s" before: a probe due
now, and yet the call refused.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from fast_mcp_gateway.errors import NoHealthyReplica
from fast_mcp_gateway.policies import BreakerState
from fast_mcp_gateway.routing.attempts import CallPath
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState


def breaker_refusal(upstream: Upstream) -> str:
    """Why ``upstream``'s breaker refuses a call now (it does: ``would_admit`` is False)."""
    stats = upstream.statistics()
    opened = f"{stats.breaker_open_seconds or 0.0:.0f}s"
    if stats.breaker is BreakerState.HALF_OPEN:
        # Half-open refuses only when every trial slot is taken: all are in flight.
        n = upstream.config.circuit_breaker.half_open_probes
        trials, answers = (("its trial call is", "it answers") if n == 1
                           else (f"its {n} trial calls are", "one answers"))
        return (f"{upstream.label} circuit half-open (opened {opened} ago): {trials} in "
                f"flight; other calls are refused until {answers} (a success closes the "
                "breaker, a failure opens it again)")
    return (f"{upstream.label} circuit open for {opened}, next probe in "
            f"{stats.breaker_retry_in_seconds or 0.0:.1f}s")


def no_replica(server: str, replicas: Sequence[Upstream], draining: Collection[int],
               now: float, tried: CallPath) -> NoHealthyReplica:
    """The refusal of a call no replica of ``server`` could take at ``now``; ``tried``:
    the attempts made so far (their outcomes are named)."""
    reasons = []
    for r in replicas:
        if r.replica in draining:
            reasons.append(f"{r.label} is draining")
        elif r.state is not UpstreamState.READY:
            reasons.append(f"{r.label} {r.unavailable_reason()}")
        elif not r.would_admit(now):
            reasons.append(breaker_refusal(r))
    done = ", ".join(f"{label}: {outcome}" for label, outcome in tried.attempts)
    detail = "; ".join(reasons) or "no replica could take the call"
    return NoHealthyReplica(server, detail + (f" (tried {done})" if done else ""))
