"""Retention in its own task: call records are written while a prune runs.

The prune ran inside the recorder's writer loop, after a batch: while it ran (3M
PostgreSQL records, ~15 s) nothing was written, the calls' records piled up in the
bounded queue and beyond it were dropped.  Here, on a real SQLite file and the tests'
real PostgreSQL, a prune is held between two of its batches while more records than
the queue holds are recorded: each part is written meanwhile, none dropped.  Then a
stop during a held prune: it ends (the gate is never opened: a stop that waited for
the prune would hang here), the batches committed stay pruned, the one cut short is
not, no transaction is left open, and what was recorded is written.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.store import Invocation, open_store
from fast_mcp_gateway.store import postgres_retention as pg_retention
from fast_mcp_gateway.store.base import PRUNE_BATCH, StorageError, StoreUnavailable
from fast_mcp_gateway.store.memory import MemoryStore
from fast_mcp_gateway.store.outage import StoreOutage
from fast_mcp_gateway.store.postgres import PostgresStore
from fast_mcp_gateway.store.postgres_schema import RETENTION_LOCK
from fast_mcp_gateway.store.sqlite import SQLiteStore
from fast_mcp_gateway.telemetry.recorder import Recorder
from fast_mcp_gateway.telemetry.retention import Retention
from tests.pg import PgCluster
from tests.test_postgres_retention import OLD, fill

pytestmark = pytest.mark.anyio
CAPACITY = 200  # the recorder's queue: each test records three times as many


class Hold:
    """Held once, at the ``at``-th time it is passed, until ``opened``."""

    def __init__(self, at: int = 2) -> None:
        self.at = at
        self.passed = 0
        self.reached = anyio.Event()
        self.opened = anyio.Event()

    async def __call__(self) -> None:
        self.passed += 1
        if self.passed == self.at:
            self.reached.set()
            await self.opened.wait()


def call(n: int) -> Invocation:
    return Invocation(id=f"new-{n:06d}", trace_id="t", client="c", kind="tool",
                      exposed="alpha_add", server="alpha", original="add",
                      started_at=time.time(), duration_ms=1.0, status="success")


def recorder_of(store: Any) -> tuple[Recorder, Retention]:
    recorder = Recorder(store, capacity=CAPACITY, batch_size=50, retention_seconds=3600,
                        retention_rows=None, prune_every=3600)
    assert recorder.retention is not None
    return recorder, recorder.retention


async def record_past_the_queue(recorder: Recorder, first: int) -> None:
    """Three queues' worth of records, each written before the next is recorded."""
    for part in range(3):
        for n in range(CAPACITY):
            recorder.record(call(first + part * CAPACITY + n))
        assert await recorder.flushed(within=60)
    assert recorder.dropped == 0


async def records_go_on_and_a_stop_cuts_the_prune(
        store: Any, hold: Callable[[], Hold], old: int, batch: int,
        refill: Callable[[], Awaitable[None]], open_transactions: Callable[[], int],
        held_open: int) -> None:
    """The test (module docstring) on ``store``, whose ``old`` old records it prunes in
    batches of ``batch``; ``hold()`` gives the hold its prune's second batch waits at,
    with ``held_open`` of the store's transactions open there."""
    recorder, retention = recorder_of(store)
    gate = hold()
    with anyio.fail_after(50):  # a hang guard only (under the per-test timeout)
        async with anyio.create_task_group() as tg:
            await tg.start(recorder.run)  # the first prune starts with it
            await gate.reached.wait()
            assert retention.running
            await record_past_the_queue(recorder, 0)
            assert await store.count("invocations") == old - batch + 3 * CAPACITY
            gate.opened.set()
            assert await retention.ended(1)
            assert await store.count("invocations") == 3 * CAPACITY
            assert (retention.removed, retention.failures) == (old, 0)

            await refill()
            gate = hold()
            retention.now()
            await gate.reached.wait()
            await record_past_the_queue(recorder, 3 * CAPACITY)
            assert open_transactions() == held_open
            recorder.record(call(9 * CAPACITY))  # recorded as the stop begins
            await recorder.stopping(60)
            tg.cancel_scope.cancel()
    assert not gate.opened.is_set() and not retention.running
    assert (retention.runs, retention.failures) == (2, 0)
    assert recorder.stats() == {"recorded": 6 * CAPACITY + 1, "dropped": 0,
                                "failed_writes": 0, "queued": 0, "retention_runs": 2,
                                "retention_failures": 0, "retention_skipped": 0,
                                "retention_removed": old}
    # One batch of the second prune committed, the next never made.
    assert await store.count("invocations") == old - batch + 6 * CAPACITY + 1
    assert open_transactions() == 0


async def test_sqlite_records_are_written_while_a_prune_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.db"
    old = 2 * PRUNE_BATCH + 5
    store = await SQLiteStore.open(path)
    gate = Hold()

    async def refill() -> None:
        await store._db.write((
            "INSERT INTO invocations (id, trace_id, client, kind, exposed, server, original,"
            " started_at, duration_ms, status) VALUES (?, 't', 'c', 'tool', 'x', 's', 'x',"
            " ?, 1.0, 'success')", [(f"old-{n:06d}", 1000.0 + n) for n in range(old)]))

    run = store._db.run

    async def gated(sql: str, args: Any = ()) -> Any:
        if sql.startswith("DELETE FROM invocations"):  # a batch of the prune's records
            await gate()
        return await run(sql, args)

    def fresh_hold() -> Hold:
        nonlocal gate
        gate = Hold()
        return gate

    def open_transactions() -> int:  # 0: another connection takes the write lock at once
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        except sqlite3.OperationalError:  # "database is locked"
            return 1
        finally:
            other.close()
        return 0

    monkeypatch.setattr(store._db, "run", gated)
    try:
        await refill()
        await records_go_on_and_a_stop_cuts_the_prune(store, fresh_hold, old, PRUNE_BATCH,
                                                      refill, open_transactions, 0)
    finally:
        await store.close()


async def test_postgres_records_are_written_while_a_prune_runs(
        pg_cluster: PgCluster, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hold is inside the second batch's transaction (opened, nothing deleted yet):
    the stop cancels it there, and it is rolled back."""
    store = await open_store(pg_url)
    assert isinstance(store, PostgresStore)
    database = pg_url.rsplit("/", 1)[-1]
    gate = Hold()
    short = pg_retention._short

    @asynccontextmanager
    async def gated(connect: Callable[[], AbstractAsyncContextManager[Any]], where: str
                    ) -> AsyncIterator[Any]:
        async with short(connect, where) as conn:
            await gate()
            yield conn

    def fresh_hold() -> Hold:
        nonlocal gate
        gate = Hold()
        return gate

    async def refill() -> None:
        await anyio.to_thread.run_sync(fill, pg_cluster, database)

    def open_transactions() -> int:
        return int(pg_cluster.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname ="
            f" '{database}' AND state LIKE 'idle in transaction%'"))

    monkeypatch.setattr(pg_retention, "_short", gated)
    try:
        await refill()
        await records_go_on_and_a_stop_cuts_the_prune(store, fresh_hold, OLD,
                                                      pg_retention.BATCH, refill,
                                                      open_transactions, 1)
    finally:
        await store.close()


class FailingPrunes(MemoryStore):
    """A store whose prunes fail with the errors given, then succeed."""

    def __init__(self, *errors: Exception) -> None:
        super().__init__()
        self.errors = list(errors)

    async def prune(self, *, max_age_seconds: float | None, max_rows: int | None,
                    now: float | None = None) -> int:
        if self.errors:
            raise self.errors.pop(0)
        return await super().prune(max_age_seconds=max_age_seconds, max_rows=max_rows,
                                   now=now)


async def test_a_failing_prune_is_said_once_and_never_stops_the_records(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "fast_mcp_gateway")
    store = FailingPrunes(StorageError("SQLite file /x/g.db: disk I/O error"),
                          StorageError("SQLite file /x/g.db: disk I/O error"))
    recorder, retention = recorder_of(store)
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run)
        for runs in (1, 2, 3):
            assert await retention.ended(runs)
            recorder.record(call(runs))
            assert await recorder.flushed(within=60)
            if runs < 3:
                retention.now()
        tg.cancel_scope.cancel()
    lines = [r for r in caplog.records if "retention" in r.getMessage()]
    said = [r.getMessage() for r in lines]
    assert said == [
        "retention could not prune the call log, audit and statistics: SQLite file "
        "/x/g.db: disk I/O error; trying again every 3600 s (what it would remove is kept"
        " until then; calls and their records go on)",
        said[1]]
    assert said[1].startswith("retention prunes again (failing since ")
    # The failure is a problem (WARNING); its end is news, not a problem (INFO).
    assert [r.levelname for r in lines] == ["WARNING", "INFO"]
    assert (retention.runs, retention.failures, recorder.written) == (3, 2, 3)

    # An unreachable store the gateway's outage line said already: not said again.
    caplog.clear()
    outage = StoreOutage()
    outage.lost(StoreUnavailable("PostgreSQL at db:5432: connection refused"))
    recorder, retention = recorder_of(
        FailingPrunes(StoreUnavailable("PostgreSQL at db:5432: connection refused")))
    recorder.outage = outage
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run)
        assert await retention.ended(1)
        retention.now()
        assert await retention.ended(2)
        tg.cancel_scope.cancel()
    assert [r for r in caplog.records if "retention" in r.getMessage()] == []
    assert (retention.runs, retention.failures) == (2, 1)


async def test_gateways_sharing_postgres_prune_it_one_at_a_time(
        pg_cluster: PgCluster, pg_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Two gateways' retention on one database: the first is held between two batches
    (holding the retention lock), the second's run is skipped (at DEBUG, counted, no
    row touched, no warning); once the first has ended, the second prunes.  A prune
    cut short by a stop leaves the lock free."""
    caplog.set_level(logging.DEBUG, "fast_mcp_gateway.telemetry.retention")
    first, second = await open_store(pg_url), await open_store(pg_url)
    assert isinstance(first, PostgresStore) and isinstance(second, PostgresStore)
    database = pg_url.rsplit("/", 1)[-1]
    gate = Hold()
    short = pg_retention._short

    @asynccontextmanager
    async def gated(connect: Callable[[], AbstractAsyncContextManager[Any]], where: str
                    ) -> AsyncIterator[Any]:
        async with short(connect, where) as conn:
            await gate()
            yield conn

    def advisory_locks() -> str:
        return pg_cluster.psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND"
            f" (classid::bigint << 32 | objid::bigint) = {RETENTION_LOCK}", database)

    monkeypatch.setattr(pg_retention, "_short", gated)
    one = Retention(first, max_age_seconds=3600, max_rows=None, every=3600)
    two = Retention(second, max_age_seconds=3600, max_rows=None, every=3600)
    try:
        await anyio.to_thread.run_sync(fill, pg_cluster, database)
        with anyio.fail_after(50):  # a hang guard only
            async with anyio.create_task_group() as tg:
                await tg.start(one.run)
                await gate.reached.wait()  # the first prune, between two batches
                assert advisory_locks() == "1"
                await tg.start(two.run)
                assert await two.ended(1)
                assert two.stats() == {"retention_runs": 1, "retention_failures": 0,
                                       "retention_skipped": 1, "retention_removed": 0}
                assert await second.count("invocations") == OLD - pg_retention.BATCH
                gate.opened.set()
                assert await one.ended(1)
                assert (one.removed, one.skipped, one.failures) == (OLD, 0, 0)
                assert advisory_locks() == "0"

                await anyio.to_thread.run_sync(fill, pg_cluster, database)
                two.now()  # the first is idle now: the second prunes
                assert await two.ended(2)
                assert two.stats() == {"retention_runs": 2, "retention_failures": 0,
                                       "retention_skipped": 1, "retention_removed": OLD}
                assert await first.count("invocations") == 0

                await anyio.to_thread.run_sync(fill, pg_cluster, database)
                gate = Hold()
                one.now()
                await gate.reached.wait()
                one.stop()  # cut short while it holds the lock
                assert await one.ended(2)
                two.now()
                assert await two.ended(3)
                assert two.stats()["retention_removed"] == 2 * OLD - pg_retention.BATCH
                assert advisory_locks() == "0"
                tg.cancel_scope.cancel()
    finally:
        await first.close()
        await second.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [("DEBUG", "retention skipped this run: another gateway is pruning this"
                              " database; trying again in 3600 s")]
