"""Pure policies as tables: balancing sequences, breaker transitions, health, retries."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fast_mcp_gateway.policies import (
    BreakerState,
    CircuitBreaker,
    FailureKind,
    HealthStatus,
    HealthThresholds,
    HealthWindow,
    ReplicaView,
    RetryPolicy,
    make_balancer,
)
from fast_mcp_gateway.policies.balancing import ConsistentHash


def views(*weights: int, inflight: tuple[int, ...] = (), ewma: tuple[float | None, ...] = ()):
    return [
        ReplicaView(index=i, weight=w, inflight=inflight[i] if inflight else 0,
                    ewma_ms=ewma[i] if ewma else None)
        for i, w in enumerate(weights)
    ]


def sequence(strategy: str, candidates, n: int, key=None, seed: int = 7) -> list[int]:
    balancer = make_balancer(strategy, len(candidates), random.Random(seed))  # type: ignore[arg-type]
    picks = [balancer.pick(candidates, key) for _ in range(n)]
    return [p.index for p in picks if p is not None]


@pytest.mark.parametrize(("strategy", "candidates", "expected"), [
    ("round_robin", views(1, 1, 1), [0, 1, 2, 0, 1, 2]),
    ("weighted", views(3, 1), [0, 0, 1, 0, 0, 0]),
    ("weighted", views(2, 1, 1), [0, 1, 2, 0, 0, 1]),
    ("least_inflight", views(1, 1, 1, inflight=(2, 0, 0)), [1, 2, 1, 2, 1, 2]),
    ("latency", views(1, 1, 1, ewma=(30.0, 10.0, 20.0)), [1, 1, 1, 1, 1, 1]),
    ("latency", views(1, 1, ewma=(30.0, None)), [1, 1, 1, 1, 1, 1]),
])
def test_choice_sequences(strategy: str, candidates, expected: list[int]) -> None:
    assert sequence(strategy, candidates, len(expected)) == expected


def test_round_robin_skips_an_ineligible_replica_but_keeps_order() -> None:
    balancer = make_balancer("round_robin", 3)
    all3, without1 = views(1, 1, 1), [v for v in views(1, 1, 1) if v.index != 1]
    picks = [balancer.pick(all3), balancer.pick(without1), balancer.pick(all3)]
    assert [p.index for p in picks if p] == [0, 2, 0]


def test_weighted_distribution_matches_weights() -> None:
    counts = Counter(sequence("weighted", views(3, 1), 400))
    assert counts == {0: 300, 1: 100}


def test_random_is_deterministic_under_a_seed_and_respects_weights() -> None:
    a = sequence("random", views(1, 1, 1), 50, seed=3)
    assert a == sequence("random", views(1, 1, 1), 50, seed=3)
    counts = Counter(sequence("random", views(9, 1), 2000, seed=1))
    assert 1650 < counts[0] < 1950


def test_no_candidates_means_no_choice() -> None:
    for strategy in ("round_robin", "weighted", "random", "least_inflight", "latency", "hash"):
        assert make_balancer(strategy, 2).pick([], "k") is None  # type: ignore[arg-type]


def test_hash_is_sticky_and_consistent() -> None:
    keys = [f"user-{i}" for i in range(2000)]
    three, four = ConsistentHash(3), ConsistentHash(4)
    before = {k: three.pick(views(1, 1, 1), k).index for k in keys}  # type: ignore[union-attr]
    assert before == {k: three.pick(views(1, 1, 1), k).index for k in keys}  # type: ignore[union-attr]
    after = {k: four.pick(views(1, 1, 1, 1), k).index for k in keys}  # type: ignore[union-attr]
    moved = sum(before[k] != after[k] for k in keys)
    assert 0.15 < moved / len(keys) < 0.35  # about 1/4 of the keys move to the new replica
    assert all(after[k] == 3 for k in keys if before[k] != after[k])


def test_hash_falls_back_to_the_next_replica_on_the_ring() -> None:
    ring = ConsistentHash(3)
    keys = [f"k{i}" for i in range(300)]
    home = {k: ring.pick(views(1, 1, 1), k).index for k in keys}  # type: ignore[union-attr]
    survivors = [v for v in views(1, 1, 1) if v.index != 0]
    moved = {k: ring.pick(survivors, k).index for k in keys}  # type: ignore[union-attr]
    assert all(moved[k] == home[k] for k in keys if home[k] != 0)
    assert all(moved[k] in (1, 2) for k in keys)


def test_breaker_transitions_with_a_fake_clock() -> None:
    b = CircuitBreaker(failure_threshold=3, window=10, open_for=30, half_open_probes=1)
    table = [
        # (time, event, expected state after, allow?)
        (0, "fail", BreakerState.CLOSED, True),
        (1, "fail", BreakerState.CLOSED, True),
        (20, "fail", BreakerState.CLOSED, True),   # first two fell out of the 10 s window
        (21, "fail", BreakerState.CLOSED, True),
        (22, "fail", BreakerState.OPEN, False),    # 3 within 10 s
        (40, "check", BreakerState.OPEN, False),   # still open (opened at 22, open_for 30)
        (52, "check", BreakerState.HALF_OPEN, True),  # a probe goes through
        (52.1, "check", BreakerState.HALF_OPEN, False),  # only one probe at a time
        (53, "fail", BreakerState.OPEN, False),     # probe failed: open again
        (83, "check", BreakerState.HALF_OPEN, True),
        (84, "ok", BreakerState.CLOSED, True),      # probe succeeded: closed
    ]
    for now, event, state, allowed in table:
        if event == "fail":
            b.record_failure(now)
        elif event == "ok":
            b.record_success(now)
        got = b.allow(now) if event == "check" else b.would_allow(now)
        assert (b.state, got) == (state, allowed), (now, event)
    b.record_failure(90)
    assert b.state is BreakerState.CLOSED


def test_breaker_retry_time_and_reset() -> None:
    b = CircuitBreaker(failure_threshold=1, open_for=5)
    b.record_failure(100)
    assert b.retry_at() == 105
    b.reset()
    assert b.state is BreakerState.CLOSED and b.allow(100)


def window(samples, probe=None, now=100.0, **thresholds) -> HealthStatus:
    w = HealthWindow(HealthThresholds(**thresholds))
    for t, ok, ms in samples:
        w.record(t, ok, ms)
    if probe is not None:
        w.record_probe(now, probe)
    return w.classify(now)


@pytest.mark.parametrize(("samples", "probe", "expected"), [
    ([], None, HealthStatus.UNKNOWN),
    ([], True, HealthStatus.HEALTHY),
    ([(99, True, 50)] * 20, None, HealthStatus.HEALTHY),
    ([(99, True, 50)] * 18 + [(99, False, 0)] * 2, None, HealthStatus.DEGRADED),  # 90 %
    ([(99, True, 50)] * 7 + [(99, False, 0)] * 3, None, HealthStatus.UNHEALTHY),  # 70 %
    ([(99, True, 300)] * 10, None, HealthStatus.DEGRADED),
    ([(99, True, 800)] * 10, None, HealthStatus.UNHEALTHY),
    ([(99, True, 50)] * 10, False, HealthStatus.UNHEALTHY),  # probe failing wins
    ([(10, True, 50)] * 10, None, HealthStatus.UNKNOWN),  # all outside the 60 s window
])
def test_health_classification(samples, probe, expected) -> None:
    assert window(samples, probe) == expected


def test_health_goes_unknown_without_a_heartbeat() -> None:
    w = HealthWindow(HealthThresholds(window=300, heartbeat_timeout=60))
    for t in range(10):
        w.record(t, True, 20)
    assert w.classify(10) is HealthStatus.HEALTHY
    assert w.classify(100) is HealthStatus.UNKNOWN


@pytest.mark.parametrize(("attempt", "kind", "idempotent", "retry"), [
    (1, FailureKind.NOT_SENT, False, True),       # never reached: always safe
    (1, FailureKind.TIMEOUT, False, False),       # may have run: not twice
    (1, FailureKind.TRANSPORT, False, False),
    (1, FailureKind.TIMEOUT, True, True),
    (1, FailureKind.TRANSPORT, True, True),
    (1, FailureKind.ERROR_RESULT, True, False),   # an answer, not a fault
    (3, FailureKind.NOT_SENT, True, False),       # out of attempts
])
def test_retry_predicates(attempt: int, kind: FailureKind, idempotent: bool, retry: bool) -> None:
    assert RetryPolicy(attempts=3).decide(attempt, kind, idempotent=idempotent).retry is retry


def test_retry_kinds_can_be_switched_off() -> None:
    policy = RetryPolicy(on=frozenset({"connect"}))
    assert policy.decide(1, FailureKind.NOT_SENT, idempotent=True).retry
    decision = policy.decide(1, FailureKind.TIMEOUT, idempotent=True)
    assert not decision.retry and "'timeout' is not enabled" in decision.reason


def test_health_median_tracks_the_window_incrementally() -> None:
    import random
    import statistics

    rng = random.Random(7)
    w = HealthWindow(HealthThresholds(window=10))
    kept: list[tuple[float, bool, float]] = []
    for i in range(5000):
        now = i * 0.01  # 100 samples per second, so the window holds ~1000
        sample = (now, rng.random() > 0.1, rng.lognormvariate(3, 1))
        w.record(*sample)
        kept = [s for s in (*kept, sample) if now - s[0] <= 10]
        if i % 500 == 499:
            count, success, median = w.stats(now)
            oks = [s[2] for s in kept if s[1]]
            assert count == len(kept)
            assert success == pytest.approx(len(oks) / len(kept))
            assert median == pytest.approx(statistics.median_low(oks), rel=0.05)
    # Everything expires: the histogram empties with the window.
    assert w.stats(1000.0) == (0, None, None)
    assert w._latency == {} and w._ok == 0
    assert len(w._at) == len(w._oks) == len(w._ms) == 0  # the arrays start over
    # ... and fill again from there.
    w.record(1001.0, True, 5.0)
    w.record(1001.5, False, 0.0)
    assert w.stats(1002.0) == (2, 0.5, pytest.approx(5.0))


def test_health_median_is_exact_for_equal_latencies() -> None:
    w = HealthWindow()
    for _ in range(5):
        w.record(1.0, True, 123.456)
    w.record(1.0, False, 0.0)
    assert w.stats(1.0) == (6, 5 / 6, pytest.approx(123.456))
