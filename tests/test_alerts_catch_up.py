"""The gateway taking the alerts lease over tells what happened while its holder was
dead, transition by transition (``alerts/unrecorded.py``).

Its catch-up compared the history's last event with what fires now: an alert the dead
holder had recorded firing, which then resolved and fired again while its lease still
ran, was told as nothing (the history said firing already), the resolve and the second
firing lost; one the history had resolved was told as one firing.  Two gateways' alert
engines on a real PostgreSQL (``tests/pg.py``), a real loopback webhook receiver, as
``test_scaleout_trial``'s catch-up test."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.config.alerts import AlertsConfig
from fast_mcp_gateway.store import Invocation, Store, open_store
from tests.alerting import Receiver, webhook_receiver

pytestmark = pytest.mark.anyio


async def _calls(store: Store, status: str, n: int) -> None:
    now = time.time()
    await store.add_invocations([Invocation(
        id=f"{status}{now}{i}", trace_id="t", client="stdio", kind="tool",
        exposed="svc_work", server="svc", original="work", started_at=now + i / 1000,
        duration_ms=5.0, status=status, error=None) for i in range(n)])


@asynccontextmanager
async def two_engines(pg_url: str, skew: float) -> AsyncIterator[
        tuple[AlertEngine, AlertEngine, Store, Store, Receiver]]:
    """Two gateways' alert engines on one PostgreSQL, their webhooks running to one
    receiver, the second's clock ``skew`` seconds ahead; the first holds the lease."""
    a_store, b_store = await open_store(pg_url), await open_store(pg_url)
    try:
        with webhook_receiver() as receiver:
            config = AlertsConfig.model_validate({
                "webhook": {"url": receiver.url, "attempts": 1},
                "rules": [{"name": "failing", "when": "consecutive_failures >= 2"}]})
            stores = {"gw-a": a_store, "gw-b": b_store}
            clocks = {"gw-a": time.time, "gw-b": lambda: time.time() + skew}
            a, b = (AlertEngine(lambda: config, lambda: {"svc": "ready"},
                                lambda name=name: stores[name], instance_id=name,
                                clock=clocks[name])
                    for name in ("gw-a", "gw-b"))
            async with anyio.create_task_group() as tg:
                await tg.start(a.webhook.run)
                await tg.start(b.webhook.run)
                assert await a.evaluate() == [] and await b.evaluate() == []
                assert (a.leading, b.leading) == (True, False)
                yield a, b, a_store, b_store, receiver
                tg.cancel_scope.cancel()
    finally:
        await b_store.close()
        await a_store.close()


@pytest.mark.parametrize("skew", [0.0, -15.0, 60.0])
@pytest.mark.parametrize("recorded", ["firing", "resolved"])
async def test_fired_resolved_and_fired_again_while_the_holder_was_dead_is_told_so(
        pg_url: str, recorded: str, skew: float) -> None:
    """``recorded``: the last state the holder recorded before it died; ``skew``: how far
    the second gateway's clock is ahead of the holder's (behind if negative).  The
    catch-up compared this gateway's times of what it saw with the holder's recorded
    times: 15 s behind, nothing was told (every transition seen looked older than the
    history's last); ahead by more than a fire/resolve cycle, transitions the holder had
    recorded were told again.  It now compares the history's event ids (skew29)."""
    async with two_engines(pg_url, skew) as (a, b, a_store, b_store, receiver):
        await _calls(b_store, "error", 3)
        assert [t.state for t in await a.evaluate()] == ["firing"]  # recorded
        assert [t.state for t in await b.evaluate()] == ["firing"]  # seen only
        if recorded == "resolved":
            await _calls(b_store, "success", 3)
            assert [t.state for t in await a.evaluate()] == ["resolved"]
            assert [t.state for t in await b.evaluate()] == ["resolved"]
            await _calls(b_store, "error", 3)   # fires again: a is dead by then
            await a_store.close()
            assert [t.state for t in await b.evaluate()] == ["firing"]
        else:
            await a_store.close()  # a is killed: its lease runs on
        await _calls(b_store, "success", 3)
        assert [t.state for t in await b.evaluate()] == ["resolved"]
        await _calls(b_store, "error", 3)
        assert [t.state for t in await b.evaluate()] == ["firing"]
        assert await a.webhook.idle(60)
        before = [p["state"] for p in receiver.bodies()]
        assert before == ["firing"] if recorded == "firing" else ["firing", "resolved"]

        await b_store.hold_lease("alerts", "gw-a", -1)  # a's lease ran out
        await b.evaluate()
        assert b.leading and await b.webhook.idle(60)
        late = [p for p in receiver.bodies()[len(before):]]
        expected = (["resolved", "firing"] if recorded == "firing"
                    else ["firing", "resolved", "firing"])
        assert [(p["state"], p["gateway"]) for p in late] == [
            (state, "gw-b") for state in expected], late
        assert all("announced late" in p["message"] for p in late), late
        assert [p["at"] for p in late] == sorted(p["at"] for p in late)  # as it went
        history = [e.state for e in await b_store.alert_events()]  # newest first
        assert history == [*reversed(expected), *reversed(before)], history
        await b.evaluate()  # told once
        assert await b.webhook.idle(60)
        assert len(receiver.bodies()) == len(before) + len(expected)


@pytest.mark.parametrize("skew", [0.0, -15.0, 60.0])
async def test_what_the_holder_recorded_after_this_gateway_saw_it_is_not_told_again(
        pg_url: str, skew: float) -> None:
    """The second gateway sees each transition before the holder records it (they
    evaluate apart); the holder records firing and resolved, then dies; the alert fires
    again.  Only that firing is told, whichever clock is ahead: compared by time, 60 s
    ahead told the recorded firing and resolve again, 15 s behind told nothing."""
    async with two_engines(pg_url, skew) as (a, b, a_store, b_store, receiver):
        for status, state in (("error", "firing"), ("success", "resolved")):
            await _calls(b_store, status, 3)
            assert [t.state for t in await b.evaluate()] == [state]  # seen first
            assert [t.state for t in await a.evaluate()] == [state]  # recorded
        await a_store.close()  # a is killed: its lease runs on
        await _calls(b_store, "error", 3)
        assert [t.state for t in await b.evaluate()] == ["firing"]
        assert await a.webhook.idle(60)
        assert [p["state"] for p in receiver.bodies()] == ["firing", "resolved"]

        await b_store.hold_lease("alerts", "gw-a", -1)  # a's lease ran out
        await b.evaluate()
        assert b.leading and await b.webhook.idle(60)
        late = receiver.bodies()[2:]
        assert [(p["state"], p["gateway"]) for p in late] == [("firing", "gw-b")], late
        assert [e.state for e in await b_store.alert_events()] == [
            "firing", "resolved", "firing"]
