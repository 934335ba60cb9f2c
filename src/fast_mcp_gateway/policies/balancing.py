"""Choosing a replica: six strategies with one signature, ``pick(candidates, key)``.

``candidates`` are the replicas currently eligible (healthy enough, breaker allowing,
not draining), in replica-index order; ``key`` is the hash key of the call (only
``hash`` uses it).  Every strategy is deterministic given its ``random.Random``.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Strategy = Literal["round_robin", "weighted", "random", "least_inflight", "latency", "hash"]


@dataclass(frozen=True)
class ReplicaView:
    """What a balancer may know about one replica at decision time."""

    index: int
    weight: int = 1
    inflight: int = 0
    ewma_ms: float | None = None


class Balancer(Protocol):
    def pick(self, candidates: Sequence[ReplicaView], key: str | None = None) -> ReplicaView | None:
        """The replica to use, or ``None`` when there is no candidate."""
        ...


class RoundRobin:
    """Each candidate in turn (by replica index, so a skipped replica keeps its place)."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[ReplicaView], key: str | None = None) -> ReplicaView | None:
        if not candidates:
            return None
        ordered = sorted(candidates, key=lambda c: c.index)
        choice = next((c for c in ordered if c.index >= self._next), ordered[0])
        self._next = choice.index + 1
        return choice


class Weighted:
    """Smooth weighted round robin (as nginx): weight 3:1 gives a a b a, not a a a b."""

    def __init__(self) -> None:
        self._current: dict[int, int] = {}

    def pick(self, candidates: Sequence[ReplicaView], key: str | None = None) -> ReplicaView | None:
        if not candidates:
            return None
        total = sum(max(c.weight, 0) for c in candidates) or len(candidates)
        best: ReplicaView | None = None
        for c in sorted(candidates, key=lambda c: c.index):
            self._current[c.index] = self._current.get(c.index, 0) + max(c.weight, 0)
            if best is None or self._current[c.index] > self._current[best.index]:
                best = c
        assert best is not None
        self._current[best.index] -= total
        return best


class Random:
    """Weighted random choice."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, candidates: Sequence[ReplicaView], key: str | None = None) -> ReplicaView | None:
        if not candidates:
            return None
        weights = [max(c.weight, 0) for c in candidates]
        if not any(weights):
            weights = [1] * len(candidates)
        return self._rng.choices(list(candidates), weights=weights, k=1)[0]


class LeastInflight:
    """The candidate with the fewest calls in flight; ties go round-robin."""

    def __init__(self) -> None:
        self._tie = RoundRobin()

    def pick(self, candidates: Sequence[ReplicaView], key: str | None = None) -> ReplicaView | None:
        if not candidates:
            return None
        least = min(c.inflight for c in candidates)
        return self._tie.pick([c for c in candidates if c.inflight == least])


class Latency:
    """The candidate with the lowest EWMA latency; unmeasured replicas are tried first."""

    def __init__(self) -> None:
        self._tie = RoundRobin()

    def pick(self, candidates: Sequence[ReplicaView], key: str | None = None) -> ReplicaView | None:
        if not candidates:
            return None
        unmeasured = [c for c in candidates if c.ewma_ms is None]
        if unmeasured:
            return self._tie.pick(unmeasured)
        best = min(c.ewma_ms or 0.0 for c in candidates)
        return self._tie.pick([c for c in candidates if (c.ewma_ms or 0.0) == best])


class ConsistentHash:
    """A hash ring with virtual nodes: adding a replica moves about 1/N of the keys;
    when a key's replica is not a candidate, the next one clockwise takes it."""

    def __init__(self, replicas: int, vnodes: int = 160) -> None:
        self._ring: list[tuple[int, int]] = sorted(
            (_hash(f"replica-{index}#{v}"), index)
            for index in range(replicas)
            for v in range(vnodes)
        )
        self._points = [point for point, _ in self._ring]
        self._fallback = RoundRobin()

    def pick(self, candidates: Sequence[ReplicaView], key: str | None = None) -> ReplicaView | None:
        if not candidates:
            return None
        if key is None:
            return self._fallback.pick(candidates)
        by_index = {c.index: c for c in candidates}
        start = bisect.bisect(self._points, _hash(key))
        for offset in range(len(self._ring)):
            _, index = self._ring[(start + offset) % len(self._ring)]
            if index in by_index:
                return by_index[index]
        return self._fallback.pick(candidates)


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def make_balancer(strategy: Strategy, replicas: int, rng: random.Random | None = None) -> Balancer:
    """Build the balancer named in ``servers.yaml``."""
    if strategy == "round_robin":
        return RoundRobin()
    if strategy == "weighted":
        return Weighted()
    if strategy == "random":
        return Random(rng or random.Random())
    if strategy == "least_inflight":
        return LeastInflight()
    if strategy == "latency":
        return Latency()
    return ConsistentHash(replicas)
