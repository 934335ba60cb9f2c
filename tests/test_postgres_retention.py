"""Retention on a real PostgreSQL: a large prune goes in bounded batches, writes go on.

Retention deleted everything past its age in one statement per table, holding each
pruned row's lock until it ended: a write touching one of them (a record written again,
``ON CONFLICT`` waiting for the deleting transaction: a spool replayed, a retry after a
lost answer) waited past its 5 s ``lock_timeout`` and gave up, "the store is busy".
Now a prune deletes ``BATCH`` rows per transaction (postgres_retention.py).  The test
holds a prune between two batches -- its connections come through a gate -- and writes
meanwhile what would wait for the pruned rows' locks were they still held: each write
returns (a lock held across batches would make it give up, busy).  Then a prune
cancelled at the gate: what its committed batches deleted stays deleted, and nothing
is left open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.store import Invocation, open_store
from fast_mcp_gateway.store.postgres import PostgresStore
from fast_mcp_gateway.store.postgres_retention import BATCH
from fast_mcp_gateway.store.records import new_uid
from tests.pg import PgCluster

pytestmark = pytest.mark.anyio
OLD = 3 * BATCH + 7  # old call records (and audit entries): four batches each


class Gate:
    """Connections of ``store`` held back once, at the ``at``-th one asked for, until
    ``opened``; every other passes."""

    def __init__(self, connect: Callable[[], AbstractAsyncContextManager[Any]],
                 at: int) -> None:
        self._connect = connect
        self.at = at
        self.asked = 0
        self.reached = anyio.Event()
        self.opened = anyio.Event()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[Any]:
        self.asked += 1
        if self.asked == self.at:
            self.reached.set()
            await self.opened.wait()
        async with self._connect() as conn:
            yield conn


def record(rid: str, started_at: float) -> Invocation:
    return Invocation(id=rid, trace_id="t", client="c", kind="tool", exposed="alpha_add",
                      server="alpha", original="add", started_at=started_at,
                      duration_ms=1.0, status="success")


def fill(cluster: PgCluster, database: str) -> None:
    """``OLD`` call records, their minutes, and audit entries from 1970 (``old-000001``
    the oldest)."""
    cluster.psql(
        "INSERT INTO invocations (id, trace_id, client, kind, exposed, server, original,"
        " started_at, duration_ms, status) SELECT 'old-' || lpad(g::text, 6, '0'), 't',"
        " 'c', 'tool', 'alpha_add', 'alpha', 'add', 1000 + g, 1.0, 'success'"
        f" FROM generate_series(1, {OLD}) g;"
        "INSERT INTO invocation_minutes (period, server, exposed, count, errors, total_ms,"
        " min_ms, max_ms) SELECT g, 'alpha', 'alpha_add', 1, 0, 1.0, 1.0, 1.0"
        f" FROM generate_series(1, {OLD}) g;"
        "INSERT INTO audit (at, actor, action) SELECT 1000 + g, 'ops', 'reconnect_server'"
        f" FROM generate_series(1, {OLD}) g", database)


async def test_writes_go_on_while_a_large_prune_runs_and_a_prune_can_be_cut(
        pg_cluster: PgCluster, pg_url: str) -> None:
    store = await open_store(pg_url)
    assert isinstance(store, PostgresStore)
    database = pg_url.rsplit("/", 1)[-1]
    try:
        fill(pg_cluster, database)
        # After the first batch of call records (the first connection holds the
        # retention lock, postgres_retention.py).
        gate = Gate(store._conn, at=3)
        store._conn = gate  # type: ignore[method-assign]
        removed: list[int] = []

        async def prune() -> None:
            removed.append(await store.prune(max_age_seconds=3600, max_rows=None))

        async with anyio.create_task_group() as tg:
            tg.start_soon(prune)
            with anyio.fail_after(120):
                await gate.reached.wait()
            assert await store.count("invocations") == OLD - BATCH  # one batch, committed
            # What would wait for the pruned rows' locks: records written again, one of
            # them pruned already (stored again: behind the prune, left to its next
            # run), one not yet (left out); and writes of today.
            fresh = record("fresh", 2_000_000_000.0)
            assert await store.add_invocations([
                record("old-000001", 1001.0), record(f"old-{OLD:06d}", 1000.0 + OLD),
                fresh]) == 3
            await store.add_audit("ops", "reload_config", None, None, None, uid=new_uid())
            gate.opened.set()
        assert removed == [OLD]
        assert [r.id for r in (await store.invocations())[0]] == ["fresh", "old-000001"]
        assert await store.prune(max_age_seconds=3600, max_rows=None) == 1  # the next run
        assert [e.action for e in await store.audit()] == ["reload_config"]
        assert await store.count("invocation_minutes") == 1  # the fresh record's

        fill(pg_cluster, database)  # a prune cut short (a stop) between two batches
        gate = Gate(gate._connect, at=4)
        store._conn = gate  # type: ignore[method-assign]
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(prune)
                with anyio.fail_after(120):
                    await gate.reached.wait()
                scope.cancel()
        assert await store.count("invocations") == OLD + 1 - 2 * BATCH  # two committed
        left = pg_cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                               f" '{database}' AND state LIKE 'idle in transaction%'")
        assert left == "0"
        store._conn = gate._connect  # type: ignore[method-assign]
        assert await store.prune(max_age_seconds=3600, max_rows=None) == OLD - 2 * BATCH
        assert await store.count("invocations") == 1
        assert await store.count("audit") == 1
        assert await store.count("invocation_minutes") == 1
    finally:
        await store.close()


async def test_max_rows_prunes_the_oldest_in_batches(pg_cluster: PgCluster,
                                                      pg_url: str) -> None:
    """``max_rows`` keeps the newest rows (ties in time broken by id, as SQLite's)."""
    store = await open_store(pg_url)
    assert isinstance(store, PostgresStore)
    try:
        fill(pg_cluster, pg_url.rsplit("/", 1)[-1])
        await store.add_invocations([record("same-a", 5.0e9), record("same-b", 5.0e9)])
        assert await store.prune(max_age_seconds=None, max_rows=BATCH + 1) == OLD + 1 - BATCH
        rows, _ = await store.invocations(limit=BATCH + 5)
        assert len(rows) == BATCH + 1
        assert [r.id for r in rows[:2]] == ["same-b", "same-a"]
        assert rows[-1].id == f"old-{OLD - BATCH + 2:06d}"
    finally:
        await store.close()
