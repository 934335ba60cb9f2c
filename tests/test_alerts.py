"""Alerts end to end: rules fire and resolve from real calls through a real gateway (a real
upstream made to fail, then to succeed) and from a real stdio upstream crashing; every
transition is logged, stored, published; the rules are managed through the gateway_*
tools; a store outage does not stop evaluation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.alerts.engine import _Reader
from fast_mcp_gateway.config.alerts import AlertRule, AlertsConfig
from fast_mcp_gateway.store import Invocation, StoreUnavailable, open_store
from tests.alerting import alert_gateway, states, switch_server
from tests.fixtures import memory_entry, stdio_entry

pytestmark = pytest.mark.anyio
WITHIN = 60.0  # generous: a loaded 2-core machine; every wait ends on its condition


async def test_rules_on_calls_fire_and_resolve_end_to_end(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    mode = {"fail": True}
    gateway, seen = alert_gateway(tmp_path, {"svc": memory_entry("svc")}, {
        "evaluate_every": 0.05,
        "rules": [
            {"name": "svc-failing", "server": "svc", "metric": "consecutive_failures",
             "threshold": 3},
            {"name": "svc-errors", "when": "success_rate < 0.5", "min_calls": 3,
             "window": "5m", "severity": "critical"},
        ]}, {"svc": switch_server(mode)})
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.alerts")
    engine = gateway.alerts
    async with Client(gateway.server) as client:
        for _ in range(3):
            result = await client.call_tool("svc_work", {}, raise_on_error=False)
            assert result.is_error
        fired = {("svc-failing", "svc", "firing"), ("svc-errors", "svc", "firing")}
        assert await engine.evaluated.wait_until(lambda: fired <= set(states(seen)), WITHIN)
        status = (await client.call_tool("gateway_alerts", {})).structured_content
        assert status is not None
        active = {(a["rule"], a["state"]) for a in status["alerts"]}
        assert active == {("svc-failing", "firing"), ("svc-errors", "firing")}
        errors = next(a for a in status["alerts"] if a["rule"] == "svc-errors")
        assert errors["value"] == 0.0 and errors["threshold"] == 0.5 and errors["op"] == "<"
        assert errors["calls"] == 3 and errors["severity"] == "critical"

        mode["fail"] = False
        for _ in range(7):
            assert not (await client.call_tool("svc_work", {})).is_error
        resolved = {("svc-failing", "svc", "resolved"), ("svc-errors", "svc", "resolved")}
        assert await engine.evaluated.wait_until(lambda: resolved <= set(states(seen)),
                                                 WITHIN)
        # Each alert fired once and resolved once, in that order.
        for rule in ("svc-failing", "svc-errors"):
            assert [s for r, _, s in states(seen) if r == rule] == ["firing", "resolved"]
        status = (await client.call_tool("gateway_alerts", {})).structured_content
        assert status is not None and status["alerts"] == [] and status["firing"] == 0

        history = (await client.call_tool("gateway_alert_history",
                                          {"rule": "svc-errors"})).structured_content
        assert history is not None
        events = history["events"]
        assert [e["state"] for e in events] == ["resolved", "firing"]  # newest first
        assert events[1]["value"] == 0.0 and events[1]["threshold"] == 0.5
        # Resolved at the first evaluation that saw >= 0.5: after 3 to 7 of the 7
        # successes (the engine evaluates every 0.05 s, the calls run meanwhile).
        assert any(events[0]["value"] == pytest.approx(k / (3 + k)) for k in range(3, 8))

    firing = [r for r in caplog.records if "FIRING" in r.getMessage()]
    resolved_logs = [r for r in caplog.records if "RESOLVED" in r.getMessage()]
    assert {r.levelno for r in firing} == {logging.WARNING} and len(firing) == 2
    assert {r.levelno for r in resolved_logs} == {logging.INFO} and len(resolved_logs) == 2
    assert "alert 'svc-errors' FIRING on server 'svc': success_rate 0 < 0.5 over 300s" in {
        r.getMessage() for r in firing}


async def test_a_server_leaving_ready_fires_at_once_and_resolves_when_back(
        tmp_path: Path) -> None:
    gateway, seen = alert_gateway(tmp_path, {"well": stdio_entry("well.py")}, {
        # A long period: only the state change itself can trigger the evaluation.
        "evaluate_every": 3600,
        "rules": [{"name": "well-down", "server": "well", "when": "state != ready"}]})
    engine = gateway.alerts
    async with Client(gateway.server) as client:
        assert await gateway.manager.services["well"].wait_until(
            lambda: str(gateway.manager.services["well"].state) == "ready", WITHIN)
        await client.call_tool("well_crash", {}, raise_on_error=False)
        expected = [("well-down", "well", "firing"), ("well-down", "well", "resolved")]
        assert await engine.evaluated.wait_until(lambda: states(seen) == expected, WITHIN)
        assert seen[0].value == "reconnecting" and seen[0].threshold == "ready"
        assert seen[1].value == "ready"
        assert engine.evaluations >= 3  # the start, then one per state change


class FlakyStore:
    """A real SQLite store that answers StoreUnavailable while ``down`` (an outage)."""

    def __init__(self, store: Any) -> None:
        self.store, self.down, self.calls_while_down = store, False, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.calls_while_down += 1
                raise StoreUnavailable("database at test is unreachable")
            return await attr(*args, **kwargs)

        return call


async def test_a_store_outage_does_not_stop_evaluation(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(await open_store(tmp_path / "gateway.db"))
    servers = {"svc": "ready"}
    config = AlertsConfig.model_validate({"evaluate_every": 0.05, "rules": [
        {"name": "errors", "metric": "success_rate", "threshold": 0.9},
        {"name": "down", "metric": "not_ready"}]})
    engine = AlertEngine(lambda: config, lambda: servers, lambda: store)  # type: ignore[arg-type, return-value]
    seen: list[Any] = []
    engine.on_transition.append(seen.append)
    import anyio

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            start = engine.evaluations
            store.down = True
            servers["svc"] = "failed"
            # Evaluation goes on; the state rule still fires; call rules are unknown.
            assert await engine.evaluated.wait_until(
                lambda: engine.evaluations >= start + 5 and len(seen) == 1, WITHIN)
            assert engine.store_error is not None and store.calls_while_down >= 5
            assert (seen[0].rule, seen[0].state) == ("down", "firing")
            assert engine.status()["history_unsaved"] == 1
            outage_logs = [r for r in caplog.records if "cannot read the store" in
                           r.getMessage()]
            assert len(outage_logs) == 1  # logged once, not once per evaluation
            store.down = False
            assert await engine.evaluated.wait_until(
                lambda: engine.store_error is None and not engine.status()["history_unsaved"],
                WITHIN)
            events = await store.store.alert_events()
            assert [(e.rule, e.state) for e in events] == [("down", "firing")]
            tg.cancel_scope.cancel()
    finally:
        await store.store.close()


async def test_firing_alerts_survive_a_restart_and_resolve_rather_than_refire(
        tmp_path: Path) -> None:
    db = await open_store(tmp_path / "gateway.db")
    servers = {"svc": "failed"}
    config = AlertsConfig.model_validate({"rules": [{"name": "down", "metric": "not_ready"}]})
    try:
        first = AlertEngine(lambda: config, lambda: servers, lambda: db)
        assert [t.state for t in await first.evaluate()] == ["firing"]
        second = AlertEngine(lambda: config, lambda: servers, lambda: db)  # a restart
        await second.restore()
        assert await second.evaluate() == []  # still firing: not announced again
        servers["svc"] = "ready"
        assert [t.state for t in await second.evaluate()] == ["resolved"]
    finally:
        await db.close()


async def test_rules_are_managed_through_the_admin_tools_and_audited(tmp_path: Path) -> None:
    gateway, _ = alert_gateway(tmp_path, {"svc": memory_entry("svc")}, {
        "rules": [{"name": "from-file", "metric": "not_ready"}]},
        {"svc": switch_server({"fail": False})})
    async with Client(gateway.server) as client:
        async def tool(tool_name: str, /, **arguments: Any) -> Any:
            result = await client.call_tool(tool_name, arguments, raise_on_error=False)
            return result.structured_content if not result.is_error else result.content[0].text

        listed = await tool("gateway_alert_rules")
        assert [(r["rule"]["name"], r["source"]) for r in listed["rules"]] == [
            ("from-file", "file")]
        added = await tool("gateway_add_alert_rule", rule={
            "name": "slow", "server": "svc", "when": "p95_ms > 250", "window": "2m"})
        assert added["source"] == "runtime"
        assert added["rule"] == {"name": "slow", "server": "svc", "metric": "p95_ms",
                                 "op": ">", "threshold": 250.0, "window": 120.0,
                                 "for": 0.0, "min_calls": 3, "severity": "warning",
                                 "enabled": True}
        assert "exists" in await tool("gateway_add_alert_rule", rule={
            "name": "slow", "metric": "not_ready"})
        bad = await tool("gateway_add_alert_rule", rule={"name": "x", "metric": "p95_ms"})
        assert "field 'threshold'" not in bad and "needs a threshold" in bad
        assert "no server named 'nope'" in await tool(
            "gateway_add_alert_rule", rule={"name": "x", "server": "nope",
                                            "metric": "not_ready"})
        assert "cannot be renamed" in await tool("gateway_update_alert_rule", name="slow",
                                                 rule={"name": "other", "metric": "not_ready"})
        updated = await tool("gateway_update_alert_rule", name="from-file",
                             rule={"metric": "not_ready", "for": "30s"})
        assert updated["source"] == "runtime" and updated["rule"]["for"] == 30.0
        assert (await tool("gateway_delete_alert_rule", name="from-file")) == {
            "deleted": "from-file"}
        assert "no alert rule named 'from-file'" in await tool("gateway_delete_alert_rule",
                                                               name="from-file")
        listed = await tool("gateway_alert_rules")
        assert [r["rule"]["name"] for r in listed["rules"]] == ["slow"]
        audit = await tool("gateway_audit")
        actions = [(e["action"], e["target"]) for e in audit["entries"]]
        assert actions[:3] == [("delete_alert_rule", "from-file"),
                               ("update_alert_rule", "from-file"), ("add_alert_rule", "slow")]
    # Runtime rules (and the file rule's deletion) persist across a restart.
    again, _ = alert_gateway(tmp_path, {"svc": memory_entry("svc")}, {
        "rules": [{"name": "from-file", "metric": "not_ready"}]},
        {"svc": switch_server({"fail": False})})
    async with Client(again.server) as client:
        listed = (await client.call_tool("gateway_alert_rules", {})).structured_content
        assert listed is not None
        assert [r["rule"]["name"] for r in listed["rules"]] == ["slow"]


async def test_gateways_sharing_a_store_post_each_alert_once(pg_url: str) -> None:
    """Two gateways on one PostgreSQL read the same calls: both see the alert, one posts
    and records it (the lease holder); when it stops, the other takes over.  A state
    rule reads each gateway's own upstreams: each posts its own, named."""
    import time

    from tests.alerting import webhook_receiver

    a_store, b_store = await open_store(pg_url), await open_store(pg_url)
    now = time.time()
    await a_store.add_invocations([Invocation(
        id=f"c{i}", trace_id="t", client="stdio", kind="tool", exposed="svc_work",
        server="svc", original="work", started_at=now - 10 + i, duration_ms=5.0,
        status="error", error="boom") for i in range(3)])
    try:
        with webhook_receiver() as receiver:
            config = AlertsConfig.model_validate({
                "webhook": {"url": receiver.url, "attempts": 1},
                "rules": [{"name": "errors", "when": "success_rate < 0.5", "min_calls": 3},
                          {"name": "down", "metric": "not_ready"}]})
            a_states, b_states = {"svc": "ready"}, {"svc": "failed"}
            a = AlertEngine(lambda: config, lambda: a_states, lambda: a_store,
                            instance_id="gw-a")
            b = AlertEngine(lambda: config, lambda: b_states, lambda: b_store,
                            instance_id="gw-b")
            async with anyio.create_task_group() as tg:
                await tg.start(a.webhook.run)
                await tg.start(b.webhook.run)
                assert [(t.rule, t.state) for t in await a.evaluate()] == [
                    ("errors", "firing")]
                assert sorted((t.rule, t.state) for t in await b.evaluate()) == [
                    ("down", "firing"), ("errors", "firing")]   # b sees it too
                assert (a.leading, b.leading) == (True, False)
                assert b.status()["leading"] is False
                assert await a.webhook.idle(WITHIN) and await b.webhook.idle(WITHIN)
                posted = sorted((p["rule"], p["gateway"]) for p in receiver.bodies())
                assert posted == [("down", "gw-b"), ("errors", "gw-a")]   # once each
                history = await a_store.alert_events()
                assert sorted((e.rule, e.state) for e in history) == [
                    ("down", "firing"), ("errors", "firing")]

                # a stops (its lease runs out); b takes over and announces the resolve.
                await a_store.close()
                await b_store.hold_lease("alerts", "gw-a", -1)   # as if a's lease expired
                await b_store.add_invocations([Invocation(
                    id=f"ok{i}", trace_id="t", client="stdio", kind="tool",
                    exposed="svc_work", server="svc", original="work",
                    started_at=time.time(), duration_ms=5.0, status="success")
                    for i in range(10)])
                assert [(t.rule, t.state) for t in await b.evaluate()] == [
                    ("errors", "resolved")]
                assert b.leading is True
                assert await b.webhook.idle(WITHIN)
                assert [(p["rule"], p["state"], p["gateway"]) for p in receiver.bodies()
                        if p["state"] == "resolved"] == [("errors", "resolved", "gw-b")]
                tg.cancel_scope.cancel()
    finally:
        await b_store.close()
        await a_store.close()


async def test_a_tasks_end_is_no_request_for_consecutive_failures(tmp_path: Path) -> None:
    """A task's end record (kind ``task``, front/tasks.py) is not a request: a streak of
    failed tasks whose calls succeeded is no streak of failed calls, and a streak of
    failed calls stays one whatever tasks end among them."""
    from fast_mcp_gateway.store import Invocation

    def row(n: int, kind: str, status: str) -> Invocation:
        return Invocation(id=f"r{n}", trace_id="t", client="c", kind=kind, exposed="svc_job",
                          server="svc", original="job", started_at=1000.0 + n,
                          duration_ms=1.0, status=status)

    rule = AlertRule.model_validate({"name": "failing", "server": "svc",
                                     "when": "consecutive_failures >= 2", "window": 3600})
    store = await open_store(str(tmp_path / "gateway.db"))
    try:
        # Tasks started by calls that succeeded, each ended failed: no failed request.
        await store.add_invocations([row(n, "tool", "success") for n in (1, 3, 5)]
                                    + [row(n, "task", "error") for n in (2, 4, 6)])
        reading = (await _Reader(store, 1100.0).read(rule, ["svc"], {}))["svc"]
        assert (reading.value, reading.breached) == (0.0, False)
        # Two failed calls in a row, tasks ending between them: a streak of two.
        await store.add_invocations([row(7, "tool", "error"), row(8, "task", "success"),
                                     row(9, "tool", "error"), row(10, "task", "success")])
        reading = (await _Reader(store, 1100.0).read(rule, ["svc"], {}))["svc"]
        assert (reading.value, reading.breached) == (2.0, True)
    finally:
        await store.close()
