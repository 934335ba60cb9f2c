"""Token buckets: ``per_second`` refill, ``burst`` capacity, time passed in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    per_second: float
    burst: int
    _tokens: float = field(default=-1.0)
    _updated: float | None = None

    def try_take(self, now: float) -> float:
        """Take one token; 0.0 when granted, else the seconds until one is available."""
        if self._updated is None:
            self._tokens, self._updated = float(self.burst), now
        self._tokens = min(float(self.burst),
                           self._tokens + (now - self._updated) * self.per_second)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.per_second
