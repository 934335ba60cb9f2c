"""Route and alert rules listed while the store cannot be read (``admin/in_force.py``).

The rules in force are held in memory (the call path's route table, the alert engine's
rules); REST, the admin tools and the dashboard's Routes and Alerts pages answered 503
for them during a store outage.  Now they list what is in force, saying that the store
cannot be read (the store's own words to an admin without a ``servers`` list only), and
changes are refused with a 503 that says nothing was changed.  A real SQLite file made
unreadable (its bytes zeroed in place, as a failed disk leaves it, after a checkpoint
so the gateway's connection reads the file again) and a real PostgreSQL stopped; each
served over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import html
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway.admin.in_force import HIDDEN
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry, serve_http, until
from tests.pg import PgCluster
from tests.test_rest import AUTH, BOB, OPS, Api, assert_error
from tests.test_store_outage import own_cluster
from tests.test_ui import _login

pytestmark = pytest.mark.anyio
__all__ = ["own_cluster"]  # the fixture, used by name

Step = Callable[[], Awaitable[None]]
RULE = {"name": "beta-errors", "server": "beta", "metric": "success_rate",
        "threshold": 0.9, "window": "5m"}
IN_FORCE = "these are the route rules in force in this gateway, as it last read them"


def _checkpoint(db: Path) -> bool:
    """Another connection's checkpoint: the WAL emptied into the file and restarted, so
    the gateway's connection reads the file again (its page cache is dropped)."""
    with sqlite3.connect(db) as other:
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0


class Unreadable:
    """The SQLite file's bytes zeroed in place (a disk gone bad), then put back."""

    def __init__(self, db: Path) -> None:
        self.db, self.saved = db, b""

    async def away(self) -> None:
        await until(lambda: _checkpoint(self.db))
        self.saved = self.db.read_bytes()
        self.db.write_bytes(bytes(len(self.saved)))

    async def back(self) -> None:
        self.db.write_bytes(self.saved)
        await until(lambda: _checkpoint(self.db))


async def rules_while_the_store_is_away(tmp_path: Path, db: str, away: Step, back: Step,
                                        says: str) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha"), "beta": memory_entry("beta")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           options={"auth": AUTH}, db=db)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=60) as http:
        api = Api(http, base)
        made = await api("POST", "/routes", OPS, json={"pattern": "alpha_add",
                                                       "target": "beta"})
        assert made.status_code == 201, made.text
        added = await api("POST", "/alerts/rules", OPS, json=RULE)
        assert added.status_code in (200, 201), added.text
        stored = (await api("GET", "/routes", OPS)).json()
        assert stored.get("store_unreachable") is None and stored["routes"][0]["created_at"] > 0
        rid = stored["routes"][0]["id"]

        await away()
        listed = await api("GET", "/routes", OPS)
        assert listed.status_code == 200, listed.text  # was 503 store_unavailable
        body = listed.json()
        assert body["routes"] == stored["routes"]  # created_at too, as last read
        assert IN_FORCE in body["store_unreachable"] and says in body["store_unreachable"]
        hidden = (await api("GET", "/routes", BOB)).json()  # a token of scope tools only
        assert hidden["routes"] == stored["routes"]
        assert HIDDEN in hidden["store_unreachable"] and says not in hidden["store_unreachable"]
        rules = await api("GET", "/alerts/rules", OPS)
        assert rules.status_code == 200, rules.text
        assert [(v["rule"]["name"], v["source"]) for v in rules.json()["rules"]] == [
            ("beta-errors", "runtime")]
        assert "alert rules in force" in rules.json()["store_unreachable"]

        # Changes are refused, saying nothing was changed.
        for method, path, json in (
                ("POST", "/routes", {"pattern": "alpha_x", "target": "beta"}),
                ("PUT", f"/routes/{rid}", {"pattern": "alpha_y", "target": "beta"}),
                ("DELETE", f"/routes/{rid}", None),
                ("POST", "/alerts/rules", {**RULE, "name": "other"}),
                ("PUT", "/alerts/rules/beta-errors", {**RULE, "threshold": 0.5}),
                ("DELETE", "/alerts/rules/beta-errors", None)):
            refused = await api(method, path, OPS, json=json)
            message = assert_error(refused, 503, "store_unavailable")["message"]
            assert "rule was not changed: the store cannot be used now" in message, message
            assert says in message, message

        async with Client(f"{base}/mcp", auth=OPS) as host:
            tool = (await host.call_tool("gateway_list_routes", {})).structured_content
            assert tool["routes"] == stored["routes"] and IN_FORCE in tool["store_unreachable"]
            alert_rules = (await host.call_tool("gateway_alert_rules", {})).structured_content
            assert [v["rule"]["name"] for v in alert_rules["rules"]] == ["beta-errors"]
            assert alert_rules["store_unreachable"]

        await _login(http, base, OPS)
        page = await http.get(f"{base}/ui/routes")
        assert page.status_code == 200, page.text[-2000:]
        text = html.unescape(page.text)
        assert "alpha_add" in text and IN_FORCE in text
        alerts = await http.get(f"{base}/ui/alerts")
        assert alerts.status_code == 200, alerts.text[-2000:]
        text = html.unescape(alerts.text)
        assert 'data-rule="beta-errors"' in text and "alert rules in force" in text
        assert "The history cannot be read now" in text
        form = await http.post(f"{base}/ui/routes", data={
            "csrf_token": await _csrf(http, base), "action": "add", "pattern": "alpha_z",
            "target": "beta", "match": "exact", "priority": "0"})
        assert form.status_code == 503, form.text[-2000:]
        assert "the route rule was not changed" in html.unescape(form.text)

        await back()
        with anyio.fail_after(60):  # PostgreSQL's pool reconnects on its next use
            while (again := (await api("GET", "/routes", OPS)).json())[  # noqa: ASYNC110
                    "store_unreachable"]:  # no event tells it is back: the read is the test
                await anyio.sleep(0.05)
        assert again == stored  # read from the store again, nothing changed meanwhile


async def _csrf(http: httpx2.AsyncClient, base: str) -> str:
    from tests.test_ui import _csrf as csrf_of

    return csrf_of((await http.get(f"{base}/ui/routes")).text)


async def test_rules_are_listed_from_memory_while_the_sqlite_file_is_unreadable(
        tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    file = Unreadable(db)
    await rules_while_the_store_is_away(tmp_path, str(db), file.away, file.back,
                                        str(db))


async def test_rules_are_listed_from_memory_while_postgresql_is_stopped(
        own_cluster: PgCluster, tmp_path: Path) -> None:
    url = own_cluster.create_database()

    async def away() -> None:
        await anyio.to_thread.run_sync(own_cluster.stop)

    async def back() -> None:
        await anyio.to_thread.run_sync(own_cluster.start)

    await rules_while_the_store_is_away(tmp_path, url, away, back, "is unreachable")
