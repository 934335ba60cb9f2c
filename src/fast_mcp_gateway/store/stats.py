"""The latency arithmetic every store backend shares (pure: no I/O, no clock).

A call's latency lands in one of ``len(BUCKETS_MS) + 1`` histogram buckets; aggregates
per (period, server, exposed) add counts, errors, totals, min/max and the bucket counts,
so any set of aggregates merges into one ``LatencyStats`` and its percentiles come from
the merged histogram (the upper bound of the bucket holding the quantile, so at most
one bucket -- 25 % -- high).  Periods are unix minutes and unix hours; ``window_parts``
says which of them cover a time window.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

# Latency histogram bucket upper bounds in ms (one more bucket takes everything above).
BUCKETS_MS: tuple[float, ...] = tuple(
    round(0.5 * 1.25**i, 3) for i in range(48)
)  # 0.5 ms .. ~18 s, 25 % apart: a percentile is within one bucket (<= 25 % high)
# The histogram buckets as columns of the aggregate tables (both SQL backends).
HIST_COLUMNS = [f"h{i}" for i in range(len(BUCKETS_MS) + 1)]

CANCELLED = "cancelled"  # a call's status when its host cancelled it: not an error
TASK_END = "task"  # the kind of a task's end record: not a request, not in the statistics
Resolution = Literal["minute", "hour"]
AggregateKey = tuple[int, str, str]  # (period, server, exposed)


@dataclass
class LatencyStats:
    """Counts, rates and latency percentiles over a set of calls."""

    count: int = 0
    errors: int = 0  # failed calls (error, timeout, rejected); never cancelled ones
    cancelled: int = 0  # calls the host cancelled or walked away from
    min_ms: float | None = None
    avg_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    total_ms: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))

    @property
    def success_rate(self) -> float | None:
        """Over the calls that finished: a cancelled call neither failed nor succeeded."""
        finished = self.count - self.cancelled
        return None if finished <= 0 else (finished - self.errors) / finished

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["histogram"], data["total_ms"]
        data["success_rate"] = self.success_rate
        return data


class _Call(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def status(self) -> str: ...
    @property
    def server(self) -> str: ...
    @property
    def exposed(self) -> str: ...


def bucket_of(ms: float) -> int:
    """The histogram bucket of a latency: the first whose upper bound is >= ``ms``."""
    return bisect.bisect_left(BUCKETS_MS, ms)


def percentile_from(histogram: Sequence[int], q: float, max_ms: float | None) -> float | None:
    """The upper bound of the bucket holding the q-quantile (capped at the maximum)."""
    total = sum(histogram)
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            bound = BUCKETS_MS[i] if i < len(BUCKETS_MS) else max_ms
            return min(bound, max_ms) if bound is not None and max_ms is not None else bound
    return max_ms


def add_sample(agg: LatencyStats, ms: float, error: bool, cancelled: bool = False) -> None:
    """Count one call into ``agg``."""
    agg.count += 1
    agg.errors += int(error)
    agg.cancelled += int(cancelled)
    agg.total_ms += ms
    agg.avg_ms = agg.total_ms / agg.count
    agg.min_ms = ms if agg.min_ms is None else min(agg.min_ms, ms)
    agg.max_ms = ms if agg.max_ms is None else max(agg.max_ms, ms)
    agg.histogram[bucket_of(ms)] += 1


def merge_into(agg: LatencyStats, count: int, errors: int, total_ms: float, min_ms: float,
               max_ms: float, histogram: Iterable[int], cancelled: int = 0) -> None:
    """Add one stored aggregate (or a sum of them) to ``agg``; percentiles come later."""
    agg.count += count
    agg.errors += errors
    agg.cancelled += cancelled
    agg.total_ms += total_ms
    agg.min_ms = min_ms if agg.min_ms is None else min(agg.min_ms, min_ms)
    agg.max_ms = max_ms if agg.max_ms is None else max(agg.max_ms, max_ms)
    agg.histogram = [a + b for a, b in zip(agg.histogram, histogram, strict=True)]


def finish(groups: dict[str, LatencyStats]) -> dict[str, LatencyStats]:
    """Fill in the average and the percentiles of merged aggregates."""
    for agg in groups.values():
        agg.avg_ms = agg.total_ms / agg.count
        agg.p50_ms = percentile_from(agg.histogram, 0.50, agg.max_ms)
        agg.p95_ms = percentile_from(agg.histogram, 0.95, agg.max_ms)
        agg.p99_ms = percentile_from(agg.histogram, 0.99, agg.max_ms)
    return groups


def merged(rows: Iterable[LatencyStats]) -> LatencyStats | None:
    """One aggregate of several groups' (their histograms added: percentiles stay true);
    None without any."""
    total = LatencyStats()
    for r in rows:
        merge_into(total, r.count, r.errors, r.total_ms, r.min_ms or 0.0, r.max_ms or 0.0,
                   r.histogram, r.cancelled)
    return finish({"": total})[""] if total.count else None


def aggregate_batch(rows: Iterable[_Call]
                    ) -> tuple[dict[AggregateKey, LatencyStats], dict[AggregateKey, LatencyStats]]:
    """A batch of calls as per-minute and per-hour aggregates, to add to the stored ones.
    A task's end (kind ``task``, ``front/tasks.py``) is left out: statistics count
    requests, and the call that created the task was one; so is a call of a name no
    server offers (no ``server``: ``RecordCalls.unknown``), which no server's statistics
    own (the metrics' ``mcp_gateway_unknown_calls`` count them)."""
    minutes: dict[AggregateKey, LatencyStats] = {}
    hours: dict[AggregateKey, LatencyStats] = {}
    for r in rows:
        if r.kind == TASK_END or not r.server:
            continue
        cancelled = r.status == CANCELLED
        error = not cancelled and r.status != "success"
        minute = int(r.started_at // 60)
        add_sample(minutes.setdefault((minute, r.server, r.exposed), LatencyStats()),
                   r.duration_ms, error, cancelled)
        add_sample(hours.setdefault((minute // 60, r.server, r.exposed), LatencyStats()),
                   r.duration_ms, error, cancelled)
    return minutes, hours


def window_parts(since: float | None, until: float | None, now: float
                 ) -> list[tuple[Resolution, int | None, int | None]]:
    """The aggregate periods covering [since, until] at minute resolution, as
    (resolution, first period, last period) with None for open ends: whole hours from
    the hourly aggregates, the partial hours at the edges from the minute ones, so a
    query reads a few thousand aggregates whatever the number of calls.  A part whose
    first period is after its last is empty."""
    first = None if since is None else int(since // 60)
    last = None if until is None else int(until // 60)
    if first is None and last is None:
        return [("hour", None, None)]
    lo = first if first is not None else 0
    hi = last if last is not None else int(now // 60) + 1
    h_lo, h_hi = -(-lo // 60), (hi + 1) // 60  # whole hours inside [lo, hi]
    if h_lo < h_hi:
        return [("minute", lo, h_lo * 60 - 1), ("hour", h_lo, h_hi - 1),
                ("minute", h_hi * 60, hi)]
    return [("minute", lo, hi)]


def group_key(group_by: str | None, server: str, exposed: str) -> str:
    """The stats group of an aggregate: its server, its tool, or '' (everything)."""
    if group_by == "server":
        return server
    if group_by == "tool":
        return exposed
    return ""
