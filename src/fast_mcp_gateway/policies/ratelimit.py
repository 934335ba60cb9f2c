"""Token buckets (``per_second`` refill, ``burst`` capacity) and warnings said at most
once a while per key; time passed in."""

from __future__ import annotations

from collections.abc import Hashable
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


class SaidEvery:
    """A warning repeated about one key (a host's credential), said at most once per
    ``every`` seconds per key.  ``say(key, now)``: None while it stays quiet, else how
    many went unsaid since it last spoke (0 the first time), for the line to count.
    Holds ``keys`` keys at most, the one said longest ago dropped first."""

    def __init__(self, every: float, keys: int = 1024) -> None:
        self.every = every
        self._keys = keys
        self._said: dict[Hashable, tuple[float, int]] = {}  # when said, unsaid since

    def say(self, key: Hashable, now: float) -> int | None:
        said = self._said.get(key)
        if said is not None and now - said[0] < self.every:
            self._said[key] = (said[0], said[1] + 1)  # stays where it was in the order
            return None
        self._said.pop(key, None)
        self._said[key] = (now, 0)
        if len(self._said) > self._keys:
            del self._said[next(iter(self._said))]
        return 0 if said is None else said[1]
