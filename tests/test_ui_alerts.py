"""The dashboard's Alerts page and call record page over real HTTP (no browser): rules
added, edited and deleted through the admin operations (validation issues next to their
fields, audited, CSRF, admin only), alerts fired by real failing calls shown with their
history, the overview's banner and per-server sparklines, a restricted viewer's scope,
and one call record by id."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx2
import pytest
from fastmcp import Client

from tests.alerting import alert_gateway, switch_server
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_ui import _login

pytestmark = pytest.mark.anyio
OPS = "mgw_uialerts-ops-4b7e1c9d02"
BOB = "mgw_uialerts-bob-tools-8f2a"
ALICE = "mgw_uialerts-alice-svc-6c3d"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                   {"name": "bob", "token": BOB, "scopes": ["tools"]},
                   {"name": "alice", "token": ALICE, "scopes": ["admin"], "servers": ["svc"]}]}


def _field_error(page: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="err-{field}">([^<]*)</p>', page)
    assert found, f"no error next to {field}: " + page[page.find("<form"):][:3000]
    return html.unescape(found.group(1))


async def test_alerts_page_rules_firing_history_and_scope(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mode = {"fail": True}
    gateway, seen = alert_gateway(
        tmp_path, {"svc": memory_entry("svc"), "other": memory_entry("other")},
        {"evaluate_every": 0.05, "rules": [{"name": "other-down", "server": "other",
                                            "metric": "not_ready", "severity": "critical"}]},
        {"svc": switch_server(mode), "other": switch_server({"fail": False})},
        options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=60, follow_redirects=False) as http:
        for name in ("svc", "other"):
            service = gateway.manager.services[name]
            await service.wait_until(lambda s=service: str(s.state) == "ready", within=60)
        csrf = await _login(http, base, OPS)
        page = (await http.get(base + "/ui/alerts")).text
        assert 'data-rule="other-down"' in page and "servers.yaml" in page
        assert "Nothing firing or pending." in page

        # The rule model's errors come back next to their fields, nothing is stored.
        form = {"csrf_token": csrf, "action": "add", "name": "svc-failing", "server": "svc",
                "metric": "success_rate", "threshold": "5", "window": "10 minutes",
                "severity": "warning", "enabled": ["off", "on"]}
        bad = await http.post(base + "/ui/alerts", data=form)
        assert bad.status_code == 422
        assert "is not a duration" in _field_error(bad.text, "window")
        assert 'value="10 minutes"' in bad.text  # what was typed stays in the form
        form["window"] = "10m"  # the rule-wide check names its field too
        bad = await http.post(base + "/ui/alerts", data=form)
        assert bad.status_code == 422
        assert "fraction between 0 and 1" in _field_error(bad.text, "threshold")
        assert (await gateway.store.alert_rules()) == []  # type: ignore[union-attr]

        # A valid rule: added, audited, evaluated at once; a second with its name: 409.
        form |= {"metric": "consecutive_failures", "threshold": "2", "window": "5m"}
        added = await http.post(base + "/ui/alerts", data=form)
        assert added.status_code == 200, added.text
        assert "Added alert rule &#39;svc-failing&#39;" in added.text
        again = await http.post(base + "/ui/alerts", data=form)
        assert again.status_code == 422 and "exists" in _field_error(again.text, "name")
        audit = await gateway.store.audit(limit=5)  # type: ignore[union-attr]
        assert any(e.action == "add_alert_rule" and e.actor == "dashboard:ops" for e in audit)

        # Real failing calls through /mcp fire it: page, banner, menu count, history.
        async with Client(f"{base}/mcp", auth=OPS) as client:
            for _ in range(2):
                assert (await client.call_tool("svc_work", {}, raise_on_error=False)).is_error
        assert await gateway.alerts.evaluated.wait_until(
            lambda: any(a.state == "firing" for a in gateway.alerts.alerts.snapshot()), 60)
        page = (await http.get(base + "/ui/alerts")).text
        assert re.search(r'<tr class="alert-firing" data-rule="svc-failing" '
                         r'data-server="svc">', page)
        assert '<span id="firing-count">1</span>' in page
        assert re.search(r'id="alert-history">.*data-alert="firing"', page, re.S)
        overview = (await http.get(base + "/ui/")).text
        assert "1 alert firing:" in overview and "svc-failing" in overview
        assert re.search(r'id="nav-firing" class="count"> .*1', overview)
        assert 'aria-label="svc requests per bucket: ' in overview  # a card's sparkline
        part = (await http.get(base + "/ui/partials/alerts")).text  # the live refresh
        assert '<strong class="error">svc</strong>' in part  # the rule's "firing on"
        assert 'id="nav-firing" class="count" hx-swap-oob="true"' in part
        banner = (await http.get(base + "/ui/partials/alert-banner")).text
        assert "svc-failing" in banner and 'hx-swap-oob="true"' in banner

        # Edit (the name is fixed), which resolves it: two failures < threshold 5.
        edit = (await http.get(base + "/ui/alerts?edit=svc-failing")).text
        assert 'id="rule-name" name="name" value="svc-failing" required readonly' in edit
        changed = await http.post(base + "/ui/alerts", data=form | {"action": "update",
                                                                    "threshold": "5"})
        assert changed.status_code == 200 and "Updated alert rule" in changed.text
        assert [t.state for t in seen if t.rule == "svc-failing"] == ["firing", "resolved"]
        assert "Nothing firing or pending." in changed.text
        # The history pages (one event a page here): newest first, then older.
        monkeypatch.setattr("fast_mcp_gateway.ui.alerts.HISTORY_PAGE", 1)
        first = (await http.get(base + "/ui/alerts")).text
        older = re.search(r'<a rel="next" href="(/ui/alerts\?before_id=\d+)">', first)
        assert older and re.search(r'id="alert-history">.*data-alert="resolved"', first, re.S)
        second = (await http.get(base + html.unescape(older.group(1)))).text
        assert re.search(r'id="alert-history">.*data-alert="firing"', second, re.S)
        assert 'data-alert="resolved"' not in second and "← Newest" in second
        monkeypatch.undo()

        # Delete asks first; the confirmed post deletes (a file rule: a tombstone).
        ask = await http.post(base + "/ui/alerts", data={"csrf_token": csrf,
                                                         "action": "delete",
                                                         "name": "other-down"})
        assert ask.status_code == 200 and "Delete alert rule other-down?" in ask.text
        done = await http.post(base + "/ui/alerts", data={"csrf_token": csrf, "confirm": "yes",
                                                          "action": "delete",
                                                          "name": "other-down"})
        assert done.status_code == 200 and "Deleted alert rule &#39;other-down&#39;" in done.text
        assert 'data-rule="other-down"' not in done.text

        # Without the CSRF token: refused.
        forged = await http.post(base + "/ui/alerts", data={"action": "delete",
                                                            "name": "svc-failing"})
        assert forged.status_code == 403

        # The call record page, linked from the logs, found by id.
        logs = (await http.get(base + "/ui/logs?server=svc")).text
        link = re.search(r'href="(/ui/calls/[^"]+)"', logs)
        assert link, logs[:2000]
        record = await http.get(base + html.unescape(link.group(1)))
        assert record.status_code == 200
        assert "svc is failing on purpose" in record.text and 'id="call-trace"' in record.text
        call_id = link.group(1).split("/")[3].split("?")[0]
        bare = await http.get(base + f"/ui/calls/{call_id}")  # no time: a bounded scan
        assert bare.status_code == 200 and call_id in bare.text
        assert (await http.get(base + "/ui/calls/not-an-id")).status_code == 404

        async with httpx2.AsyncClient(timeout=60, follow_redirects=False) as other:
            await _other_viewers(other, base)


async def _other_viewers(http: httpx2.AsyncClient, base: str) -> None:
    """A tools token and a token restricted to one server, on the same gateway."""
    # A tools token: sees rules, gets no form, a forged change is refused (403).
    bob_csrf = await _login(http, base, BOB)
    page = (await http.get(base + "/ui/alerts")).text
    assert 'data-rule="svc-failing"' in page and 'id="rule-form"' not in page
    refused = await http.post(base + "/ui/alerts", data={
        "csrf_token": bob_csrf, "action": "delete", "name": "svc-failing",
        "confirm": "yes"})
    assert refused.status_code == 403
    http.cookies.clear()

    # A token restricted to svc: no '*' target, may not watch every server.
    alice_csrf = await _login(http, base, ALICE)
    page = (await http.get(base + "/ui/alerts")).text
    assert '<option value="*"' not in page
    star = await http.post(base + "/ui/alerts", data={
        "csrf_token": alice_csrf, "action": "add", "name": "all-down", "server": "*",
        "metric": "not_ready", "enabled": ["off", "on"]})
    assert star.status_code == 422
    assert "may manage alert rules on its own servers only (svc)" in _field_error(
        star.text, "server")
    assert 'data-rule="svc-failing"' in page


async def test_trends_per_server_and_merged_percentiles() -> None:
    """One grouped query per bucket gives each card's sparkline and the total's, whose
    p95 comes from the merged histograms (a restricted viewer's totals are true)."""
    import time
    from types import SimpleNamespace

    from fast_mcp_gateway.store.memory import MemoryStore
    from fast_mcp_gateway.store.records import Invocation
    from fast_mcp_gateway.ui import views

    store = MemoryStore()
    now = time.time()
    rows = [Invocation(id=f"{server}-{status}-{i}", trace_id="t", client="c", kind="tool",
                       exposed=f"{server}_x", server=server, original="x",
                       started_at=now - 30, duration_ms=ms, status=status)
            for server, ms, status, n in (("a", 10.0, "success", 9), ("a", 900.0, "error", 1),
                                          ("b", 2000.0, "success", 10), ("c", 5.0, "success", 4))
            for i in range(n)]
    await store.add_invocations(rows)
    ctx = SimpleNamespace(store=store)
    whole, per_server = await views.trends(ctx, "hour", {"a", "b"})  # type: ignore[arg-type]
    assert whole is not None and set(per_server) == {"a", "b"}  # c is not visible
    assert len(whole.counts) == 12 and whole.counts[-1] == 20 and sum(whole.counts) == 20
    assert whole.errors[-1] == 1 and per_server["a"].counts[-1] == 10
    assert per_server["a"].p95[-1] is not None and per_server["a"].p95[-1] < 1000
    assert whole.p95[-1] is not None and whole.p95[-1] >= 1000  # b's calls count in it
    assert views.spark_label([1, None, 2.5]) == "1, \N{EN DASH}, 2.5"
    alone = await views.trend(ctx, "day", server="c")  # type: ignore[arg-type]
    assert alone is not None and len(alone.counts) == 24 and alone.total == 4
    none = await views.trend(ctx, "hour", server="nobody")  # type: ignore[arg-type]
    assert none is not None and none.total == 0 and none.p95 == [None] * 12


async def test_a_call_of_an_unknown_name_in_the_logs_and_its_record_page(
        tmp_path: Path) -> None:
    """A call of a name no server offers is recorded without a server: the logs show a
    dash, its page says why there is no server (no broken link), and an admin limited
    to some servers does not see it."""
    gateway = make_gateway({"svc": memory_entry("svc")}, {"svc": alpha_server()},
                           db=tmp_path / "g.db", options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=60, follow_redirects=False) as http:
        async with Client(f"{base}/mcp", auth=OPS) as client:
            assert (await client.call_tool_mcp("svc_ad", {"a": 1})).is_error
        await gateway.recorder.flushed()  # type: ignore[union-attr]
        await _login(http, base, OPS)
        logs = (await http.get(base + "/ui/logs")).text
        row = re.search(r'<tr class="status-rejected">.*?</tr>', logs, re.S)
        assert row and "svc_ad" in row.group(0) and "<td>\u2013</td>" in row.group(0), logs[:3000]
        link = re.search(r'href="(/ui/calls/[^"]+)"', row.group(0))
        assert link
        record = (await http.get(base + html.unescape(link.group(1)))).text
        assert 'id="call-no-server"' in record and "/ui/servers/\"" not in record
        assert "svc_add" in record  # what the host was told: the name it meant
        async with httpx2.AsyncClient(timeout=60, follow_redirects=False) as other:
            await _login(other, base, ALICE)
            assert "svc_ad" not in (await other.get(base + "/ui/logs")).text
