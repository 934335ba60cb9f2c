"""The SQLite backend against real files: migrations, WAL, integrity and column checks,
crash safety, URLs.  What every backend must do is in test_store_contract.py."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway.store import (
    Invocation,
    MemoryStore,
    SQLiteStore,
    StorageError,
    StoreUnavailable,
    open_store,
)
from fast_mcp_gateway.store import sqlite_schema as store_module
from tests.fixtures import as_schema_version
from tests.pg import free_port

pytestmark = pytest.mark.anyio


def inv(i: int, *, server: str = "alpha", tool: str = "alpha_add", at: float = 1_000_000.0,
        ms: float = 10.0, status: str = "success") -> Invocation:
    return Invocation(id=f"id-{i:07d}", trace_id=f"t{i}", client="stdio", kind="tool",
                      exposed=tool, server=server, original=tool.split("_", 1)[-1],
                      started_at=at + i, duration_ms=ms, status=status)


async def test_a_new_file_is_created_in_wal_mode_at_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "gateway.db"
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == store_module.SCHEMA_VERSION
        # A small page cache (SQLite's default is 2 MB, filled by call records).
        ((cache,),) = await store._db.rows("PRAGMA cache_size")
        assert cache == -store_module.CACHE_KIB and 0 < store_module.CACHE_KIB < 2000
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"invocations", "audit", "servers", "routes", "health_records",
            "inspector_history"} <= tables


async def test_memory_is_refused_and_unusable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="needs a file"):
        await SQLiteStore.open(":memory:")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=str(garbage)):
        await SQLiteStore.open(garbage)
    assert garbage.read_bytes().startswith(b"this is not a database")  # never reset
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StorageError, match="schema version 99 is newer"):
        await SQLiteStore.open(newer)
    # Same version number, different columns (a development build's file): refused by
    # name, not accepted and then failing every write.
    other = tmp_path / "other.db"
    await (await SQLiteStore.open(other)).close()  # a current file ...
    with sqlite3.connect(other) as db:  # ... whose aggregate table is an older shape
        db.execute("DROP TABLE invocation_minutes")
        db.execute("CREATE TABLE invocation_minutes (minute INTEGER, server TEXT)")
    with pytest.raises(StorageError, match=r"'invocation_minutes' lacks column.*period"):
        await SQLiteStore.open(other)


@pytest.mark.parametrize("claim", [True, False])
async def test_a_rolling_upgrade_keeps_older_gateways_when_the_migration_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        claim: bool) -> None:
    """As on PostgreSQL (tests/test_postgres.py): a newer build's adding migration
    marks the file usable by this build, which then opens it and keeps its records."""
    path = tmp_path / "gateway.db"
    ours, future = store_module.SCHEMA_VERSION, store_module.SCHEMA_VERSION + 1
    with monkeypatch.context() as newer:
        newer.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, (future, """
            ALTER TABLE invocations ADD COLUMN cost REAL;
            CREATE TABLE budgets (server TEXT PRIMARY KEY, per_day REAL);
            """)])
        newer.setattr(store_module, "SCHEMA_VERSION", future)
        newer.setattr(store_module, "READABLE_FROM", {future: ours} if claim else {})
        await (await SQLiteStore.open(path)).close()
    if not claim:
        with pytest.raises(StorageError, match=rf"schema version {future} is newer than "
                                               rf"this gateway understands \({ours}\)"):
            await SQLiteStore.open(path)
        return
    store = await SQLiteStore.open(path)
    try:
        assert f"marked it usable from version {ours}" in caplog.text
        await store.add_invocations([inv(1)])
        assert [r.id for r in (await store.invocations())[0]] == [inv(1).id]
    finally:
        await store.close()


def test_the_written_out_columns_are_what_the_migrations_build() -> None:
    """``COLUMNS`` (checked at each open) against ``MIGRATIONS`` run on an empty
    database: a migration that adds a table or a column must add it there too."""
    db = sqlite3.connect(":memory:")
    try:
        for _, script in store_module.MIGRATIONS:
            db.executescript(store_module._aggregate_tables(script))
        built = {table: frozenset(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
                 for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                            "'table' AND name NOT LIKE 'sqlite_%'")}
    finally:
        db.close()
    assert built == store_module.COLUMNS
    assert set(built) == store_module.TABLES


async def test_migrations_apply_in_order_and_keep_data(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.db"
    store = await SQLiteStore.open(path)
    await store.add_invocations([inv(1)])
    await store.close()
    nxt = store_module.SCHEMA_VERSION + 1
    monkeypatch.setattr(store_module, "MIGRATIONS", [
        *store_module.MIGRATIONS,
        (nxt, "ALTER TABLE invocations ADD COLUMN model TEXT; CREATE TABLE extra (x INTEGER)"),
    ])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", nxt)
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == nxt
        rows, _ = await store.invocations()
        assert [r.id for r in rows] == ["id-0000001"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert "model" in {row[1] for row in db.execute("PRAGMA table_info(invocations)")}


WRITER = """
import anyio, sys
from fast_mcp_gateway.store import Invocation, SQLiteStore
async def main():
    store = await SQLiteStore.open(sys.argv[1])
    batch = 0
    while True:
        await store.add_invocations(
            Invocation(id=f"{batch}-{i}", trace_id="t", client="c", kind="tool", exposed="x",
                       server="s", original="x", started_at=batch, duration_ms=1.0,
                       status="success") for i in range(200))
        batch += 1
        print(batch * 200, flush=True)
anyio.run(main)
"""


def test_a_writer_killed_mid_write_leaves_every_committed_record(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 4000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = db.execute("SELECT COUNT(*) FROM invocations").fetchone()[0]
    assert count >= committed and count % 200 == 0  # whole batches only


async def test_a_version_1_file_is_migrated_to_the_current_schema(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    with monkeypatch.context() as patch:  # make a file exactly as version 1 left it
        as_schema_version(patch, 1)
        old = await SQLiteStore.open(path)
        await old._db.run(
            "INSERT INTO invocations (id, trace_id, client, kind, exposed, server, original,"
            " started_at, duration_ms, status) VALUES ('v1', 't', 'c', 'tool', 'x', 's', 'x',"
            " 1.0, 2.0, 'success')")
        await old.close()
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == store_module.SCHEMA_VERSION >= 2
        rows, _ = await store.invocations()
        assert rows[0].id == "v1" and rows[0].rule is None
        await store.add_invocations([inv(1)])
        assert await store.count("invocations") == 2
    finally:
        await store.close()


async def test_a_version_10_file_with_audit_entries_gets_their_unique_ids(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """Migration 11 adds ``audit.uid`` (unique): the entries a version-10 gateway wrote
    stay, without one; an entry written twice with its uid is stored once; and a
    gateway of version 10 may still use the file (the migration only adds)."""
    path = tmp_path / "old.db"
    with monkeypatch.context() as patch:  # a file exactly as version 10 left it
        as_schema_version(patch, 10)
        old = await SQLiteStore.open(path)
        for _ in range(2):  # two alike: no uid, so never taken for each other
            await old._db.run(
                "INSERT INTO audit (at, actor, action, target, arguments, result,"
                " instance_id) VALUES (1.0, 'ada', 'reconnect_server', 'alpha', NULL,"
                " 'ready', 'gw-1')")
        await old.close()
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == store_module.SCHEMA_VERSION
        kept = await store.audit()
        assert [(e.at, e.actor, e.action, e.result, e.instance_id, e.uid) for e in kept] == [
            (1.0, "ada", "reconnect_server", "ready", "gw-1", None)] * 2
        for _ in range(2):
            await store.add_audit("ada", "reload_config", None, None, None, uid="u-1")
        assert [e.uid for e in await store.audit()] == ["u-1", None, None]
    finally:
        await store.close()
    with monkeypatch.context() as patch:  # a gateway of version 10, after the upgrade
        as_schema_version(patch, 10)
        await (await SQLiteStore.open(path)).close()
    assert "marked it usable from version 10" in caplog.text


async def test_a_callers_own_page_of_records_reads_the_client_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    """Migration 12 adds ``client_kind`` and indexes ``(client, client_kind, started_at,
    id)``: a caller without admin reads its page (``invocations(client=...)``) by the
    index instead of scanning everyone's newer records; a version-11 file's records stay
    (without a kind: an admin's only), and gateways of 10 and 11 may still use the file."""
    path = tmp_path / "old.db"
    with monkeypatch.context() as patch:  # a file as version 11 left it
        as_schema_version(patch, 11)
        old = await SQLiteStore.open(path)
        await old._db.write((  # as a gateway of 11 writes them: no client_kind
            "INSERT INTO invocations (id, trace_id, client, kind, exposed, server, original,"
            " started_at, duration_ms, status) VALUES (?, 't', 'alice', 'tool', 'x', 's',"
            " 'x', ?, 1.0, 'success')", [(f"old-{n}", 1000.0 + n) for n in range(3)]))
        await old.close()
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == store_module.SCHEMA_VERSION >= 12
        sql = ("EXPLAIN QUERY PLAN SELECT * FROM invocations WHERE client = ? AND client_kind"
               " = ? AND (started_at, id) < (?, ?) ORDER BY started_at DESC, id DESC LIMIT 51")
        plan = " ".join(str(r[-1]) for r in await store._db.rows(sql, ["c", "jwt", 2e9, "z"]))
        assert "USING INDEX invocations_client (client=? AND client_kind=?" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        assert [r.client_kind for r in (await store.invocations())[0]] == [None] * 3
        assert (await store.invocations(client=("token", "alice")))[0] == []
    finally:
        await store.close()
    for version in (10, 11):
        with monkeypatch.context() as patch:  # a gateway of that version, after it
            as_schema_version(patch, version)
            await (await SQLiteStore.open(path)).close()
        assert "marked it usable from version 10" in caplog.text


async def test_a_large_prune_leaves_the_file_to_other_writers_between_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention deleted every old record in one statement, holding the file's write
    lock for its length (0.83-1.56 s per 100k records): another gateway on the file
    waited past its busy timeout.  Now ``PRUNE_BATCH`` rows per statement: the prune is
    held between two batches, and another process's connection takes the write lock at
    once (``timeout=0``: a lock still held would be "database is locked")."""
    from fast_mcp_gateway.store.base import PRUNE_BATCH

    path = tmp_path / "g.db"
    old = 2 * PRUNE_BATCH + 5
    store = await SQLiteStore.open(path)
    try:
        await store._db.write((
            "INSERT INTO invocations (id, trace_id, client, kind, exposed, server, original,"
            " started_at, duration_ms, status) VALUES (?, 't', 'c', 'tool', 'x', 's', 'x',"
            " ?, 1.0, 'success')", [(f"old-{n:06d}", 1000.0 + n) for n in range(old)]))
        run, calls = store._db.run, 0
        reached, go = anyio.Event(), anyio.Event()

        async def gated(*args: object) -> object:
            nonlocal calls
            calls += 1
            if calls == 2:  # the prune's second batch
                reached.set()
                await go.wait()
            return await run(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(store._db, "run", gated)
        removed: list[int] = []

        async def prune() -> None:
            removed.append(await store.prune(max_age_seconds=3600, max_rows=None))

        async with anyio.create_task_group() as tg:
            tg.start_soon(prune)
            with anyio.fail_after(60):
                await reached.wait()
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("INSERT INTO audit (at, actor, action) VALUES (1.0, 'o', 'x')")
                other.execute("COMMIT")
            finally:
                other.close()
            assert await store.count("invocations") == old - PRUNE_BATCH  # one batch
            await store.add_invocations([inv(1, at=2_000_000_000.0)])  # and this process
            go.set()
        assert removed == [old]
        assert [r.id for r in (await store.invocations())[0]] == [inv(1).id]
        assert await store.count("audit") == 0  # the other's entry, old, pruned too
    finally:
        await store.close()


async def test_open_store_chooses_the_backend_by_url(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "a.db"
    forms: list[str | Path] = [
        f"sqlite://{file}",    # sqlite:///abs/path
        f"sqlite:///{file}",   # SQLAlchemy's four slashes
        str(Path(f"sqlite://{file}")),  # what a pathlib.Path setting makes of the first
        str(file), file,       # bare paths
    ]
    for i, url in enumerate(forms):
        store = await open_store(url)
        try:
            assert isinstance(store, SQLiteStore) and store.path == str(file), url
            await store.add_invocations([inv(i)])
        finally:
            await store.close()
    with sqlite3.connect(file) as db:  # every form opened the same file
        assert db.execute("SELECT COUNT(*) FROM invocations").fetchone()[0] == len(forms)
    names = [p.name async for p in anyio.Path(tmp_path).iterdir()]
    assert [n for n in names if not n.startswith("a.db")] == []  # no "sqlite:" folder
    monkeypatch.chdir(tmp_path)
    await (await open_store("relative.db")).close()
    assert (tmp_path / "relative.db").is_file()
    in_memory = await open_store("sqlite:///:memory:")
    try:
        assert isinstance(in_memory, SQLiteStore) and in_memory.path == ":memory:"
    finally:
        await in_memory.close()
    for memory_url in ("memory://", Path("memory://")):  # a Path makes it "memory:"
        assert isinstance(await open_store(memory_url), MemoryStore)


async def test_open_store_refuses_what_it_cannot_open_by_name(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="needs a file"):
        await open_store(":memory:")
    port = free_port()  # nothing listens there: the database is down
    for scheme in ("postgresql", "postgres"):
        with pytest.raises(StoreUnavailable) as caught:
            await open_store(f"{scheme}://gw:pa55word@127.0.0.1:{port}/gateway")
        assert "pa55word" not in str(caught.value)
        assert f"PostgreSQL at gw@127.0.0.1:{port}/gateway is unreachable" in str(caught.value)
    with pytest.raises(StorageError, match=r"unknown scheme 'mysql'; use sqlite:///.*memory://"):
        await open_store("mysql://db.example/gateway")
    with pytest.raises(StorageError, match="has no host"):
        await open_store("sqlite://db.example/gateway.db")
    with pytest.raises(StorageError, match="names no file"):
        await open_store("sqlite://")
    with pytest.raises(StorageError, match="takes nothing after it"):
        await open_store("memory://somewhere")
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


def test_a_resolver_that_cannot_answer_now_is_waited_out_a_name_that_is_not_is_a_mistake(
        ) -> None:
    """PostgreSQL hosts: DNS saying the name does not exist (or has no address) fails
    the open at once, naming the host (tests/test_cli_messages.py runs it for real); a
    resolver that cannot answer now (no DNS server reachable) is an outage, retried."""
    pytest.importorskip("asyncpg")
    from fast_mcp_gateway.store.postgres_feed import store_error, unknown_host

    dsn, where = "postgresql://gw:pw@db.example:5432/g", "gw@db.example:5432/g"
    for code in (socket.EAI_NONAME, socket.EAI_NODATA):
        mistake = unknown_host(socket.gaierror(code, "Name or service not known"), dsn, where)
        assert isinstance(mistake, StorageError) and not isinstance(mistake, StoreUnavailable)
        assert "host 'db.example' does not exist" in str(mistake) and "pw" not in str(mistake)
    busy_resolver = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert unknown_host(busy_resolver, dsn, where) is None
    assert isinstance(store_error(busy_resolver, where, "cannot connect"), StoreUnavailable)


async def test_concurrent_transactions_on_one_file_do_not_collide(tmp_path: Path) -> None:
    """The recorder's batch write and a pin approval (each an explicit transaction) run
    on one connection; the second BEGIN must wait, not fail ("within a transaction")."""
    from fast_mcp_gateway.store.records import PinRecord

    store = await SQLiteStore.open(tmp_path / "g.db")
    try:
        async with anyio.create_task_group() as tg:
            for batch in range(20):
                tg.start_soon(store.add_invocations, [
                    Invocation(id=f"{batch}-{i}", trace_id="t", client="c", kind="tool",
                               exposed="x", server="s", original="x", started_at=batch,
                               duration_ms=1.0, status="success") for i in range(50)])
                tg.start_soon(store.put_pins, [PinRecord(
                    server="s", kind="tool", name=f"t{batch}", digest="d", definition="{}",
                    status="approved", actor="first use", at=1.0)])
        assert await store.count("invocations") == 1000
        assert len(await store.pins()) == 20
    finally:
        await store.close()
