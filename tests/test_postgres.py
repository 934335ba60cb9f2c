"""Several gateways on one real PostgreSQL: migrations once, one configuration, one log,
and a database outage survived.  (The store contract itself runs against PostgreSQL in
test_store_contract.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import Gateway, GatewaySettings
from fast_mcp_gateway.cli.main import main
from fast_mcp_gateway.config.registrations import TOMBSTONE
from fast_mcp_gateway.store import Invocation, StoreUnavailable, open_store
from fast_mcp_gateway.store import postgres_schema as schema
from fast_mcp_gateway.store.postgres import PostgresStore
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry
from tests.pg import PgCluster, free_port, running_cluster

pytestmark = pytest.mark.anyio


class _ToolsChanged(MessageHandler):
    """Counts ``tools/list_changed`` notifications; ``wait_for(n)`` waits for the n-th."""

    def __init__(self) -> None:
        self.count = 0
        self._signal = anyio.Event()

    async def on_tool_list_changed(self, message: object) -> None:
        self.count += 1
        signal, self._signal = self._signal, anyio.Event()
        signal.set()

    async def wait_for(self, count: int) -> None:
        while self.count < count:
            await self._signal.wait()


async def tool_names(client: Client[Any]) -> set[str]:
    return {t.name for t in await client.list_tools()}


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A server of the test's own: the test stops and restarts it."""
    with running_cluster() as cluster:
        yield cluster


async def test_instances_starting_together_migrate_once(pg_url: str) -> None:
    stores: list[PostgresStore] = []

    async def start() -> None:
        store = await open_store(pg_url)
        assert isinstance(store, PostgresStore)
        stores.append(store)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(start)
    try:
        assert [await s.schema_version() for s in stores] == [schema.SCHEMA_VERSION] * 4
        async with stores[0]._conn() as conn:
            applied = await conn.fetch("SELECT version FROM gateway_schema ORDER BY version")
        assert [r[0] for r in applied] == [v for v, _ in schema.MIGRATIONS]
    finally:
        for store in stores:
            await store.close()


async def test_the_gateways_connections_are_named_for_a_dba(pg_url: str) -> None:
    """pg_stat_activity tells the gateway's connections apart from others (and its change
    feed's from its pool's); a URL naming an application_name keeps it."""
    store = await open_store(pg_url)
    named = await open_store(pg_url + "?application_name=team-gw")
    assert isinstance(store, PostgresStore) and isinstance(named, PostgresStore)
    try:
        async with store._conn() as conn:
            names = {r[0] for r in await conn.fetch(
                "SELECT application_name FROM pg_stat_activity WHERE datname = "
                "current_database()")}
        assert "fast-mcp-gateway" in names and "team-gw" in names, names
    finally:
        await store.close()
        await named.close()


class HoldingProxy:
    """A TCP relay to PostgreSQL that, when the server closes a connection, keeps the
    client's side open: the client has read the server's last words ("terminating
    connection ...") and not yet its close, as when a database stops while a pooled
    connection sits idle (a window the kernel usually closes within microseconds)."""

    def __init__(self, port: int) -> None:
        self.port, self.listen_port = port, 0
        self.server_closed = anyio.Event()
        self.holding = True  # False: a close is passed on, as a plain relay would

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.listen_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started()
        await listener.serve(self._relay)

    async def _relay(self, client: Any) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.port) as server, \
                anyio.create_task_group() as tg:

            async def down() -> None:
                with contextlib.suppress(anyio.BrokenResourceError):
                    async for chunk in server:
                        await client.send(chunk)
                self.server_closed.set()
                if not self.holding:
                    tg.cancel_scope.cancel()

            tg.start_soon(down)
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                async for chunk in client:
                    with contextlib.suppress(anyio.BrokenResourceError):
                        await server.send(chunk)
            tg.cancel_scope.cancel()  # the client closed its side


async def test_a_connection_the_server_dropped_is_an_outage_in_words_and_heals(
        pg_cluster: PgCluster, pg_url: str) -> None:
    """The database ended a pooled connection while it was idle: asyncpg's next use of
    it failed with its internal "cannot switch to state 12; another operation (2) is in
    progress", which the change feed logged as is and which no retry took for an outage.
    It is the store's ``StoreUnavailable`` in plain words (one line), and the next use
    gets a fresh connection."""
    proxy = HoldingProxy(pg_cluster.port)
    database = pg_url.rsplit("/", 1)[1]
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        store = await open_store(pg_cluster.url(database).replace(
            f":{pg_cluster.port}/", f":{proxy.listen_port}/"))
        assert isinstance(store, PostgresStore)
        try:
            cursor = (await store.changes()).cursor
            await anyio.to_thread.run_sync(pg_cluster.psql, (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                f"'{database}' AND pid <> pg_backend_pid()"))
            with anyio.fail_after(30):
                await proxy.server_closed.wait()
            await anyio.wait_all_tasks_blocked()  # the pooled connection read its last words
            with pytest.raises(StoreUnavailable) as lost:
                await store.changes(cursor)
            proxy.holding = False
            message = str(lost.value)
            assert "the server closed the connection" in message, message
            assert "state 12" not in message and "\n" not in message, message
            assert (await store.changes(cursor)).complete  # a fresh connection
        finally:
            await store.close()
            tg.cancel_scope.cancel()


async def test_a_newer_schema_is_refused_by_name(pg_url: str) -> None:
    store = await open_store(pg_url)
    assert isinstance(store, PostgresStore)
    async with store._conn() as conn:
        await conn.execute("INSERT INTO gateway_schema VALUES (99, 0)")
    await store.close()
    with pytest.raises(Exception, match="schema version 99 is newer than this gateway"):
        await open_store(pg_url)


@pytest.mark.parametrize("claim", [True, False])
async def test_a_rolling_upgrade_keeps_older_gateways_when_the_migration_says_so(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        claim: bool) -> None:
    """A newer build's migration that only adds (a column, a table) marks the database
    usable by this build's gateways: one restarted mid-upgrade comes back (with a
    warning) and its records still read back; without the mark it is refused, saying
    which gateways may use it."""
    ours, future = schema.SCHEMA_VERSION, schema.SCHEMA_VERSION + 1
    with monkeypatch.context() as newer:  # the next release, migrating first
        newer.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, (future, """
            ALTER TABLE invocations ADD COLUMN cost DOUBLE PRECISION;
            CREATE TABLE budgets (server TEXT PRIMARY KEY, per_day DOUBLE PRECISION);
            """)])
        newer.setattr(schema, "SCHEMA_VERSION", future)
        newer.setattr(schema, "READABLE_FROM", {future: ours} if claim else {})
        await (await open_store(pg_url)).close()
    if not claim:
        with pytest.raises(Exception, match=rf"schema version {future} is newer than this "
                                            rf"gateway understands \({ours}\) \(gateways "
                                            rf"from schema {future} on may use it\)"):
            await open_store(pg_url)
        return
    store = await open_store(pg_url)  # this build, restarted mid-upgrade
    try:
        assert f"marked it usable from version {ours}" in caplog.text
        record = Invocation(id="r1", trace_id="t", client="c", kind="tool", exposed="a_x",
                            server="a", original="x", started_at=1.0, duration_ms=2.0,
                            status="success")
        await store.add_invocations([record])
        assert (await store.invocations())[0] == [record]
    finally:
        await store.close()


async def test_a_version_9_database_with_audit_entries_gets_their_unique_ids(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """Migration 10 adds ``audit.uid`` (unique): the entries a version-9 gateway wrote
    stay, without one; an entry written twice with its uid is stored once; and a
    gateway of version 9 may still use the database (the migration only adds)."""
    with monkeypatch.context() as old:  # a database exactly as version 9 left it
        old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:9])
        old.setattr(schema, "SCHEMA_VERSION", 9)
        store = await PostgresStore.open(pg_url)
        async with store._conn() as conn:
            await conn.executemany(
                "INSERT INTO audit (at, actor, action, target, arguments, result,"
                " instance_id) VALUES ($1, 'ada', 'reconnect_server', 'alpha', NULL,"
                " 'ready', 'gw-1')", [(1.0,), (1.0,)])  # alike: no uid, both kept
        assert await store.schema_version() == 9
        await store.close()
    store = await PostgresStore.open(pg_url)
    try:
        assert await store.schema_version() == schema.SCHEMA_VERSION
        kept = await store.audit()
        assert [(e.at, e.actor, e.action, e.result, e.instance_id, e.uid) for e in kept] == [
            (1.0, "ada", "reconnect_server", "ready", "gw-1", None)] * 2
        for _ in range(2):
            await store.add_audit("ada", "reload_config", None, None, None, uid="u-1")
        assert [e.uid for e in await store.audit()] == ["u-1", None, None]
    finally:
        await store.close()
    with monkeypatch.context() as old:  # a gateway of version 9, after the upgrade
        old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:9])
        old.setattr(schema, "SCHEMA_VERSION", 9)
        await (await PostgresStore.open(pg_url)).close()
    assert "marked it usable from version 9" in caplog.text



async def test_a_callers_own_page_of_records_reads_the_client_index(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """Migration 11 adds ``client_kind`` and indexes ``(client, client_kind, started_at,
    id)``: a caller without admin reads its page (``invocations(client=...)``) by the
    index instead of scanning everyone's newer records; a version-10 database's records
    stay (without a kind: an admin's only), and gateways of 9 and 10 may still use it."""
    with monkeypatch.context() as old:  # a database as version 10 left it
        old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:10])
        old.setattr(schema, "SCHEMA_VERSION", 10)
        store = await PostgresStore.open(pg_url)
        async with store._conn() as conn:  # as a gateway of 10 writes them: no client_kind
            await conn.execute(
                "INSERT INTO invocations (id, trace_id, client, kind, exposed, server,"
                " original, started_at, duration_ms, status) SELECT 'r' || lpad(n::text, 5,"
                " '0'), 't', CASE WHEN n < 2000 THEN 'bob' ELSE 'alice' END, 'tool', 'a_x',"
                " 'a', 'x', n, 1.0, 'success' FROM generate_series(0, 2002) AS n")
        await store.close()
    store = await PostgresStore.open(pg_url)
    try:
        assert await store.schema_version() == schema.SCHEMA_VERSION >= 11
        async with store._conn() as conn:
            await conn.execute("ANALYZE invocations")
            plan = "\n".join(r[0] for r in await conn.fetch(
                "EXPLAIN SELECT * FROM invocations WHERE client = 'alice' AND client_kind ="
                " 'token' AND (started_at, id) < (1e12, 'z') ORDER BY started_at DESC,"
                " id DESC LIMIT 51"))
        assert "invocations_client" in plan and "Sort" not in plan, plan
        assert (await store.invocations(client=("token", "alice")))[0] == []  # no kind
        async with store._conn() as conn:
            await conn.execute("UPDATE invocations SET client_kind = 'token'")
        page, _ = await store.invocations(client=("token", "alice"))
        assert [r.id for r in page] == ["r02002", "r02001", "r02000"]
        assert (await store.invocations(client=("jwt", "alice")))[0] == []
    finally:
        await store.close()
    for version in (9, 10):
        with monkeypatch.context() as old:  # a gateway of that version, after it
            old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:version])
            old.setattr(schema, "SCHEMA_VERSION", version)
            await (await PostgresStore.open(pg_url)).close()
        assert "marked it usable from version 9" in caplog.text


def _gateway(url: str, instance: str) -> Gateway:
    # Each gateway has its own upstream objects, as separate machines would.
    return make_gateway({"alpha": memory_entry("alpha")},
                        {"alpha": alpha_server(), "beta": beta_server()},
                        db=url, instance_id=instance)


@asynccontextmanager
async def _three(url: str) -> AsyncIterator[tuple[list[Gateway], list[Client[Any]],
                                                  list[_ToolsChanged]]]:
    gateways = [_gateway(url, name) for name in "ABC"]
    handlers = [_ToolsChanged() for _ in gateways]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            Client(g.server, mode="legacy", message_handler=h))
            for g, h in zip(gateways, handlers, strict=True)]
        for client in clients:
            await client.list_tools()  # a host that listed is told of changes
        yield gateways, clients, handlers


async def test_three_gateways_share_configuration_logs_and_statistics(
        own_cluster: PgCluster, capsys: pytest.CaptureFixture[str]) -> None:
    url = own_cluster.create_database()
    async with _three(url) as ((a, b, c), (host_a, host_b, host_c), (seen_a, seen_b, seen_c)):
        # Registered through A: listed (with list_changed) and callable through B and C.
        before_b, before_c = seen_b.count, seen_c.count
        started = time.monotonic()
        added = (await host_a.call_tool("gateway_add_server", {
            "name": "beta", "config": {**memory_entry("beta"), "namespace": "b"}})).data
        assert added.added == ["beta"]
        with anyio.fail_after(20):
            await seen_b.wait_for(before_b + 1)
            await seen_c.wait_for(before_c + 1)
        propagation = time.monotonic() - started
        for host in (host_b, host_c):
            assert "b_echo" in await tool_names(host)
            result = await host.call_tool("b_echo", {"text": "hi"})
            assert result.content[0].text == "hi"  # type: ignore[union-attr]
        # Disabled through C: gone from A.
        before_a = seen_a.count
        await host_c.call_tool("gateway_disable_server", {"name": "beta"})
        with anyio.fail_after(20):
            await seen_a.wait_for(before_a + 1)
        assert not any(n.startswith("b_") for n in await tool_names(host_a))
        # Calls through A and C are counted by B, each record naming its instance.
        for i in range(3):
            await host_a.call_tool("alpha_add", {"a": i, "b": 1})
        for i in range(2):
            await host_c.call_tool("alpha_add", {"a": i, "b": 2})
        for gateway in (a, c):
            assert gateway.recorder is not None and await gateway.recorder.flushed(within=20)
        stats = (await host_b.call_tool("gateway_stats", {"group_by": "tool"})).data
        counts = {g.key: g.count for g in stats.groups}
        assert counts["alpha_add"] == 5
        assert counts["b_echo"] == 2  # one call each through B and C
        assert b.store is not None
        rows, _ = await b.store.invocations(tool="alpha_add", limit=10)
        assert sorted(r.instance_id or "" for r in rows) == ["A", "A", "A", "C", "C"]

        # The database goes away: calls are still served, admin mutations fail clearly.
        assert a.recorder is not None
        written_before = a.recorder.written
        own_cluster.stop()
        for i in range(4):
            assert (await host_a.call_tool("alpha_add", {"a": i, "b": 3})).data == i + 3
        gamma = {"name": "gamma", "config": memory_entry("beta", namespace="g")}
        with pytest.raises(ToolError, match=r"PostgreSQL at .* is unreachable"):
            await host_b.call_tool("gateway_add_server", gamma)
        # ... and comes back: the held records are written, the feed catches up.
        own_cluster.start()
        with anyio.fail_after(60):
            while a.recorder.written + a.recorder.dropped < written_before + 4:
                await a.recorder.flushed(within=1)
        assert a.recorder.failed_writes == 0
        before_a = seen_a.count
        with anyio.fail_after(60):
            while True:  # C's pool reconnects on use; until then the write is refused
                try:
                    await host_c.call_tool("gateway_add_server", gamma)
                    break
                except ToolError as exc:
                    assert "unreachable" in str(exc)
                    await anyio.sleep(0.2)
            await seen_a.wait_for(before_a + 1)
        assert "g_echo" in await tool_names(host_a)
        written_during_outage = a.recorder.written - written_before
        stats = (await host_b.call_tool("gateway_stats", {"group_by": "tool"})).data
        counts = {g.key: g.count for g in stats.groups}
        assert counts["alpha_add"] == 5 + written_during_outage
        assert (written_during_outage, a.recorder.dropped) == (4, 0)  # held, none lost
    with capsys.disabled():
        print(f"\n[multi-instance] registration on A listed on B and C after "
              f"{propagation:.3f}s")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_applying_the_shared_state_again_changes_nothing(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue("pg_url") if backend == "postgres" else str(tmp_path / "g.db")
    gateway = _gateway(db, "A")
    async with Client(gateway.server) as host:
        await host.call_tool("gateway_add_server", {
            "name": "beta", "config": {**memory_entry("beta"), "namespace": "b"}})
        await host.call_tool("gateway_disable_server", {"name": "alpha"})
        beta = gateway.manager.services["beta"]
        attempts = beta.attempts
        for _ in range(2):  # one's own change, applied again (and again): nothing to do
            assert await gateway.control.apply_shared(servers=True, routes=True) == []
        assert gateway.manager.services["beta"] is beta and beta.attempts == attempts
        names = await tool_names(host)
        assert "b_echo" in names and not any(n.startswith("alpha_") for n in names)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_gateways_adding_one_name_at_once_register_it_once(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Each gateway serialises its own registrations; across gateways on one store, the
    store's insert-if-absent does: the second add is told to update, as on one gateway."""
    db = request.getfixturevalue("pg_url") if backend == "postgres" else str(tmp_path / "g.db")
    gateways = {"A": _gateway(db, "A"), "B": _gateway(db, "B")}
    async with Client(gateways["A"].server) as host_a, Client(gateways["B"].server) as host_b:
        hosts = {"A": host_a, "B": host_b}
        for round_ in range(5):
            name = f"beta{round_}"
            outcomes: dict[str, str] = {}

            async def add(who: str, name: str = name, outcomes: dict[str, str] = outcomes
                          ) -> None:
                try:
                    await hosts[who].call_tool("gateway_add_server", {
                        "name": name, "config": memory_entry("beta", namespace=f"{name}{who}")})
                    outcomes[who] = "added"
                except ToolError as exc:
                    outcomes[who] = str(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(add, "A")
                tg.start_soon(add, "B")
            (winner,) = [who for who, outcome in outcomes.items() if outcome == "added"]
            (loser,) = set(outcomes) - {winner}
            assert f"server '{name}' already exists; use gateway_update_server" in (
                outcomes[loser])
            for gateway in gateways.values():
                assert gateway.store is not None
                stored = {r.name: r.config for r in await gateway.store.servers()}[name]
                assert stored is not None and stored["namespace"] == f"{name}{winner}"
            # The loser's explicit update replaces it, seen or not yet seen there.
            await hosts[loser].call_tool("gateway_update_server", {
                "name": name, "config": memory_entry("beta", namespace=f"{name}{loser}")})
            stored = {r.name: r.config for r in await gateways[winner].store.servers()}[name]
            assert stored is not None and stored["namespace"] == f"{name}{loser}"
            assert f"{name}{loser}_echo" in await tool_names(hosts[loser])


async def test_a_registration_another_gateway_made_is_updated_not_replaced_by_an_add(
        tmp_path: Path) -> None:
    """Two gateways on one SQLite file never hear of each other's changes: B does not run
    A's registration, yet B's add and import leave it, and B's update replaces it."""
    db = str(tmp_path / "g.db")
    a, b = _gateway(db, "A"), _gateway(db, "B")
    async with Client(a.server) as host_a, Client(b.server) as host_b:
        await host_a.call_tool("gateway_add_server", {
            "name": "beta", "config": memory_entry("beta", namespace="ba")})
        assert "beta" not in b.manager.services
        with pytest.raises(ToolError, match="'beta' already exists; use gateway_update_serv"):
            await host_b.call_tool("gateway_add_server", {
                "name": "beta", "config": memory_entry("beta", namespace="bb")})
        content = f"servers:\n  beta:\n    url: {memory_entry('beta')['url']}\n"
        imported = (await host_b.call_tool("gateway_import_servers",
                                           {"content": content})).data
        assert imported.unchanged == ["beta"] and imported.added == []
        assert a.store is not None
        stored = {r.name: r.config for r in await a.store.servers()}["beta"]
        assert stored is not None and stored["namespace"] == "ba"
        updated = (await host_b.call_tool("gateway_update_server", {
            "name": "beta", "config": memory_entry("beta", namespace="bb")})).data
        assert updated.added == ["beta"]  # registered before, started here now
        stored = {r.name: r.config for r in await a.store.servers()}["beta"]
        assert stored is not None and stored["namespace"] == "bb"
        assert "bb_echo" in await tool_names(host_b)
        replaced = (await host_b.call_tool("gateway_import_servers", {
            "content": content, "replace_existing": True})).data
        assert replaced.restarted == ["beta"]


def test_serve_with_a_database_it_cannot_use_still_fails_at_once(
        pg_cluster: PgCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A database that cannot be reached is waited out now (tests/test_store_outage.py);
    one that is wrong -- here, missing -- is not: one clear line and status 2, as before."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  alpha:\n    url: http://127.0.0.1:9/mcp\n")
    url = pg_cluster.url("no_such_db").replace("postgres@", "postgres:s3cret@")
    code = main(["serve", "--config", str(config), "--transport", "http", "--db", url,
                 "--instance-id", "gw-1", "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot open the store" in err and "no_such_db" in err and "createdb" in err, err
    assert "s3cret" not in err and "Traceback" not in err and "started without" not in err


@pytest.mark.parametrize("command", ["check", "servers", "logs", "stats", "pins"])
def test_every_store_command_reports_an_unreachable_database_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """check and servers went down with a traceback; logs, stats and pins printed the
    error on stdout, into what a script reads (``logs --json | jq``)."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  alpha:\n    url: http://127.0.0.1:9/mcp\n")
    port = free_port()
    url = f"postgresql://gw:s3cret@127.0.0.1:{port}/gateway"
    args = [command, "--db", url] + (["--config", str(config)]
                                      if command in ("check", "servers") else [])
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2
    assert f"PostgreSQL at gw@127.0.0.1:{port}/gateway is unreachable" in err
    if command == "check":  # what serve does with it now (tests/test_store_outage.py)
        assert "'serve' would start without it" in err and "--no-db" in err, err
    assert out == ""
    assert "s3cret" not in err and "Traceback" not in err


def test_a_database_outage_is_logged_in_lines_not_tracebacks(
        own_cluster: PgCluster, tmp_path: Path) -> None:
    """asyncpg's pool logs each failed reconnect with a 20-line traceback (every 1, 2,
    4 ... 60 s while the database is away), beside the gateway's own clear line; then,
    folded into one line, still one line per reconnect.  Now the gateway's two lines."""
    url = own_cluster.create_database()
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    port = free_port()
    log = tmp_path / "gateway.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
             "--transport", "http", "--port", str(port), "--db", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            def wait_for(text: str) -> None:
                deadline = time.monotonic() + 60
                while text not in log.read_text():
                    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)

            wait_for("registered at runtime in")  # the store is open
            own_cluster.stop()
            wait_for("store unreachable since")
            own_cluster.start()
            wait_for("store back after")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    # The gateway's own line each way; asyncpg's per-reconnect line is not repeated
    # beside them (tests/test_store_outage.py counts those it dropped).
    assert "Failed to restore the pool connection floor" not in text, text
    assert text.count("store unreachable since") == 1, text
    assert text.count("store back after") == 1, text


def test_settings_keep_a_database_url_as_written() -> None:
    url = "postgresql://gw@db.internal:5433/gateway"
    assert GatewaySettings(db=url).db == url
    assert GatewaySettings(db=Path("/var/lib/g.db")).db == "/var/lib/g.db"
    assert GatewaySettings(instance_id="gw-1").instance_id == "gw-1"
    assert GatewaySettings().instance_id.endswith(f"-{os.getpid()}")


BROKEN = {"command": sys.executable, "args": ["-c", "import sys; sys.exit('boom: no API key')"]}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_add_whose_server_does_not_start_is_refused_and_not_kept(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """gateway_add_server of a server that exits at start answered 'added' and kept it:
    stored, retried for ever, started again by every gateway on the store.  Now the add
    answers the error (what the server said) and takes itself back; 'enabled: false'
    keeps one stopped; a removed file server's tombstone stays; an import reports its
    servers that did not start and keeps the others."""
    db = request.getfixturevalue("pg_url") if backend == "postgres" else str(tmp_path / "g.db")
    gateways = {who: make_gateway(
        {"alpha": memory_entry("alpha"), "gamma": memory_entry("alpha", namespace="g")},
        {"alpha": alpha_server(), "beta": beta_server()}, db=db, instance_id=who)
        for who in "AB"}
    async with Client(gateways["A"].server) as host, Client(gateways["B"].server):
        with pytest.raises(ToolError) as caught:
            await host.call_tool("gateway_add_server", {"name": "broken", "config": BROKEN})
        text = str(caught.value)
        assert "server 'broken': did not start, so it was not added: " in text, text
        assert "exited with code 1" in text and "boom: no API key" in text, text
        assert "add it with 'enabled: false'" in text
        store = gateways["A"].store
        assert store is not None
        assert [r.name for r in await store.servers()] == []
        assert "broken" not in gateways["A"].manager.services
        # Another gateway on the store may have started it meanwhile (the change feed told
        # it of the add before the add was taken back): once it applies the store, it
        # runs nothing of it.
        await gateways["B"].control.apply_shared(servers=True, routes=False)
        assert "broken" not in gateways["B"].manager.services
        audit = (await host.call_tool("gateway_audit", {})).structured_content["entries"]
        assert (audit[0]["action"], audit[0]["target"]) == ("add_server", "broken")
        assert audit[0]["result"].startswith("not added: ")

        # Stopped on purpose, it is kept; started later, it fails as any server does.
        kept = await host.call_tool("gateway_add_server", {
            "name": "broken", "config": {**BROKEN, "enabled": False}})
        assert kept.structured_content["added"] == ["broken"]
        await host.call_tool("gateway_remove_server", {"name": "broken"})

        # A file server removed at runtime stays removed when its re-add fails.
        await host.call_tool("gateway_remove_server", {"name": "gamma"})
        with pytest.raises(ToolError, match="did not start, so it was not added"):
            await host.call_tool("gateway_add_server", {"name": "gamma", "config": BROKEN})
        assert {r.name: r.config for r in await store.servers()} == {"gamma": TOMBSTONE}

        imported = (await host.call_tool("gateway_import_servers", {"content": json.dumps(
            {"servers": {"beta": memory_entry("beta"), "broken": BROKEN}})})).data
        assert imported.added == ["beta"]
        assert imported.error is not None and "server 'broken': did not start" in imported.error
        assert {r.name for r in await store.servers()} == {"gamma", "beta"}
