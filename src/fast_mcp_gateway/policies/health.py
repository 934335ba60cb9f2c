"""Health of a replica from a rolling window of call outcomes plus the active probe.

``classify`` is pure: success rate and median latency over ``window`` seconds, the last
probe result, and the time since the last heartbeat (any successful call or probe).
"""

from __future__ import annotations

import statistics
from collections import deque
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


@dataclass
class HealthWindow:
    """Outcomes of real calls and probes, newest last."""

    thresholds: HealthThresholds = HealthThresholds()
    _samples: deque[tuple[float, bool, float]] = field(default_factory=deque)
    last_heartbeat: float | None = None
    probe_ok: bool | None = None

    def record(self, now: float, ok: bool, latency_ms: float) -> None:
        self._samples.append((now, ok, latency_ms))
        if ok:
            self.last_heartbeat = now
        self._trim(now)

    def record_probe(self, now: float, ok: bool, latency_ms: float | None = None) -> None:
        self.probe_ok = ok
        if ok:
            self.last_heartbeat = now

    def _trim(self, now: float) -> None:
        while self._samples and now - self._samples[0][0] > self.thresholds.window:
            self._samples.popleft()

    def stats(self, now: float) -> tuple[int, float | None, float | None]:
        """(samples, success rate, median latency ms) over the window."""
        self._trim(now)
        if not self._samples:
            return 0, None, None
        ok = [s for s in self._samples if s[1]]
        latency = statistics.median(s[2] for s in ok) if ok else None
        return len(self._samples), len(ok) / len(self._samples), latency

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
