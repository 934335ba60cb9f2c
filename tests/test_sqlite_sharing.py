"""One SQLite file, several connections: a gateway's writes wait for another connection's
write lock (another gateway's, the CLI's) instead of failing with "database is locked",
a lock held too long is an error in words, and stores opening a new file at once
migrate it once.  The other connection is a plain ``sqlite3`` one the test drives step
by step."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import pytest

from fast_mcp_gateway.store import Invocation, SQLiteStore, StoreUnavailable, sqlite_connection
from fast_mcp_gateway.store import sqlite_schema as schema
from fast_mcp_gateway.store.base import StorageError
from fast_mcp_gateway.store.names import NameBinding

pytestmark = pytest.mark.anyio

_CALL = Invocation(id="c1", trace_id="t", client="c", kind="tool", exposed="beta_echo",
                   server="beta", original="echo", started_at=1.0, duration_ms=1.0,
                   status="success")
WRITES: dict[str, Callable[[SQLiteStore], Awaitable[object]]] = {
    # one statement with RETURNING (an add racing another gateway's)
    "add_server": lambda store: store.add_server("beta", {"url": "http://b"}, True),
    # one plain statement
    "add_audit": lambda store: store.add_audit("admin", "add_server", "beta", None, None),
    # a BEGIN IMMEDIATE transaction
    "add_invocations": lambda store: store.add_invocations([_CALL]),
    "claim_names": lambda store: store.claim_names([NameBinding(
        kind="tool", exposed="beta_echo", server="beta", original="echo", base="beta_echo",
        at=1.0)]),
}


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the file's write lock, with a change not yet
    committed (as another gateway's add is, the moment it is made)."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO audit (at, actor, action) VALUES (0, 'other', 'hold')")
        yield other
    finally:
        other.close()


@pytest.mark.parametrize("write", sorted(WRITES))
async def test_a_write_during_a_read_waits_for_another_connections_write_lock(
        tmp_path: Path, write: str) -> None:
    """A read of the store's connection started before the write: the write must wait for
    the other connection's lock like any other.  (A statement of that read left open
    between two worker calls made SQLite refuse the write at once, unwaited: its read
    cannot become a write while another connection writes, nor after that commits.)"""
    path = tmp_path / "g.db"
    store = await SQLiteStore.open(path)
    try:
        await store.add_server("alpha", {"url": "http://a"}, True)  # a row to read
        read = anyio.Event()

        async def read_servers() -> None:
            await store.servers()
            read.set()

        with write_lock(path) as other:
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_servers)  # first on the connection's queue
                tg.start_soon(WRITES[write], store)
                await read.wait()
                other.execute("COMMIT")  # the write goes ahead now
        assert await store.count("audit") == 1 + (write == "add_audit")
        if write == "add_server":
            assert [r.name for r in await store.servers()] == ["alpha", "beta"]
    finally:
        await store.close()


async def test_a_lock_held_past_the_busy_timeout_is_an_unavailable_store_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is written, the error names the file, the lock and what to do, and it is
    the retryable kind (the call recorder holds its batch and tries again)."""
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "g.db"
    store = await SQLiteStore.open(path)
    try:
        with write_lock(path):
            for write in ("add_server", "add_invocations"):
                with pytest.raises(StoreUnavailable) as caught:
                    await WRITES[write](store)
                message = str(caught.value)
                assert message.startswith(f"{path}: the write did not happen: another "
                                          "connection held the database's write lock for "
                                          "more than 0.05 s")
                assert "end what holds it" in message and "try again" in message
        assert await store.servers() == [] and await store.count("invocations") == 0
        await store.add_server("beta", {"url": "http://b"}, True)  # usable again
    finally:
        await store.close()


async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_no_transaction_open(
        tmp_path: Path) -> None:
    """The worker runs the BEGIN it was handed all the same: a task cancelled meanwhile
    left a transaction nobody ended, holding the file's write lock (the other gateway
    locked out) and failing this store's next write ("within a transaction")."""
    path = tmp_path / "g.db"
    store = await SQLiteStore.open(path)
    try:
        with write_lock(path) as other:
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.add_invocations, [_CALL])
                await anyio.wait_all_tasks_blocked()  # its BEGIN waits for the lock
                tg.cancel_scope.cancel()
                other.execute("COMMIT")
        await store.add_audit("admin", "after", None, None, None)
        with write_lock(path) as other:  # the other connection gets the lock
            other.execute("COMMIT")
        assert await store.count("audit") == 3
    finally:
        await store.close()


SINGLE: dict[str, Callable[[SQLiteStore], Awaitable[object]]] = {
    "put_server": lambda store: store.put_server("beta", {"url": "http://b"}, True),  # run
    "add_server": lambda store: store.add_server("beta", {"url": "http://b"}, True),  # returning
}


@pytest.mark.parametrize("write", sorted(SINGLE))
async def test_a_single_write_cancelled_while_the_worker_runs_it_is_done_before_the_cancel(
        tmp_path: Path, write: str) -> None:
    """A single statement (a registration, a route, an audit entry) whose task was
    cancelled while aiosqlite's worker ran it -- waiting for another connection's write
    lock -- still ran afterwards: the caller was told it was cancelled, yet the server
    was registered, and not in the change feed (the gateway never applied it).  Now a
    write handed to the worker ends before the cancellation is delivered, and its
    caller returns what it did."""
    path = tmp_path / "g.db"
    store = await SQLiteStore.open(path)
    returned = False
    try:
        with write_lock(path) as other:
            async with anyio.create_task_group() as tg:

                async def register() -> None:
                    nonlocal returned
                    await SINGLE[write](store)
                    returned = True

                tg.start_soon(register)
                await anyio.wait_all_tasks_blocked()  # handed over: waits for the lock
                tg.cancel_scope.cancel()
                other.execute("COMMIT")
        registered = [r.name for r in await store.servers()]
        noted = [c.key for c in (await store.changes()).changes if c.kind == "server"]
        assert (registered, noted, returned) == (["beta"], ["beta"], True)
    finally:
        await store.close()


def _new_file(tmp_path: Path) -> Path:
    path = tmp_path / "g.db"
    path.touch(mode=0o600)
    return path


async def _open_while_another_migrates(path: Path, monkeypatch: pytest.MonkeyPatch,
                                      version: int) -> SQLiteStore | StorageError:
    """Open the new file ``path`` while another gateway migrates it (to ``version``):
    this one reads version 0, then waits for the write lock the other holds until it
    commits.  The store opened, or the ``StorageError`` the open raised."""
    read = anyio.Event()
    read_version = schema.schema_version

    async def version_read(db: aiosqlite.Connection) -> int:
        found = await read_version(db)
        read.set()
        return found

    monkeypatch.setattr(schema, "schema_version", version_read)
    outcome: list[SQLiteStore | StorageError] = []
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode = WAL")
        other.execute("BEGIN IMMEDIATE")
        for _, script in schema.MIGRATIONS:  # the other gateway's migrations
            for statement in schema.statements(script):
                other.execute(statement)
        other.execute(f"PRAGMA user_version = {version}")

        async def open_store() -> None:
            try:
                outcome.append(await SQLiteStore.open(path))
            except StorageError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(open_store)
            await read.wait()  # this one read version 0; the other commits now
            other.execute("COMMIT")
    finally:
        other.close()
    (result,) = outcome
    return result


async def test_stores_opening_a_new_file_at_once_migrate_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another gateway migrates the new file while this one, having read version 0,
    waits for the write lock: this one must not run the migrations again ("table
    invocations already exists", reported as a file to move away)."""
    store = await _open_while_another_migrates(_new_file(tmp_path), monkeypatch,
                                               schema.SCHEMA_VERSION)
    assert isinstance(store, SQLiteStore), store
    try:
        assert await store.schema_version() == schema.SCHEMA_VERSION
    finally:
        await store.close()


async def test_a_file_a_newer_gateway_migrates_meanwhile_is_refused_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This gateway read version 0 and waits for the write lock while a newer gateway
    migrates the file past what it understands: it must refuse the file as newer (the
    check ran only before the migrations, so it went on with a schema it does not know)."""
    refused = await _open_while_another_migrates(_new_file(tmp_path), monkeypatch,
                                                 schema.SCHEMA_VERSION + 1)
    assert isinstance(refused, StorageError), refused
    assert f"schema version {schema.SCHEMA_VERSION + 1} is newer than this gateway" in str(
        refused)


async def test_a_read_never_sees_another_tasks_uncommitted_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch write is several worker calls (BEGIN, the statements, COMMIT); a read on
    the connection in between saw its rows before they were committed (invocations whose
    aggregates were not written yet, or rows a rollback then took back).  The read now
    waits for the batch to end."""
    store = await SQLiteStore.open(tmp_path / "g.db")
    conn = store._db
    inserted, release = anyio.Event(), anyio.Event()
    executemany = conn._db.executemany

    async def paused(sql: str, rows: Any) -> Any:
        cursor = await executemany(sql, rows)
        if "INTO invocations " in sql:
            inserted.set()
            await release.wait()
        return cursor

    monkeypatch.setattr(conn._db, "executemany", paused)
    seen: list[int] = []

    async def read() -> None:
        seen.append(await store.count("invocations"))

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.add_invocations, [_CALL])
                await inserted.wait()  # the row is in, not committed
                tg.start_soon(read)
                try:  # the read waits for the batch's lock (or, wrongly, has read)
                    while conn._lock.statistics().tasks_waiting == 0 and not seen:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                    assert seen == []
                finally:
                    release.set()
        assert seen == [1]
    finally:
        await store.close()
