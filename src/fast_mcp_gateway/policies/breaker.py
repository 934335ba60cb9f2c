"""A per-replica circuit breaker: closed -> open -> half-open -> closed.

Closed: calls flow; ``failure_threshold`` failures within ``window`` seconds open it.
Open: calls fail fast until ``open_for`` seconds have passed.  Half-open: up to
``half_open_probes`` calls are let through; a success closes the breaker, a failure
opens it again.  Time is passed in (``now``), never read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    window: float = 30.0
    open_for: float = 30.0
    half_open_probes: int = 1
    state: BreakerState = BreakerState.CLOSED
    opened_at: float | None = None
    _failures: deque[float] = field(default_factory=deque)
    _probes: int = 0
    trips: int = 0  # times it opened; kept across reset() (a metric counts them)

    def allow(self, now: float) -> bool:
        """Whether a call may go through now (counts a half-open probe when it may)."""
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            if now - self.opened_at < self.open_for:
                return False
            self.state, self._probes = BreakerState.HALF_OPEN, 0
        if self.state is BreakerState.HALF_OPEN:
            if self._probes >= self.half_open_probes:
                return False
            self._probes += 1
        return True

    def would_allow(self, now: float) -> bool:
        """Like ``allow`` but without taking a probe slot (for eligibility checks)."""
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            return now - self.opened_at >= self.open_for
        if self.state is BreakerState.HALF_OPEN:
            return self._probes < self.half_open_probes
        return True

    def record_success(self, now: float) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self.reset()

    def record_failure(self, now: float) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._open(now)
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.window:
            self._failures.popleft()
        if self.state is BreakerState.CLOSED and len(self._failures) >= self.failure_threshold:
            self._open(now)

    def release_probe(self) -> None:
        """A half-open probe that never reached the replica gives its slot back."""
        if self.state is BreakerState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def retry_at(self) -> float | None:
        """When an open breaker will let a probe through."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return self.opened_at + self.open_for
        return None

    def reset(self) -> None:
        self.state, self.opened_at, self._probes = BreakerState.CLOSED, None, 0
        self._failures.clear()

    def _open(self, now: float) -> None:
        self.trips += 1
        self.state, self.opened_at, self._probes = BreakerState.OPEN, now, 0
        self._failures.clear()
