"""Defects found trying the scale-out half as a team operator would (session 19).

Several gateways on one PostgreSQL: each test reproduces one finding over real HTTP on
127.0.0.1 with the demo upstreams as real stdio subprocesses and a real PostgreSQL of
its own (the test stops and starts it); each failed on the code it was written against.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client, Context, FastMCP

from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.cli.main import main
from fast_mcp_gateway.config.alerts import AlertsConfig
from fast_mcp_gateway.store import (
    ChangeBatch,
    Invocation,
    MemoryStore,
    StorageError,
    StoreUnavailable,
    open_store,
)
from tests.fixtures import (
    alpha_server,
    beta_server,
    make_gateway,
    memory_entry,
    serve_http,
    until,
)
from tests.pg import PgCluster, free_port, running_cluster
from tests.test_request_state import KEY, served
from tests.test_rest import demo
from tests.test_tasks import ALICE, ALICE_SHA, post

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server of this test's own: the test stops it."""
    with running_cluster() as cluster:
        yield cluster


async def test_ready_says_degraded_while_the_store_is_unreachable(
        own_cluster: PgCluster) -> None:
    """With PostgreSQL stopped, calls were served (good) and every store-backed REST
    endpoint answered 503 store_unavailable, but /ready kept answering 200 "ready",
    "2 of 2 upstream servers ready": a probe or an operator looking at it saw nothing
    wrong.  It stays 200 (the gateway serves calls: a balancer must not drop every
    instance because the shared database is away) and says "degraded", naming the store
    -- not its address: /ready needs no token."""
    url = own_cluster.create_database()
    gateway = make_gateway({"notes": demo("notes")}, db=url)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        ready = await http.get(f"{base}/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        assert "store" not in ready.json()

        await anyio.to_thread.run_sync(own_cluster.stop)
        await until(lambda: gateway.control.store_lost, 120)  # the feed's first failure
        degraded = await http.get(f"{base}/ready")
        assert degraded.status_code == 200, degraded.text
        body = degraded.json()
        assert (body["status"], body["store"]) == ("degraded", "unreachable"), body
        assert "the store cannot be reached" in body["reason"]
        assert "503" in body["reason"]  # what answers what, meanwhile
        assert str(own_cluster.port) not in degraded.text  # no address to a probe

        await anyio.to_thread.run_sync(own_cluster.start)
        await until(lambda: not gateway.control.store_lost, 120)
        back = await http.get(f"{base}/ready")
        assert back.status_code == 200 and back.json()["status"] == "ready", back.text
        assert "store" not in back.json()


class AwayOnce(MemoryStore):
    """A store whose change feed is unreachable once, then answers (and notes how long
    each long poll was asked to wait); shared, as PostgreSQL is."""

    shared = True

    def __init__(self) -> None:
        super().__init__()
        self.away = True
        self.waits: list[float] = []

    async def changes(self, since: int = 0, *, wait: float = 0.0) -> ChangeBatch:
        if self.away:
            self.away = False
            raise StoreUnavailable("PostgreSQL at gw@127.0.0.1:5432/gw is unreachable")
        self.waits.append(wait)
        return await super().changes(since, wait=wait)


async def test_the_change_feed_says_the_store_is_back_as_soon_as_it_answers() -> None:
    """PostgreSQL back: the recorder wrote its held records at once, but every gateway's
    change feed logged "the store is back; reconciling" 5-6 s later (and
    `mcp_gateway_store_up` stayed 0, /ready degraded, meanwhile): its first read after
    the outage was a long poll, which waits for a change -- or 5 s -- before the feed
    counts the store as back and reconciles."""
    gateway = make_gateway({})
    control = gateway.control
    store = AwayOnce()
    control.store = store
    async with anyio.create_task_group() as group:
        await group.start(control.follow_changes)
        await until(lambda: store.waits)
        assert store.waits[0] == 0, store.waits  # a read, not a wait for a change
        await until(lambda: not control.store_lost, 2)
        group.cancel_scope.cancel()


def serve_with(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``mcp-gateway serve`` on ``db``, which must stop it: its stderr."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    code = main(["serve", "--config", str(config), "--transport", "http", "--port",
                 str(free_port()), "--db", db, "--instance-id", "gw-1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "s3cret" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("query", "said"), [
    (":5432x/gateway", "the port in the URL is not a number ('5432x')"),
    (":5432/gateway?sslmode=bogus", "`sslmode` parameter must be one of"),
])
def test_a_database_url_the_driver_cannot_use_is_named_as_such(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], query: str, said: str) -> None:
    """A typo in the URL was "cannot connect: invalid literal for int() with base 10:
    '5432x'" (no fix named), or, for a bad query option, "is unreachable (...); is the
    server running and the address right?" -- about a server nobody tried to reach."""
    err = serve_with(f"postgresql://gw:s3cret@127.0.0.1{query}", tmp_path, capsys)
    assert said in err, err
    assert "unreachable" not in err and "is the server running" not in err, err
    assert "fix the URL: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB" in err, err


def test_sslmode_require_against_a_server_without_ssl_says_so(
        pg_cluster: PgCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``?sslmode=require`` on a server without SSL was "is unreachable (PostgreSQL server
    at ... rejected SSL upgrade); is the server running and the address right?": it
    runs, at that address; what to change is the sslmode or the server's ssl setting."""
    url = pg_cluster.url().replace("postgres@", "postgres:s3cret@") + "?sslmode=require"
    err = serve_with(url, tmp_path, capsys)
    assert "does not accept SSL" in err and "sslmode" in err, err
    assert "is the server running" not in err, err


@pytest.mark.parametrize("password", ["s3c/ret9", "s3c#ret9", "s3c?ret9", "s3c@ret9",
                                      "s3c@ret/9", "s3c@ret?9", "s3c@ret#9"])
def test_a_password_with_a_reserved_character_never_shows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], password: str) -> None:
    """A generated password holding '/', '#', '?' or '@', pasted into the URL without
    percent-encoding, split the URL elsewhere: "PostgreSQL at gw/ret9@127.0.0.1:5432/
    gateway: cannot connect: invalid literal for int() with base 10: 's3c'" printed both
    halves of it (for '@', asyncpg looked the half up in DNS as a host name).  One holding
    an '@' and then a '/', '?' or '#' still did ("PostgreSQL at gw@ret/9@127.0.0.1...:
    host 'ret' does not exist"): its '@' made the address part look whole."""
    err = serve_with(f"postgresql://gw:{password}@127.0.0.1:5432/gateway", tmp_path, capsys)
    assert "s3c" not in err and "ret9" not in err, err
    assert "percent-encode it" in err, err


async def test_health_history_and_audit_name_the_gateway_of_each_row(pg_url: str) -> None:
    """Each gateway runs its own upstreams and writes their transitions into the shared
    health history: gw-3 stopping (a restart, a test run against production's database)
    read "alpha: ready -> stopped" on every gateway, with nothing saying whose alpha --
    the operator could not tell one instance's trouble from the fleet's.  The audit log
    alike: a reload by one gateway's file watcher or SIGHUP (actors ``config-file``,
    ``signal:SIGHUP``) is that instance's own, and three identical rows said nothing of
    which.  Call records name their instance; these now do too."""
    one = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                       db=pg_url, instance_id="gw-1")
    two = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                       db=pg_url, instance_id="gw-2")
    async with Client(one.server) as host_one:
        async with Client(two.server) as host_two:
            await host_two.call_tool("gateway_reconnect_server", {"name": "alpha"})
        assert two.control.store is None  # gw-2 stopped: its transitions are written
        await host_one.call_tool("gateway_reconnect_server", {"name": "alpha"})
        history = (await host_one.call_tool("gateway_health_history",
                                            {"name": "alpha", "limit": 100})).data
        stopped = [r for r in history["records"] if r["status"] == "stopped"]
        assert stopped and {r["instance_id"] for r in stopped} == {"gw-2"}, history
        assert {r["instance_id"] for r in history["records"]} == {"gw-1", "gw-2"}
        audit = (await host_one.call_tool("gateway_audit", {"limit": 10})).data
        assert sorted(e["instance_id"] for e in audit["entries"]
                      if e["action"] == "reconnect_server") == ["gw-1", "gw-2"], audit


async def test_a_call_a_broken_route_refuses_is_recorded_as_rejected(tmp_path: Path) -> None:
    """A rule sending a tool to a server without it (a rule made through one gateway,
    checked by the hosts of another) answered the host "route #1 ... which has no tool
    'wipe'", but the call left no record: gateway_calls, the statistics and the other
    gateways' logs never showed that hosts were being refused.  README: `rejected` is a
    call "never sent (refused by a rule ...)"."""
    gateway = make_gateway({"alpha": memory_entry("alpha"), "beta": memory_entry("beta")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as host:
        await host.call_tool("gateway_add_route", {"pattern": "alpha_wipe", "target": "beta"})
        refused = await host.call_tool_mcp("alpha_wipe", {})
        assert refused.is_error and "has no tool 'wipe'" in str(refused.content)
        assert gateway.recorder is not None and await gateway.recorder.flushed(20)
        calls = (await host.call_tool("gateway_calls", {"tool": "alpha_wipe"})).data.calls
        assert [(c.status, c.server) for c in calls] == [("rejected", "alpha")], calls
        assert "has no tool 'wipe'" in (calls[0].error or "")


async def test_mcp_gateway_logs_names_the_instance_of_each_call_on_a_shared_store(
        pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """README: "each record names its instance"; `mcp-gateway logs` on the shared
    database printed every gateway's calls in one table with no column saying which
    gateway served which (only --json had it): the first thing to ask of a failing call
    when three gateways serve behind a balancer."""
    store = await open_store(pg_url)
    try:
        await store.add_invocations([Invocation(
            id=f"id-{n}", trace_id=f"t{n}", client="ops", kind="tool", exposed="clock_add",
            server="clock", original="add", started_at=time.time() - 10 + n, duration_ms=1.0,
            status="success", instance_id=f"gw-{n}") for n in (1, 2)])
    finally:
        await store.close()
    assert await anyio.to_thread.run_sync(main, ["logs", "--db", pg_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "instance" in lines[0].split(), lines
    assert ["gw-1" in lines[2], "gw-2" in lines[3]] == [True, True], lines  # oldest first


async def test_a_stop_with_an_unreachable_store_says_so(
        own_cluster: PgCluster, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """SIGTERM with PostgreSQL down: "received SIGTERM: stopping", then nothing for 30 s
    (the shutdown flush budget, spent waiting for the store to take the held records),
    then "call log closed: ... 5 dropped": an operator (or an orchestrator's 30 s grace
    period) saw a gateway hanging with no word of why, or of how to shorten it.  It
    does not wait now: the held records are spilled (tests/test_store_outage.py), and
    the one line says so, how many and where."""
    url = own_cluster.create_database()
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=url, spool_dir=tmp_path / "spool")
    async with Client(gateway.server) as host:
        await anyio.to_thread.run_sync(own_cluster.stop)
        await host.call_tool("alpha_add", {"a": 1, "b": 2})
        recorder = gateway.recorder
        assert recorder is not None
        await until(lambda: recorder.store_unavailable, 120)
    said = [r.getMessage() for r in caplog.records if "stopping:" in r.getMessage()]
    assert said, [r.getMessage() for r in caplog.records]
    assert "the store is unreachable" in said[0]
    assert "spilled 1 call record(s) and " in said[0], said  # and alpha's transitions
    assert f" to {tmp_path / 'spool'}" in said[0], said


async def test_two_gateways_given_one_instance_id_are_told_and_released(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A copied unit file started a second gateway with --instance-id gw-B: nothing was
    said, both held the alerts lease (it is held by instance id: both "leading", each
    posting every webhook and history row), and their records could not be told apart."""
    first = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                         db=pg_url, instance_id="gw-B")
    second = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                          db=pg_url, instance_id="gw-B")
    async with Client(first.server):
        async with Client(second.server):
            await until(lambda: any("--instance-id gw-B" in r.getMessage()
                                    for r in caplog.records), 30)
        said = next(r for r in caplog.records if "--instance-id gw-B" in r.getMessage())
        assert said.levelname == "WARNING" and said.name.startswith("fast_mcp_gateway")
        text = said.getMessage()
        assert "another gateway runs with --instance-id gw-B" in text
        assert f"pid {os.getpid()}" in text  # which process holds it
        assert "give every gateway its own --instance-id" in text
    store = await open_store(pg_url)
    try:
        assert await store.lease("instance:gw-B") is None  # released at a clean stop
    finally:
        await store.close()


async def test_a_database_out_of_connections_is_named_and_retried(
        pg_cluster: PgCluster) -> None:
    """Gateways on a role (or a server) out of connections: REST answered 503 "PostgreSQL
    at ...: failed: too many connections for role ..." (no fix named, nor how many a
    gateway takes), and the error was not one the recorder and the change feed wait out
    as an outage: it is transient (another gateway's burst), so it is one now."""
    pg_cluster.psql("CREATE ROLE tight LOGIN CONNECTION LIMIT 1")
    pg_cluster.psql("CREATE DATABASE tight_db OWNER tight")
    url = pg_cluster.url("tight_db").replace("postgres@", "tight@")
    first = await open_store(url)  # its pool holds the role's one connection
    try:
        with pytest.raises(StoreUnavailable) as refused:
            await open_store(url)
    finally:
        await first.close()
    said = str(refused.value)
    assert "too many connections for role" in said, said
    assert "CONNECTION LIMIT" in said and "max_connections" in said, said
    assert "up to 6" in said, said  # what one gateway takes


async def test_the_dashboards_call_page_names_the_gateway_that_served_it(
        tmp_path: Path) -> None:
    """The dashboard's call page (linked from Logs) listed id, trace, client, replica,
    route... but not which gateway served the call, the one thing a shared log needs to
    send an operator to the right instance's own log and processes; nor did the health
    history and audit tables say whose row each was."""
    from tests.test_ui import AUTH as UI_AUTH
    from tests.test_ui import OPS as UI_OPS
    from tests.test_ui import _login

    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options={"auth": UI_AUTH}, db=tmp_path / "g.db",
                           instance_id="gw-7")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=60) as http:
        async with Client(f"{base}/mcp", auth=UI_OPS) as host:
            await host.call_tool("alpha_add", {"a": 1, "b": 2})
        assert gateway.recorder is not None and await gateway.recorder.flushed(20)
        await _login(http, base, UI_OPS)
        logs = (await http.get(base + "/ui/logs?server=alpha")).text
        link = re.search(r'href="(/ui/calls/[^"]+)"', logs)
        assert link, logs[:2000]
        page = (await http.get(base + html.unescape(link.group(1)))).text
        assert re.search(r'<dd id="call-instance"><code>gw-7</code></dd>', page), page
        # The health history and the audit log say whose row each is, as the API does.
        health = (await http.get(base + "/ui/logs?tab=health")).text
        assert "<th scope=\"col\">Gateway</th>" in health and "<td>gw-7</td>" in health
        await http.post(base + "/api/v1/servers/alpha/restart",
                        headers={"Authorization": f"Bearer {UI_OPS}"})
        audit = (await http.get(base + "/ui/logs?tab=audit")).text
        assert "<th scope=\"col\">Gateway</th>" in audit and "<td>gw-7</td>" in audit


async def test_a_role_without_rights_on_the_database_is_told_how_to_grant_them(
        pg_cluster: PgCluster) -> None:
    """A login role given a database it does not own (PostgreSQL 15: no CREATE on its
    public schema): "cannot migrate: permission denied for schema public", no fix."""
    pg_cluster.psql("CREATE ROLE visitor LOGIN")
    url = pg_cluster.create_database("perm").replace("postgres@", "visitor@")
    with pytest.raises(StorageError) as refused:
        await open_store(url)
    said = str(refused.value)
    assert "permission denied for schema public" in said, said
    assert "ALTER DATABASE" in said and "OWNER TO visitor" in said, said


@pytest.mark.parametrize(("instance", "said"), [
    ("", "is empty"),
    ("gw-1\n2026-11-30 00:00:00 INFO forged line", "control character"),
    ("g" * 300, "at most 128 characters"),
])
def test_an_unusable_instance_id_is_refused_saying_how_to_name_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], instance: str, said: str) -> None:
    """``--instance-id ""`` said "String should have at least 1 character" (pydantic's
    words, no fix); a newline was taken into every record, audit row and log line naming
    the instance (a forged log line), and 300 characters were taken too."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    code = main(["serve", "--config", str(config), "--transport", "http", "--port",
                 str(free_port()), "--db", str(tmp_path / "g.db"), "--instance-id", instance])
    err = capsys.readouterr().err
    assert code == 2, err
    assert said in err and "e.g. gw-1" in err and "leave --instance-id out" in err, err
    assert "\n2026-11-30" not in err and "Value error" not in err, err  # one line, its words


def test_a_url_whose_password_reads_as_its_port_is_refused_without_showing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``postgresql://gw:s3cret/gateway`` (its '@HOST' left out) reads the password as
    the port: "the port in the URL is not a number ('s3cret')" showed it."""
    err = serve_with("postgresql://gw:s3cret/gateway", tmp_path, capsys)
    assert "not a port number" in err and "USER:PASSWORD@HOST" in err, err


def pushing_upstream() -> FastMCP[Any]:
    """A FastMCP tool that asks with ``ctx.elicit()``: a handshake-era push."""
    mcp = FastMCP("asker")

    @mcp.tool
    async def ask(ctx: Context) -> str:
        answer = await ctx.elicit("Your name?", response_type=str)
        return f"hello {getattr(answer, 'data', None)}"

    return mcp


async def test_a_round_reaching_another_instance_names_the_one_holding_the_question(
        ) -> None:
    """Three gateways with shared request_state_keys behind nginx, round-robin: every
    `ctx.elicit()` of a FastMCP upstream (handshake era under `protocol: auto`) asked of
    a 2026-07-28 host failed at its second round (12 of 12), each saying "the requestState
    names a question this gateway does not hold (it expired, the gateway restarted, or
    another gateway instance asked it)": nothing told the operator which instance held
    it, nor the balancer's fix.  Each token now carries the instance that asked."""
    upstream = pushing_upstream()
    auth = {"tokens": [{"name": "alice", "sha256": ALICE_SHA, "scopes": ["tools"]}]}
    first, second = (make_gateway({"asker": memory_entry("asker", protocol="legacy")},
                                  {"asker": upstream}, request_state_keys=[KEY],
                                  instance_id=name, options={"auth": auth})
                     for name in ("gw-a", "gw-b"))
    asking = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    async with served(first, second) as (to_a, to_b):
        asked = (await post(to_a, ALICE, "tools/call", {"name": "asker_ask"},
                            asking))["result"]
        assert asked["resultType"] == "input_required", asked
        ((key, _),) = asked["inputRequests"].items()
        answer = {"name": "asker_ask", "requestState": asked["requestState"],
                  "inputResponses": {key: {"action": "accept", "content": {"value": "Ada"}}}}
        elsewhere = await post(to_b, ALICE, "tools/call", answer, asking)
        text = json.dumps(elsewhere)
        assert "the gateway instance 'gw-a' asked, not this one ('gw-b')" in text, text
        assert "keep each host on one instance" in text and "asked it during the call" in text
        here = (await post(to_a, ALICE, "tools/call", answer, asking))["result"]
        assert here["content"][0]["text"] == "hello Ada", here


async def test_a_login_posted_to_another_instance_says_so(tmp_path: Path) -> None:
    """The dashboard's login behind nginx round-robin over three gateways: the form came
    from one instance and its POST reached another, which answered "The form's security
    token is stale: try again." -- every time (each try is a new GET and a new POST),
    and nothing said why.  The form's token now tells instances apart (a tag, not the
    instance's name: the form is served to anyone), and the refusal says what to fix."""
    from tests.test_ui import AUTH as UI_AUTH
    from tests.test_ui import OPS as UI_OPS
    from tests.test_ui import _csrf

    first, second = (make_gateway({}, options={"auth": UI_AUTH}, instance_id=name)
                     for name in ("gw-a", "gw-b"))
    async with serve_http(first.http_app()) as a, serve_http(second.http_app()) as b, \
            httpx2.AsyncClient(timeout=60) as http:
        form = _csrf((await http.get(a + "/ui/login")).text)
        login = {"token": UI_OPS, "csrf_token": form, "next": "/ui/"}
        elsewhere = await http.post(b + "/ui/login", data=login)
        assert elsewhere.status_code == 403, elsewhere.text
        text = html.unescape(elsewhere.text)
        assert "served by another gateway instance than the one your login reached" in text
        assert "keep each browser on one instance" in text and "gw-a" not in text
        stale = await http.post(a + "/ui/login", data={**login, "csrf_token": "0" * 40})
        assert "security token is stale" in html.unescape(stale.text), stale.text
        here = await http.post(a + "/ui/login", data=login)
        assert here.status_code == 303, here.text


async def test_an_alert_that_fired_while_the_lease_holder_was_dead_is_posted_once(
        pg_url: str) -> None:
    """Three gateways, the alerts lease holder killed -9: an alert fired on the others
    within its lease's last 30 s (each log said FIRING) and no webhook ever came, nor a
    history row -- the gateway that took the lease over announced only what fired after.
    Now the one taking it over announces what the history lacks, once: a firing it saw
    while the dead one held the lease, and a resolve likewise."""
    from tests.alerting import webhook_receiver

    a_store, b_store = await open_store(pg_url), await open_store(pg_url)
    failing = "consecutive_failures >= 2"

    async def calls(status: str, n: int) -> None:
        now = time.time()
        await b_store.add_invocations([Invocation(
            id=f"{status}{now}{i}", trace_id="t", client="stdio", kind="tool",
            exposed="svc_work", server="svc", original="work", started_at=now + i / 1000,
            duration_ms=5.0, status=status, error=None) for i in range(n)])

    try:
        with webhook_receiver() as receiver:
            config = AlertsConfig.model_validate({
                "webhook": {"url": receiver.url, "attempts": 1},
                "rules": [{"name": "failing", "when": failing}]})
            stores = {"gw-a": a_store, "gw-b": b_store}
            a, b = (AlertEngine(lambda: config, lambda: {"svc": "ready"},
                                lambda name=name: stores[name], instance_id=name)
                    for name in ("gw-a", "gw-b"))
            async with anyio.create_task_group() as tg:
                await tg.start(b.webhook.run)
                assert await a.evaluate() == [] and await b.evaluate() == []
                assert (a.leading, b.leading) == (True, False)
                await a_store.close()  # a is killed: its lease runs on
                await calls("error", 3)
                assert [t.state for t in await b.evaluate()] == ["firing"]  # b sees it
                await b_store.hold_lease("alerts", "gw-a", -1)  # a's lease ran out
                await b.evaluate()
                assert b.leading and await b.webhook.idle(60)
                posted = [(p["state"], p["gateway"]) for p in receiver.bodies()]
                assert posted == [("firing", "gw-b")], posted
                assert [(e.rule, e.state) for e in await b_store.alert_events()] == [
                    ("failing", "firing")]
                await b.evaluate()  # not again
                assert await b.webhook.idle(60) and len(receiver.bodies()) == 1

                # b dies in turn; a (back) saw the alert resolve meanwhile, and says so.
                a_store = stores["gw-a"] = await open_store(pg_url)
                a.leading = False
                await b_store.hold_lease("alerts", "gw-b", 60)
                await tg.start(a.webhook.run)
                await calls("success", 3)
                await a.evaluate()
                assert not a.leading and ("failing", "svc") not in a.alerts.active
                await b_store.hold_lease("alerts", "gw-b", -1)
                await a.evaluate()
                assert a.leading and await a.webhook.idle(60)
                assert [p["state"] for p in receiver.bodies()] == ["firing", "resolved"]
                assert [e.state for e in await b_store.alert_events()] == [
                    "resolved", "firing"]
                tg.cancel_scope.cancel()
    finally:
        await b_store.close()
        await a_store.close()
