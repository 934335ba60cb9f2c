"""The stall watch as a pure policy (policies/stalls.py): tables over a fake clock."""

from __future__ import annotations

import pytest

from fast_mcp_gateway.policies import stalls
from fast_mcp_gateway.policies.stalls import StallWatch, ToolTimes, stall_after


@pytest.mark.parametrize(("call_timeout", "ewma_ms", "after"), [
    (30.0, None, 5.0),       # nothing known: the floor
    (30.0, 50.0, 5.0),       # a fast replica: 10x is under the floor
    (30.0, 1200.0, 12.0),    # 10x its latency
    (30.0, 4000.0, 15.0),    # never past half the call timeout
    (4.0, None, 2.0),        # a short call timeout: half of it, under the floor
    (600.0, 50.0, 5.0),      # a long call timeout does not delay the judgment
])
def test_a_stall_is_a_wait_far_beyond_the_replicas_latency(
        call_timeout: float, ewma_ms: float | None, after: float) -> None:
    assert stall_after(call_timeout, ewma_ms) == after


def test_three_stalls_in_a_row_make_it_suspect_and_an_answer_clears_it() -> None:
    w = StallWatch(base=30)
    assert w.stalled(20, 0, "a", True, False) is None
    assert w.stalled(40, 20, "a", True, False) is None   # after the first: counts
    assert not w.suspect(40)
    assert w.stalled(60, 40, "b", False, False) == 30    # suspect: a trial in 30 s
    assert w.suspect(60) and w.suspect(89.9) and not w.suspect(90)
    assert w.reason() == ("stalled: 3 calls cancelled by their hosts or timed out after "
                          "20 s with no answer")
    assert w.describe(70) == (w.reason() + " (suspect for 10 s; a trial call in 20 s)")
    assert w.answered() and w.describe(70) is None and w.counted == 0 and w.total == 3


def test_an_answer_between_stalls_starts_the_run_again() -> None:
    w = StallWatch(base=30)
    w.stalled(20, 0, "a", True, False)
    w.stalled(40, 20, "a", True, False)
    assert not w.answered()                              # not suspect, the run is over
    w.stalled(60, 40, "a", True, False)
    assert w.counted == 1 and not w.suspect(60)


def test_the_calls_one_host_gave_up_on_together_count_once() -> None:
    w = StallWatch(base=30)
    for _ in range(5):  # one host's stop (or its connection gone) ends five stuck calls
        assert w.stalled(20, 0, "a", True, False) is None
    assert w.counted == 1 and w.total == 5
    w.stalled(20, 1, "b", True, False)                   # another host's: counts
    assert w.counted == 2
    assert w.stalled(30, 20, "a", True, False) == 30     # a's next call, stuck again
    assert w.reason() == "stalled: 3 calls cancelled by their hosts after 10-20 s with no answer"


def test_one_trial_at_a_time_and_a_trial_that_stalls_doubles_the_wait() -> None:
    w = StallWatch(base=30, threshold=1)
    assert w.stalled(10, 0, "a", True, False) == 30      # suspect at 10, trial at 40
    assert not w.start(39)                                # not due yet
    assert w.start(40) and not w.start(40)                # one trial, not two
    assert w.suspect(41)                                  # others preferred meanwhile
    w.unanswered(trial=True)                              # a quick cancel: proves nothing
    assert not w.suspect(41) and w.start(41)              # the next call is the trial
    waits = [w.stalled(61, 41, "a", True, True)]
    for at in (200.0, 400.0, 800.0, 1200.0, 2000.0):
        assert w.start(at)
        waits.append(w.stalled(at + 20, at, "a", True, True))
    assert waits == [60, 120, 240, 300, 300, 300]         # doubling, up to 10x base
    assert w.answered() and not w.suspect(2020) and w.ejections == 0


def test_calls_of_a_lone_suspect_replica_before_the_trial_do_not_delay_it() -> None:
    w = StallWatch(base=30, threshold=1)
    w.stalled(10, 0, "a", True, False)                   # trial at 40
    assert not w.start(20)                                # a call it takes anyway
    assert w.stalled(35, 20, "a", True, False) is None    # another stall: no new wait
    assert w.trial_at == 40 and w.counted == 2


def test_a_calls_wait_is_judged_by_its_tools_own_time() -> None:
    t = ToolTimes()
    assert t.stall_after("tools/call 'report'", 30) is None  # never answered: no evidence
    t.answered("tools/call 'lookup'", 0.05)
    assert t.stall_after("tools/call 'lookup'", 30) == 5.0     # the floor
    assert t.stall_after("tools/call 'report'", 30) is None    # another tool's time: none
    t.answered("tools/call 'report'", 1.2)
    assert t.stall_after("tools/call 'report'", 30) == pytest.approx(12.0)  # 10x its time
    t.answered("tools/call 'report'", 20.0)  # once slow: a wait shorter proves nothing
    assert t.stall_after("tools/call 'report'", 30) == 20.0
    t.answered("tools/call 'export'", 40.0)  # slower than half the call timeout
    assert t.stall_after("tools/call 'export'", 60) == 40.0
    for _ in range(20):                       # its EWMA goes down; its slowest stays
        t.answered("tools/call 'export'", 0.1)
    assert t.stall_after("tools/call 'export'", 60) == 40.0
    t.answered("tools/call 'export'", 90.0)   # with progress, past the call timeout:
    assert t.stall_after("tools/call 'export'", 60) == 60.0  # a timeout still counts


def test_the_tools_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stalls, "_TOOLS", 3)
    t = ToolTimes()
    for name in "abcd":
        t.answered(name, 0.1)
    assert t.stall_after("a", 30) is None and t.stall_after("d", 30) == 5.0


def test_reads_of_many_uris_do_not_make_the_tools_times_forgotten() -> None:
    # A server's URIs are as many as its files: read 1,024 of them after a tool's call,
    # and its time was forgotten (its hung calls never stalls again, until it answered).
    t = ToolTimes()
    t.answered("tools/call 'report'", 1.2)
    t.answered("prompts/get 'brief'", 0.1)
    for n in range(3 * stalls._TOOLS):
        t.answered(f"resources/read 'file:///srv/data/{n}.txt'", 0.01)
    assert t.stall_after("tools/call 'report'", 30) == pytest.approx(12.0)
    assert t.stall_after("prompts/get 'brief'", 30) == 5.0
    # The reads are bounded alike, the oldest forgotten.
    assert t.stall_after("resources/read 'file:///srv/data/0.txt'", 30) is None
    assert t.stall_after(f"resources/read 'file:///srv/data/{3 * stalls._TOOLS - 1}.txt'",
                         30) == 5.0
