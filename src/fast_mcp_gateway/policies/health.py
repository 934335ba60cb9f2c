"""Health of a replica from a rolling window of call outcomes plus the active probe.

``classify`` is pure: success rate and median latency over ``window`` seconds, the last
probe result, and the time since the last heartbeat (any successful call or probe).

Every balanced call asks each candidate replica for its health, so the window is kept
incrementally: a sample costs O(1) to add and to expire, and the median comes from a
log-scale latency histogram (buckets 1/8 of an octave wide, each remembering its sum),
so asking costs O(buckets) however many calls the window holds.  The median is the
mean of the samples in the median's bucket: exact when they agree, otherwise within
about 4 %.  (Sorting the window per call cost O(n log n) and, at a few hundred calls
per second, more CPU than the rest of the gateway's call path.)

The window holds every call of the last ``window`` seconds (60 by default): at a
thousand calls per second, 60,000 samples.  They are kept as machine numbers in three
parallel arrays (17 bytes a sample), not as a deque of tuples of Python floats (~96
bytes: 5.8 MB at that rate, for the life of the load; issue 15).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from enum import StrEnum


class HealthStatus(StrEnum):
    HEALTHY = "HEALTHY"
    DEGRADED = "DEGRADED"
    UNHEALTHY = "UNHEALTHY"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class HealthThresholds:
    healthy_success: float = 0.95
    degraded_success: float = 0.80
    healthy_latency_ms: float = 200.0
    degraded_latency_ms: float = 500.0
    window: float = 60.0
    heartbeat_timeout: float = 60.0
    min_samples: int = 3


_BUCKETS_PER_OCTAVE = 8
_MIN_MS = 0.01  # bucket 0 holds everything up to 10 us


def _bucket(latency_ms: float) -> int:
    if latency_ms <= _MIN_MS:
        return 0
    return 1 + int(math.log2(latency_ms / _MIN_MS) * _BUCKETS_PER_OCTAVE)


@dataclass
class HealthWindow:
    """Outcomes of real calls and probes, newest last."""

    thresholds: HealthThresholds = HealthThresholds()
    # The samples, oldest first from index _head: when, whether ok, latency (ms).
    _at: array[float] = field(default_factory=lambda: array("d"))
    _oks: bytearray = field(default_factory=bytearray)
    _ms: array[float] = field(default_factory=lambda: array("d"))
    _head: int = 0
    last_heartbeat: float | None = None
    probe_ok: bool | None = None
    _ok: int = 0
    _timed: int = 0  # successes with a latency (``record``'s ``latency_ms`` not None)
    # Successful calls' latencies: bucket -> [count, sum of ms].
    _latency: dict[int, list[float]] = field(default_factory=dict)

    def record(self, now: float, ok: bool, latency_ms: float | None) -> None:
        """One call's outcome; ``latency_ms`` None: a success that says nothing of the
        replica's speed (a call that reported progress: long by design), counted in the
        success rate and not in the median latency."""
        self._at.append(now)
        self._oks.append(ok)
        self._ms.append(math.nan if latency_ms is None else latency_ms)
        if ok:
            self.last_heartbeat = now
            self._ok += 1
        if ok and latency_ms is not None:
            self._timed += 1
            cell = self._latency.setdefault(_bucket(latency_ms), [0, 0.0])
            cell[0] += 1
            cell[1] += latency_ms
        self._trim(now)

    def record_probe(self, now: float, ok: bool, latency_ms: float | None = None) -> None:
        self.probe_ok = ok
        if ok:
            self.last_heartbeat = now

    def _trim(self, now: float) -> None:
        at, window, head, end = self._at, self.thresholds.window, self._head, len(self._at)
        while head < end and now - at[head] > window:
            ok, latency_ms = self._oks[head], self._ms[head]
            head += 1
            if ok:
                self._ok -= 1
            if ok and not math.isnan(latency_ms):
                self._timed -= 1
                key = _bucket(latency_ms)
                cell = self._latency[key]
                cell[0] -= 1
                cell[1] -= latency_ms
                if cell[0] == 0:
                    del self._latency[key]
        if head == end:  # all expired: start over (keeps the arrays' allocation)
            del at[:], self._oks[:], self._ms[:]
            head = 0
        elif head > 1024 and head * 2 > end:  # drop the expired half: amortized O(1)
            del at[:head], self._oks[:head], self._ms[:head]
            head = 0
        self._head = head

    def _count(self) -> int:
        """Samples in the window (as of the last trim)."""
        return len(self._at) - self._head

    def _median(self) -> float | None:
        if not self._timed:
            return None
        # The lower median's rank, as statistics.median_low would pick it.
        rank, seen = (self._timed + 1) // 2, 0
        for key in sorted(self._latency):
            count, total = self._latency[key]
            seen += int(count)
            if seen >= rank:
                return total / count
        return None  # pragma: no cover - counts always add up to _timed

    def stats(self, now: float) -> tuple[int, float | None, float | None]:
        """(samples, success rate, median latency ms) over the window."""
        self._trim(now)
        count = self._count()
        if not count:
            return 0, None, None
        return count, self._ok / count, self._median()

    def classify(self, now: float) -> HealthStatus:
        t = self.thresholds
        if self.probe_ok is False:
            return HealthStatus.UNHEALTHY
        count, success, latency = self.stats(now)
        stale = self.last_heartbeat is None or now - self.last_heartbeat > t.heartbeat_timeout
        if count < t.min_samples or success is None:
            if self.probe_ok and not stale:
                return HealthStatus.HEALTHY
            return HealthStatus.UNKNOWN
        if success < t.degraded_success or (latency is not None
                                            and latency > t.degraded_latency_ms):
            return HealthStatus.UNHEALTHY
        if stale:
            return HealthStatus.UNKNOWN
        if success < t.healthy_success or (latency is not None
                                           and latency >= t.healthy_latency_ms):
            return HealthStatus.DEGRADED
        return HealthStatus.HEALTHY
