"""Stalled calls: a replica that takes calls and never answers them while its pings pass.

A host's cancellation alone says nothing of the upstream (hosts give up for their own
reasons: a short timeout of their own, a user's stop), so it feeds neither the health
window nor the breaker.  It says something when the call had waited far longer than
*that tool* takes to answer (``ToolTimes``: ``FACTOR`` times its latency EWMA, at least
``FLOOR`` seconds, at most ``SHARE`` of the call timeout, and never less than the
slowest answer it was seen to give, up to the call timeout) and the replica said
nothing meanwhile -- no answer and no progress, to any host's call.  Such a call is a
*stall*; so is a call that timed out with nothing heard.  A tool never seen to answer
is no evidence: a 20 s report tool
stopped at 8 s each time by an impatient user looks exactly like a hung one, and judged
against the replica's latency (its fast tools') it made a working replica suspect.

``THRESHOLD`` stalls in a row (no answer in between) make the replica *suspect*: its
health reads UNHEALTHY, so balancers prefer the other replicas, and a lone replica keeps
its calls (nothing better is there).  The calls one host gave up on together (its stop,
its connection gone) count once: a stall of a host whose earlier stall in the run ended
after this call began adds nothing.  After ``base`` seconds (the breaker's
``open_for``) one call is let through as a trial (``due``: still suspect, its health
still UNHEALTHY, a balancer admits it): any answer clears the suspicion; a
trial that stalls too doubles the wait, up to ``MAX_FACTOR`` times ``base`` (Envoy's
outlier ejection, with a half-open trial instead of a return to the pool).  Pure:
``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

THRESHOLD = 3  # stalls in a row that make a replica suspect
FLOOR = 5.0  # seconds: a call waited at least this long
FACTOR = 10.0  # ... and this many times the replica's latency EWMA
SHARE = 0.5  # ... but never longer than this share of the call timeout
MAX_FACTOR = 10  # the wait before a trial grows up to this many times ``base``
ALPHA = 0.3  # weight of a tool's newest answer in its latency EWMA
_HOSTS = 1024  # hosts remembered per run (more only undercounts)
_TOOLS = 1024  # tools and prompts remembered per server, and reads apart; the oldest go


def stall_after(call_timeout: float, ewma_ms: float | None) -> float:
    """Seconds a call must have waited, with nothing heard, to count as a stall."""
    typical = 0.0 if ewma_ms is None else FACTOR * ewma_ms / 1000
    return min(call_timeout * SHARE, max(FLOOR, typical))


class ToolTimes:
    """How long each tool of a server took to answer, what its stalls are judged by.

    Keyed by the request as the gateway names it (``tools/call 'report'``; reads and
    prompts alike), shared by the server's replicas: a tool's time is its code's, so a
    replica hung since it started is judged by what its siblings' answers taught.
    Only complete answers teach (not errors, nor a 2026-07-28 ``input_required``
    round): a quick refusal of bad arguments says nothing of how long the tool works.
    Reads are remembered apart (``resources/read '<uri>'``): their URIs are as many as
    a server serves (a file each), and in one memory 1,024 reads of new files made it
    forget every tool's time, and so stop judging its calls' stalls.
    """

    __slots__ = ("_reads", "_seen")

    def __init__(self) -> None:
        self._seen: dict[str, list[float]] = {}  # what -> [EWMA, slowest], seconds
        self._reads: dict[str, list[float]] = {}  # the same, of resources/read

    def answered(self, what: str, seconds: float) -> None:
        """``what`` answered in ``seconds`` (on the call path: a lookup and two sums)."""
        # A read is the one request named with an "r" first (``upstream/requests.py``:
        # ``resources/read '<uri>'``; ``tools/call``, ``prompts/get``): cheaper to tell.
        memory = self._reads if what[0] == "r" else self._seen
        seen = memory.get(what)
        if seen is not None:
            seen[0] += ALPHA * (seconds - seen[0])
            if seconds > seen[1]:
                seen[1] = seconds
            return
        if len(memory) >= _TOOLS:
            del memory[next(iter(memory))]
        memory[what] = [seconds, seconds]

    def stall_after(self, what: str, call_timeout: float) -> float | None:
        """Seconds a call of ``what`` must have waited, with nothing heard, to count as
        a stall; None when it was never seen to answer (no wait is evidence then).  Its
        slowest answer counts up to the call timeout: one that took longer reported
        progress meanwhile, and a timeout with nothing heard is a stall still."""
        seen = (self._reads if what[0] == "r" else self._seen).get(what)
        if seen is None:
            return None
        return max(stall_after(call_timeout, seen[0] * 1000), min(seen[1], call_timeout))


def seconds_text(value: float) -> str:
    """``value`` seconds as the stall lines say it: 12, 5.5, 5."""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")


@dataclass
class StallWatch:
    """One replica's run of stalls and its suspicion (see the module docstring)."""

    base: float = 30.0
    threshold: int = THRESHOLD
    counted: int = 0  # stalls in the current run
    cancelled: int = 0  # ... of which their hosts gave up on (the rest timed out)
    shortest: float = 0.0  # the waits of the run's stalls, seconds
    longest: float = 0.0
    suspect_since: float | None = None
    trial_at: float | None = None  # when a call may go as a trial
    on_trial: bool = False  # a trial call is in flight
    ejections: int = 0  # suspicions in a row (trials that stalled too), for the backoff
    total: int = 0  # stalls since the replica was made (kept across ``reset``)
    _hosts: dict[Hashable, float] = field(default_factory=dict)  # host -> its last given up

    def suspect(self, now: float) -> bool:
        """Whether other replicas are to be preferred now (not while a trial is due)."""
        return self.trial_at is not None and (self.on_trial or now < self.trial_at)

    def due(self, now: float) -> bool:
        """Whether a trial call may go now: the replica stays suspect (its health reads
        UNHEALTHY throughout), and a balancer admits it for this call, as a half-open
        breaker admits its probe."""
        return self.trial_at is not None and not self.suspect(now)

    def start(self, now: float) -> bool:
        """A host's call starts on the replica: whether it goes as the trial."""
        if self.trial_at is None or self.on_trial or now < self.trial_at:
            return False
        self.on_trial = True
        return True

    def answered(self) -> bool:
        """The replica answered a host's call: the run ends; True if it was suspect.
        (Callers skip it while ``counted`` is 0: it runs at every answer.)"""
        was = self.suspect_since is not None
        self.reset()
        return was

    def unanswered(self, trial: bool) -> None:
        """A call ended with no answer that is no stall (a quick cancel, a failure): a
        trial that ended so proved nothing, and the next call may go as the trial."""
        if trial:
            self.on_trial = False

    def stalled(self, now: float, started: float, host: Hashable, cancelled: bool,
                trial: bool) -> float | None:
        """A stall (its call ``started``, ended ``now``).  When it made the replica
        suspect, or kept it so (a trial): the seconds until the next trial; else None."""
        self.total += 1
        before = self._hosts.get(host)
        if before is None or before <= started:
            self.counted += 1
            self.cancelled += cancelled
            waited = now - started
            self.shortest = waited if self.counted == 1 else min(self.shortest, waited)
            self.longest = max(self.longest, waited)
        if before is not None or len(self._hosts) < _HOSTS:
            self._hosts[host] = now
        if trial:
            self.on_trial = False
            return self._eject(now)
        if self.suspect_since is None and self.counted >= self.threshold:
            self.suspect_since = now
            return self._eject(now)
        return None

    def _eject(self, now: float) -> float:
        wait = min(self.base * 2.0 ** self.ejections, self.base * MAX_FACTOR)
        self.ejections += 1
        self.trial_at = now + wait
        return wait

    def reason(self) -> str:
        """The run in words: 'stalled: 3 calls cancelled by their hosts after 12 s with no
        answer'."""
        n, timed_out = self.counted, self.counted - self.cancelled
        how = ("cancelled by their hosts" if not timed_out else "timed out"
               if not self.cancelled else "cancelled by their hosts or timed out")
        if n == 1:
            how = how.replace("their hosts", "its host")
        waits = seconds_text(self.shortest) if round(self.shortest) == round(self.longest) \
            else f"{seconds_text(self.shortest)}-{seconds_text(self.longest)}"
        return f"stalled: {n} call{'s' if n != 1 else ''} {how} after {waits} s with no answer"

    def describe(self, now: float) -> str | None:
        """The suspicion now, for a status (None: not suspect)."""
        if self.trial_at is None:
            return None
        since = seconds_text(now - (self.suspect_since or now))
        then = ("its trial call is in flight" if self.on_trial
                else f"a trial call in {seconds_text(self.trial_at - now)} s"
                if now < self.trial_at else "the next call goes as a trial")
        return f"{self.reason()} (suspect for {since} s; {then})"

    def reset(self) -> None:
        """Forget the run and any suspicion (an answer, a new session, an operator)."""
        self.counted = self.cancelled = self.ejections = 0
        self.shortest = self.longest = 0.0
        self.suspect_since = self.trial_at = None
        self.on_trial = False
        self._hosts.clear()
