"""REST /api/v1/alerts over real HTTP on 127.0.0.1: rules managed with an admin token,
validation and conflicts answered in the API's shape, a restricted token limited to its
servers, and a rule fired by real calls shown in /alerts and /alerts/history."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from fastmcp import Client

from tests.alerting import alert_gateway, switch_server, webhook_receiver
from tests.fixtures import memory_entry, serve_http

pytestmark = pytest.mark.anyio
OPS = "mgw_ops-alerts-7c1e9a2b4d"
ALICE = "mgw_alice-alerts-only-svc-3f8a"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                   {"name": "alice", "token": ALICE, "scopes": ["admin"], "servers": ["svc"]}]}


async def test_alert_rules_and_alerts_over_rest(tmp_path: Path) -> None:
    mode = {"fail": True}
    gateway, _ = alert_gateway(
        tmp_path, {"svc": memory_entry("svc"), "other": memory_entry("other")},
        {"evaluate_every": 0.05, "rules": [{"name": "other-down", "server": "other",
                                            "metric": "not_ready"}]},
        {"svc": switch_server(mode), "other": switch_server({"fail": False})},
        options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(
            base_url=f"{base}/api/v1", timeout=60) as http:
        ops = {"Authorization": f"Bearer {OPS}"}
        alice = {"Authorization": f"Bearer {ALICE}"}
        rule = {"name": "svc-failing", "server": "svc", "metric": "consecutive_failures",
                "threshold": 2}
        created = await http.post("/alerts/rules", json=rule, headers=ops)
        assert created.status_code == 201, created.text
        assert created.json()["source"] == "runtime"
        again = await http.post("/alerts/rules", json=rule, headers=ops)
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        bad = await http.post("/alerts/rules", json={"name": "x", "metric": "p95_ms"},
                              headers=ops)
        assert bad.status_code == 422 and "needs a threshold" in bad.text
        message = bad.json()["error"]["message"]
        assert message.startswith("invalid body: ") and "body body" not in message \
            and not message.startswith("invalid body: body "), message
        assert (await http.post("/alerts/rules", json=rule)).status_code == 401

        # A token restricted to svc sees only svc's rules and may not watch '*'.
        listed = (await http.get("/alerts/rules", headers=alice)).json()
        assert [r["rule"]["name"] for r in listed["rules"]] == ["svc-failing"]
        star = await http.post("/alerts/rules", json={"name": "all", "metric": "not_ready"},
                               headers=alice)
        assert star.status_code == 403
        assert (await http.delete("/alerts/rules/other-down", headers=alice)).status_code == 404

        # The calls, through the MCP side of the same gateway.
        async with Client(f"{base}/mcp", auth=OPS) as client:
            for _ in range(2):
                assert (await client.call_tool("svc_work", {}, raise_on_error=False)).is_error
        assert await gateway.alerts.evaluated.wait_until(
            lambda: any(a.state == "firing" for a in gateway.alerts.alerts.snapshot()), 60)
        status = (await http.get("/alerts", headers=alice)).json()
        assert [(a["rule"], a["server"], a["state"]) for a in status["alerts"]] == [
            ("svc-failing", "svc", "firing")]
        history = (await http.get("/alerts/history", params={"server": "svc"},
                                  headers=ops)).json()
        assert [(e["rule"], e["state"]) for e in history["events"]] == [
            ("svc-failing", "firing")]

        changed = await http.put("/alerts/rules/svc-failing",
                                 json={**rule, "threshold": 5}, headers=ops)
        assert changed.status_code == 200 and changed.json()["rule"]["threshold"] == 5.0
        renamed = await http.put("/alerts/rules/svc-failing", json={**rule, "name": "y"},
                                 headers=ops)
        assert renamed.status_code == 422 and "cannot be renamed" in renamed.text
        # Two failures no longer breach a threshold of 5: the alert resolved at once.
        history = (await http.get("/alerts/history", headers=ops)).json()
        assert [e["state"] for e in history["events"]][:2] == ["resolved", "firing"]
        gone = await http.delete("/alerts/rules/svc-failing", headers=ops)
        assert gone.status_code == 200 and gone.json() == {"deleted": "svc-failing"}
        assert (await http.delete("/alerts/rules/svc-failing", headers=ops)).status_code == 404
        document = (await http.get("/openapi.json", headers=ops)).json()
        assert {"/alerts", "/alerts/rules", "/alerts/rules/{name}", "/alerts/history"} <= set(
            document["paths"])


async def test_a_restricted_admins_alert_tools_show_its_servers_only(tmp_path: Path) -> None:
    """gateway_alert_rules, gateway_alerts and gateway_alert_history showed a token
    restricted to svc every server's rules, alerts and events, where REST (and the
    dashboard) filtered them: now the operations filter, for every surface."""
    rules = [{"name": name, "server": server, "metric": "consecutive_failures",
              "threshold": 1} for name, server in (("svc-failing", "svc"),
                                                    ("other-failing", "other"))]
    gateway, _ = alert_gateway(
        tmp_path, {"svc": memory_entry("svc"), "other": memory_entry("other")},
        {"evaluate_every": 0.05, "rules": [*rules, {"name": "all-down", "metric": "not_ready"}]},
        {"svc": switch_server({"fail": True}), "other": switch_server({"fail": True})},
        options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base:
        async with Client(f"{base}/mcp", auth=OPS) as ops:
            for tool in ("svc_work", "other_work"):
                assert (await ops.call_tool(tool, {}, raise_on_error=False)).is_error
            assert await gateway.alerts.evaluated.wait_until(lambda: sum(
                a.state == "firing" for a in gateway.alerts.alerts.snapshot()) == 2, 60)
            everything = (await ops.call_tool("gateway_alert_rules", {})).structured_content
            assert len(everything["rules"]) == 3
        async with Client(f"{base}/mcp", auth=ALICE) as alice, httpx2.AsyncClient(
                base_url=f"{base}/api/v1", timeout=60,
                headers={"Authorization": f"Bearer {ALICE}"}) as http:
            listed = (await alice.call_tool("gateway_alert_rules", {})).structured_content
            assert [r["rule"]["name"] for r in listed["rules"]] == ["svc-failing"]
            status = (await alice.call_tool("gateway_alerts", {})).structured_content
            assert [(a["rule"], a["server"]) for a in status["alerts"]] == [
                ("svc-failing", "svc")]
            assert status["firing"] == 1
            history = (await alice.call_tool("gateway_alert_history", {})).structured_content
            assert [(e["rule"], e["state"]) for e in history["events"]] == [
                ("svc-failing", "firing")]
            # REST answers the same.
            assert (await http.get("/alerts/rules")).json()["rules"] == listed["rules"]
            assert (await http.get("/alerts")).json()["alerts"] == status["alerts"]
            assert (await http.get("/alerts/history")).json()["events"] == history["events"]


async def test_the_webhook_and_gateway_wide_counts_are_an_unrestricted_admins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /alerts (scope tools) showed any token the webhook's target ("http://<host>
    /***"), its deliveries and last error, the store's error text and the transitions of
    every server waiting for the store.  Now those are shown to an admin token without a
    ``servers`` list; anyone else gets its servers' alerts and the evaluator's state."""
    viewer = "mgw_viewer-alerts-tools-91d2"
    auth = {"tokens": [*AUTH["tokens"], {"name": "viewer", "token": viewer,
                                         "scopes": ["tools"]}]}
    with webhook_receiver() as receiver:
        gateway, _ = alert_gateway(
            tmp_path, {"svc": memory_entry("svc"), "other": memory_entry("other")},
            {"evaluate_every": 60, "webhook": {"url": receiver.url}},
            {"svc": switch_server({"fail": False}), "other": switch_server({"fail": False})},
            options={"auth": auth})
        async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(
                base_url=f"{base}/api/v1", timeout=60) as http:
            # The store's error as the engine reports it (an evaluation may clear the
            # attribute itself at any time: the store here is readable).
            engine_status = gateway.alerts.status
            monkeypatch.setattr(gateway.alerts, "status", lambda: {
                **engine_status(), "store_error": "connection to server at db.internal failed"})
            for token in (viewer, ALICE):
                got = await http.get("/alerts", headers={"Authorization": f"Bearer {token}"})
                assert got.status_code == 200, got.text
                status = got.json()
                assert status["webhook"] is None and "127.0.0.1" not in got.text
                assert status["history_unsaved"] is None and status["history_dropped"] is None
                assert "db.internal" not in got.text
                assert status["store_error"].startswith("the store cannot be read now")
            full = (await http.get("/alerts", headers={"Authorization": f"Bearer {OPS}"})
                    ).json()
            assert full["webhook"]["url"] == receiver.url.rsplit("/", 1)[0] + "/***"
            assert full["history_unsaved"] == 0
            assert full["store_error"] == "connection to server at db.internal failed"
            async with Client(f"{base}/mcp", auth=ALICE) as alice:  # admin, svc only
                told = (await alice.call_tool("gateway_alerts", {})).structured_content
            assert told is not None and told["webhook"] is None


async def test_a_mistyped_rule_field_is_matched_to_the_field_as_written(
        tmp_path: Path) -> None:
    """'fr' was answered "did you mean 'for_'?" and the accepted fields listed 'for_',
    the model's attribute: a rule sent with 'for_' is not what the docs or GET show."""
    from fast_mcp_gateway import parse_config
    from fast_mcp_gateway.errors import ConfigError
    from tests.fixtures import make_gateway

    gateway = make_gateway({}, db=tmp_path / "gw.db", allow_unauthenticated_admin=True)
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(
            base_url=f"{base}/api/v1", timeout=60) as http:
        typo = await http.post("/alerts/rules", json={"name": "r", "metric": "not_ready",
                                                      "fr": 60})
        assert typo.status_code == 422
        assert typo.json()["error"]["message"] == (
            "invalid body: fr is not accepted (did you mean 'for'?)"), typo.text
        extra = await http.post("/alerts/rules", json={"name": "r", "metric": "not_ready",
                                                       "zzzzz": 1})
        message = extra.json()["error"]["message"]
        assert ", for," in message and "for_" not in message, message
        async with Client(f"{base}/mcp") as client:
            refused = await client.call_tool("gateway_add_alert_rule", {"rule": {
                "name": "r", "metric": "not_ready", "fr": 60}}, raise_on_error=False)
        assert "did you mean 'for'?" in refused.content[0].text  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="did you mean 'for'"):
        parse_config({"servers": {}, "alerts": {"rules": [
            {"name": "r", "metric": "not_ready", "fr": 60}]}}, source="test")
