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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway.admin.in_force import HIDDEN
from fast_mcp_gateway.gateway import Gateway
from fast_mcp_gateway.store import Store
from fast_mcp_gateway.store.base import StoreUnavailable
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


@asynccontextmanager
async def _rest(tmp_path: Path) -> AsyncIterator[tuple[Gateway, httpx2.AsyncClient, Store]]:
    """A gateway on a real SQLite file over HTTP, an admin's REST client, its store."""
    gateway = make_gateway({"alpha": memory_entry("alpha"), "beta": memory_entry("beta")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           db=tmp_path / "g.db", options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(
            base_url=f"{base}/api/v1", timeout=60,
            headers={"Authorization": f"Bearer {OPS}"}) as rest:
        store = gateway.control.store
        assert store is not None
        yield gateway, rest, store


async def _gone() -> list[Any]:
    raise StoreUnavailable("the store is unreachable (the test's fault)")


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


async def test_an_alert_rule_written_just_before_the_store_goes_is_answered_and_in_force(
        tmp_path: Path) -> None:
    """The store went away between an alert rule's write and the engine's re-read of the
    rules: the rule was stored and audited, but the answer was a 500 (``StopIteration``:
    the engine held the old rules, without it), the rule not in force here until the
    store answered, and the add repeated was a 409.  Now the written rule is held in
    force at once, and answered 201; a delete likewise.  The instant cannot be timed
    from outside: the store's read of the rules fails from the write on (a fault put in
    the real SQLite store's method, the gateway otherwise real, over HTTP)."""
    async with _rest(tmp_path) as (_, rest, store):
        put, delete, read = store.put_alert_rule, store.delete_alert_rule, store.alert_rules

        async def put_then_go(name: str, config: dict[str, Any] | None) -> None:
            await put(name, config)
            store.alert_rules = _gone  # type: ignore[method-assign]

        async def delete_then_go(name: str) -> bool:
            deleted = await delete(name)
            store.alert_rules = _gone  # type: ignore[method-assign]
            return deleted

        store.put_alert_rule = put_then_go  # type: ignore[method-assign]
        store.delete_alert_rule = delete_then_go  # type: ignore[method-assign]
        added = await rest.post("/alerts/rules", json=RULE)
        assert added.status_code == 201, added.text
        assert added.json()["rule"]["name"] == "beta-errors"
        listed = (await rest.get("/alerts/rules")).json()
        assert "the store cannot be read" in listed["store_unreachable"]
        assert [r["rule"]["name"] for r in listed["rules"]] == ["beta-errors"]  # in force
        store.alert_rules = read  # type: ignore[method-assign]
        deleting = await rest.delete("/alerts/rules/beta-errors")
        assert deleting.status_code == 200, deleting.text
        listed = (await rest.get("/alerts/rules")).json()
        assert listed["rules"] == [] and listed["store_unreachable"] is not None
        store.alert_rules = read  # type: ignore[method-assign]
        assert (await rest.get("/alerts/rules")).json() == {"rules": [],
                                                             "store_unreachable": None}


async def test_a_route_rule_written_just_before_the_store_goes_is_in_force_and_audited(
        tmp_path: Path) -> None:
    """The same for a route rule: stored, then the re-read failed: the add answered 503
    (the store's error, as for a change not made), the rule not in force here and not
    audited, and the add made again stored a second rule.  Now it is in force at once
    (the table in force with the change made), audited and answered 201; a delete
    likewise."""
    async with _rest(tmp_path) as (gateway, rest, store):
        add, delete, read = store.add_route, store.delete_route, store.routes

        async def add_then_go(*args: Any) -> int:
            added = await add(*args)
            store.routes = _gone  # type: ignore[method-assign]
            return added

        async def delete_then_go(route_id: int) -> bool:
            deleted = await delete(route_id)
            store.routes = _gone  # type: ignore[method-assign]
            return deleted

        store.add_route, store.delete_route = add_then_go, delete_then_go  # type: ignore[method-assign]
        added = await rest.post("/routes", json={"pattern": "alpha_add", "target": "beta"})
        assert added.status_code == 201, added.text
        rule = added.json()
        assert (rule["pattern"], rule["target"]) == ("alpha_add", "beta")
        listed = (await rest.get("/routes")).json()
        assert IN_FORCE in listed["store_unreachable"] and listed["routes"] == [rule]
        assert [(r.id, r.target) for r in gateway.control.routes.routes] == [
            (rule["id"], "beta")]  # in the call path
        store.routes = read  # type: ignore[method-assign]
        stored = (await rest.get("/routes")).json()["routes"]  # one (its time as stored)
        assert [{**r, "created_at": None} for r in stored] == [{**rule, "created_at": None}]
        deleting = await rest.delete(f"/routes/{rule['id']}")
        assert deleting.status_code == 200, deleting.text
        assert gateway.control.routes.routes == []
        store.routes = read  # type: ignore[method-assign]
        assert await store.routes() == []
        audited = [(e.action, e.target) for e in await store.audit(limit=20)
                   if e.action.endswith("_route")]
        assert sorted(audited) == [("add_route", "alpha_add"), ("delete_route", str(rule["id"]))]


async def test_a_route_written_meanwhile_stays_in_force_when_an_earlier_reread_fails(
        tmp_path: Path) -> None:
    """Two adds at once: the first's re-read of the rules waits, the second's answers
    with both rules, then the first's fails (the store gone).  The first put its rule in
    force in the table read before its read (without the second's rule): the second
    rule, stored and answered 201, was out of the call path until the next change."""
    async with _rest(tmp_path) as (gateway, rest, store):
        read, reading, fail = store.routes, anyio.Event(), anyio.Event()

        async def first_fails() -> list[Any]:
            store.routes = read  # type: ignore[method-assign]  # the next read answers
            reading.set()
            await fail.wait()
            raise StoreUnavailable("the store is unreachable (the test's fault)")

        store.routes = first_fails  # type: ignore[method-assign]
        answers: list[httpx2.Response] = []

        async def add(pattern: str) -> None:
            answers.append(await rest.post("/routes", json={"pattern": pattern,
                                                            "target": "beta"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(add, "alpha_add")
            await reading.wait()
            await add("alpha_x")  # its read answers: both rules
            fail.set()
        assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
        assert sorted(r.pattern for r in await read()) == ["alpha_add", "alpha_x"]
        assert sorted(r.pattern for r in gateway.control.routes.routes) == [
            "alpha_add", "alpha_x"]


async def test_an_alert_rule_held_stays_when_an_evaluation_read_the_rules_before_it(
        tmp_path: Path) -> None:
    """An evaluation's read of the rules (made before an add's write, answered after the
    engine held the written rule) replaced the held rules with what it read: the rule
    went out of force, and with the store gone for the add's own evaluation, the add
    answered 500 (``StopIteration``), the stored rule in force nowhere here."""
    async with _rest(tmp_path) as (gateway, rest, store):
        engine = gateway.control.alerts
        assert engine is not None
        put, read = store.put_alert_rule, store.alert_rules
        stale, release = anyio.Event(), anyio.Event()

        async def read_before() -> list[Any]:
            rows = await read()  # before the add's write
            store.alert_rules = read  # type: ignore[method-assign]  # the add's own reads
            stale.set()
            await release.wait()
            return rows

        async def put_then_go(name: str, config: dict[str, Any] | None) -> None:
            await put(name, config)
            store.alert_rules = _gone  # type: ignore[method-assign]

        store.alert_rules = read_before  # type: ignore[method-assign]
        store.put_alert_rule = put_then_go  # type: ignore[method-assign]
        answers: list[httpx2.Response] = []

        async def add() -> None:
            answers.append(await rest.post("/alerts/rules", json=RULE))

        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.evaluate)
            await stale.wait()
            tg.start_soon(add)
            await until(lambda: any(r.name == RULE["name"] for r, _ in engine.rules()))
            release.set()
        assert answers[0].status_code == 201, answers[0].text
        assert [r.name for r, _ in engine.rules()] == [RULE["name"]]
        store.alert_rules = read  # type: ignore[method-assign]
        assert [r.name for r in await read()] == [RULE["name"]]
