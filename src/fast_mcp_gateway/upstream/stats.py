"""Accounting of one replica: health window, circuit breaker, latency EWMA, calls in
flight, connect and restart counters; and ``UpstreamStatistics``, the frozen snapshot
of all of it that status reports, REST and metrics read instead of live internals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.policies import (
    BreakerState,
    CircuitBreaker,
    HealthStatus,
    HealthThresholds,
    HealthWindow,
    ReplicaView,
)
from fast_mcp_gateway.policies.stalls import StallWatch, ToolTimes, seconds_text
from fast_mcp_gateway.upstream.deadline import Pace
from fast_mcp_gateway.upstream.http_idle import IdleBound
from fast_mcp_gateway.upstream.model import UpstreamState

logger = logging.getLogger(__name__)
EWMA_ALPHA = 0.3  # weight of the newest latency sample


@dataclass(frozen=True)
class UpstreamStatistics:
    """One replica at one instant.  Durations are seconds, latencies milliseconds;
    ``None`` means "not known yet" (no sample, never connected, breaker not open)."""

    label: str
    replica: int
    weight: int
    state: UpstreamState
    health: HealthStatus
    breaker: BreakerState
    breaker_open_seconds: float | None  # since the breaker last opened (open, half-open)
    breaker_retry_in_seconds: float | None  # until an open breaker lets a probe through
    inflight: int
    ewma_latency_ms: float | None
    samples: int  # calls and probes in the health window
    success_rate: float | None
    median_latency_ms: float | None
    restarts: int
    connects: int
    attempts: int
    protocol_errors: int  # malformed or oversized messages from the upstream
    uptime_seconds: float | None
    connect_seconds: float | None
    next_retry_in_seconds: float | None  # while reconnecting
    last_error: str | None
    pid: int | None
    protocol_version: str | None
    breaker_trips: int = 0  # times its breaker opened since the replica was made
    protocol_reason: str | None = None  # why its session is in its era (config/session)
    # Why it is suspect of stalling calls (policies/stalls.py), None when it is not.
    stalled: str | None = None
    stalls: int = 0  # stalled calls since the replica was made (``StallWatch.total``)


class ReplicaAccounting:
    """The counters and policies one replica's calls feed (no I/O, injected clock)."""

    def __init__(self, config: ServerConfig, label: str,
                 clock: Callable[[], float] = time.monotonic,
                 on_transition: Callable[[str, str], None] | None = None,
                 alone: bool = True) -> None:
        h, b = config.health, config.circuit_breaker
        self.label = label
        self.clock = clock
        self.health = HealthWindow(HealthThresholds(
            healthy_success=h.healthy_success, degraded_success=h.degraded_success,
            healthy_latency_ms=h.healthy_latency_ms, degraded_latency_ms=h.degraded_latency_ms,
            window=h.window, heartbeat_timeout=h.heartbeat_timeout, min_samples=h.min_samples,
        ))
        self.breaker = CircuitBreaker(b.failure_threshold, b.window, b.open_for,
                                      b.half_open_probes)
        self.stalls = StallWatch(base=b.open_for)
        # What each tool took to answer, its calls' stalls judged by (the server's
        # replicas share one: ``Service``).
        self.tools = ToolTimes()
        self.alone = alone  # no other replica to prefer (the stall lines say so)
        self.idle = IdleBound(label)  # an HTTP server's idle connections: how long reused
        # Answers to hosts' requests and progress reports, counted: a request ended
        # with the count unchanged heard nothing from the replica while it waited.
        self.heard = 0
        self.ewma_ms: float | None = None
        self.active = 0  # requests in flight on this replica (all callers)
        self.last_status = HealthStatus.UNKNOWN
        self._quiet = False  # UNHEALTHY for want of a session, not logged (``status``)
        self._why: str | None = None  # what a transition read now says changed (``_told``)
        self.restarts = 0  # sessions started after the first: a crash's, a reconnect's
        self.connects = 0
        self.attempts = 0
        self.protocol_errors = 0
        self.connect_seconds: float | None = None
        self.ready_since: float | None = None  # wall clock
        self._on_transition = on_transition

    def record(self, ok: bool, started: float, by_host: bool = False,
               learned: str | None = None, pace: Pace | None = None) -> None:
        """One request ended (``started`` from ``clock``): feed health, breaker, EWMA;
        ``by_host``: a host's request (not the gateway's own), whose answer is heard;
        ``learned``: what it was (``tools/call 'x'``) when it answered complete, so that
        its tool's time is learned (``ToolTimes``).  ``pace``: what the request's time
        says of the replica's speed: the time it waited on the host's answers to its
        questions (sampling, elicitation, roots: a person filling a form) is not the
        replica's, and a request that reported progress is long by design: its success
        counts, its time does not (a one-second tool reporting progress made its server
        UNHEALTHY, > 500 ms)."""
        now = self.clock()
        if ok and by_host:
            self.heard += 1
            if self.stalls.counted:
                self._answered(now)
        own = max(0.0, now - started - (pace.waited if pace else 0.0))
        if learned is not None:
            self.tools.answered(learned, own)
        latency_ms = own * 1000
        timed = pace is None or not pace.progressed
        self.health.record(now, ok, latency_ms if timed else None)
        before = self.breaker.state
        if ok:
            self.breaker.record_success(now)
            if timed:
                self.ewma_ms = latency_ms if self.ewma_ms is None else (
                    EWMA_ALPHA * latency_ms + (1 - EWMA_ALPHA) * self.ewma_ms)
            if before is BreakerState.HALF_OPEN and self.breaker.state is BreakerState.CLOSED:
                logger.info("upstream %s: circuit breaker closed: its probe call succeeded",
                            self.label)
        else:
            self.breaker.record_failure(now)
            if self.breaker.state is BreakerState.OPEN and before is not BreakerState.OPEN:
                self._breaker_opened(before)

    def progressed(self) -> None:
        """A progress report of a request came: the replica is working on it."""
        self.heard += 1

    def hearing(self, callbacks: dict[str, Any]) -> dict[str, Any]:
        """``callbacks`` (a session's: asks, logs) each telling ``progressed`` first: an
        upstream that asks or logs is working (a call waiting on a person's answer to
        its ask is no stall).  A value that is no callback (what an ask declares) as is."""
        def heard(callback: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def told(*args: Any, **kwargs: Any) -> Any:
                self.heard += 1
                return await callback(*args, **kwargs)
            return told

        return {key: heard(value) if callable(value) else value
                for key, value in callbacks.items()}

    def given_up(self, probe: int = -1) -> None:
        """A request's caller gave up (not recorded: see ``upstream/requests.py``).  A
        half-open probe slot it took is given back: kept, one host's stop left the
        breaker half-open with no slot, the replica out of every balance until a restart.
        ``probe``: the breaker's ``trips`` when the request started half-open (it took a
        slot of that half-open spell), else -1: a call taken while the breaker was closed
        gives back no slot, or a second probe went while the first was in flight."""
        breaker = self.breaker
        if probe == breaker.trips and breaker.state is BreakerState.HALF_OPEN:
            breaker.release_probe()

    def unanswered(self, what: str, started: float, heard: int, host: Hashable,
                   how: str | None, trial: bool, call_timeout: float) -> None:
        """A host's request (``what``) ended with no answer: ``how`` "cancelled" (its
        host gave up), "timed out", or None (it failed).  ``heard``: the count when it
        started.  A stall (policies/stalls.py) counts towards suspecting the replica of
        hanging calls: a wait far past what that tool takes, with nothing heard."""
        stalls, now = self.stalls, self.clock()
        after = None if how is None or heard != self.heard \
            else self.tools.stall_after(what, call_timeout)
        if after is None or now - started < after:
            stalls.unanswered(trial)
            return
        wait = stalls.stalled(now, started, host, how == "cancelled", trial)
        if wait is None:
            return
        if trial:
            logger.warning("upstream %s: its trial call got no answer either (%s after "
                           "%s s): still suspect, the next trial in %s s", self.label,
                           "cancelled by its host" if how == "cancelled" else how,
                           seconds_text(now - started), seconds_text(wait))
            self._told()
            return
        where = ("it is the server's only replica, so calls still go to it" if self.alone
                 else "calls go to the other replicas")
        logger.warning("upstream %s: %s (its health probes may still pass): health "
                       "UNHEALTHY, %s; a call goes as a trial in %s s "
                       "(gateway_restart_replica restarts it)", self.label,
                       stalls.reason(), where, seconds_text(wait))
        self._told()

    def _answered(self, now: float) -> None:
        stalls = self.stalls
        since, reason = stalls.suspect_since, stalls.reason()
        if stalls.answered() and since is not None:
            logger.info("upstream %s: answered a call again after %s s suspect (%s): no "
                        "longer suspect", self.label, seconds_text(now - since), reason)
            self._told(" (answered a call again: no longer suspect of stalling)")

    def _told(self, why: str | None = None) -> None:
        """A suspicion of stalling began, ended, or held (its trial stalled too): its
        health transition now, not at the next probe or pick (the dashboard's live
        stream, the health history, alerts).  Ready as at the last reading: the request
        that told it ran on the session."""
        self._why = why
        try:
            self.status(not self._quiet)
        finally:
            self._why = None

    def _breaker_opened(self, before: BreakerState) -> None:
        """One line per trip (a state change), never one per call refused meanwhile."""
        b = self.breaker
        why = ("its probe call failed" if before is BreakerState.HALF_OPEN else
               f"{b.failure_threshold} failed call(s) within {b.window:g}s")
        logger.warning("upstream %s: circuit breaker open (%s): calls skip it for "
                       "%gs, then a probe call tests it (gateway_reset_breaker closes it "
                       "now)", self.label, why, b.open_for)

    def new_session(self, connect_seconds: float) -> None:
        """A new session is a new process or connection: what the breaker and the health
        window learned about the old one (e.g. every in-flight call failing as it died)
        says nothing about this one.  The breaker guards a live replica that keeps
        failing; a dead one is the supervisor's business."""
        self.breaker.reset()
        self.stalls.reset()  # a new process or connection: none of its calls stalled
        self.health = HealthWindow(self.health.thresholds)
        self.connects += 1
        self.connect_seconds = connect_seconds
        self.ready_since = time.time()

    def uptime(self) -> float | None:
        return None if self.ready_since is None else time.time() - self.ready_since

    def status(self, ready: bool) -> HealthStatus:
        """Health now; a replica without a live session is UNHEALTHY.  Transitions are
        logged once."""
        now = self.clock()
        status = self.health.classify(now) if ready else HealthStatus.UNHEALTHY
        stalls = self.stalls
        # Suspect until an answer clears it, its trial's turn included: a due trial
        # read as healthy logged two transitions per trial (out of UNHEALTHY and back)
        # for a replica still hung; ``Service.eligible`` admits a due trial instead.
        stalled = ready and stalls.trial_at is not None
        if stalled:
            status = HealthStatus.UNHEALTHY
        if status is not self.last_status:
            level = logging.WARNING if status is HealthStatus.UNHEALTHY else logging.INFO
            # Without a session it is UNHEALTHY in silence (its state lines say why); a
            # new session's health starts UNKNOWN: the log goes on from there, never
            # "UNHEALTHY -> UNKNOWN" at every start and restart.
            said = HealthStatus.UNKNOWN if self._quiet else self.last_status
            why = f" ({stalls.reason()})" if stalled else self._why or ""
            if ready and status is not said:
                logger.log(level, "upstream %s: health %s -> %s%s", self.label, said, status,
                           why)
            if (ready or status is not HealthStatus.UNHEALTHY) \
                    and self._on_transition is not None:
                self._on_transition(str(status),
                                    f"health {self.last_status} -> {status}{why}")
            self.last_status = status
        self._quiet = not ready
        return status

    def view(self, index: int, weight: int) -> ReplicaView:
        """What a balancer may know about this replica."""
        return ReplicaView(index, weight, self.active, self.ewma_ms)

    def breaker_timing(self, now: float) -> tuple[float | None, float | None]:
        """(seconds the breaker has been open, seconds until it lets a probe through)."""
        retry_at, opened_at = self.breaker.retry_at(), self.breaker.opened_at
        return (None if opened_at is None else now - opened_at,
                None if retry_at is None else max(0.0, retry_at - now))
