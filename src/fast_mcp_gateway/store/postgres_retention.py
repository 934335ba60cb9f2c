"""PostgreSQL retention: ``prune`` in bounded batches, each a short write of its own.

Retention deleted everything past its age (or beyond ``max_rows``) in one statement per
table, under no bound but asyncpg's ``command_timeout`` (60 s): after a week's traffic,
or a retention lowered, hundreds of thousands of rows, whose locks that statement held
until it ended.  A write touching one of them -- a spool replayed, a record written
again after a lost answer (``ON CONFLICT`` waits for the deleting transaction), an
aggregate of an old minute -- waited past its ``lock_timeout`` (``WRITE_TIMEOUT``, 5 s)
and gave up, "the store is busy".  Now each table loses at most ``BATCH`` rows per
transaction (in the order of a unique key an index has: call records oldest first), and
each transaction sets the writes' own ``WRITE_LIMITS``
(``postgres_busy``): a write waits for one batch at most, and a batch that waits on
another session's lock gives up as a write does (``StoreUnavailable``, naming the
holders; the next retention run goes on).  Batches take a pooled connection each, so
other writers get one between them; each batch starts after the last one's key (an
index's), and a row written meanwhile behind it (a record replayed with an old time)
is left to the next run.  A prune is cancellable (a gateway's stop does not
wait for it): the batches committed stay pruned, a batch cut short is rolled back, and
the next run prunes the rest.

One gateway prunes a database at a time: gateways sharing it each run retention, and
at once they deleted the same rows in competing batches (each waiting on the other's
row locks, then giving up busy).  A prune first takes the session-level advisory lock
``RETENTION_LOCK`` (postgres_schema.py: ``0x6D63_7067_0004``, "mcpg" 4, one key per
database as the gateway's tables are) with ``pg_try_advisory_lock`` on a pooled
connection of its own, held (idle) while its batches run on others, and unlocked when
it ends -- failed or cancelled too; a connection lost takes the lock with it, and a
connection given back to asyncpg's pool is reset (``pg_advisory_unlock_all``).  A
gateway that does not get it does not wait: ``PruneSkipped``, and its retention tries
again at its next run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import TYPE_CHECKING

import anyio

from fast_mcp_gateway.store.base import PRUNE_BATCH, PruneSkipped
from fast_mcp_gateway.store.postgres_busy import bounded_transaction
from fast_mcp_gateway.store.postgres_schema import RETENTION_LOCK

if TYPE_CHECKING:
    import asyncpg

__all__ = ["BATCH", "prune"]

BATCH = PRUNE_BATCH
"""Rows one retention transaction deletes at most.  Measured (the tests' PostgreSQL, a
loaded 2-core machine): 3M old call records pruned in 15.5 s, 600 batches of ~26 ms, a
write touching them waiting 0.11 s at most; in one statement, 7.7 s, and such a write
waited past ``WRITE_TIMEOUT`` and gave up."""

Connect = Callable[[], AbstractAsyncContextManager["asyncpg.Connection"]]

# Each table's age column, and the unique key its batches go by (an index's, so each
# batch starts where the last one ended: from the start, each would step over the dead
# index entries of all before it -- 3M records took 38 s, against 4.7 s in one statement),
# with a value below every key's.
_INVOCATIONS = ("started_at, id", (float("-inf"), ""))
_PERIOD = ("period, server, exposed", (-1, "", ""))
_ID = ("id", (-(2 ** 63),))
_BY_AGE = (("invocations", "started_at", _INVOCATIONS),
           ("invocation_minutes", "period", _PERIOD), ("invocation_hours", "period", _PERIOD),
           ("audit", "at", _ID), ("health_records", "at", _ID),
           ("inspector_history", "at", _ID), ("alert_events", "at", _ID))


def _batch(table: str, where: str, key: str, given: int) -> str:
    """One batch: the first ``BATCH`` rows of ``table`` by ``key`` after the cursor that
    match ``where`` (whose ``given`` parameters come first) are deleted; answers how many
    were taken and deleted, and the last one's key (no row: none was left)."""
    cursor = ", ".join(f"${given + i + 1}" for i in range(key.count(",") + 1))
    return (f"WITH doomed AS (SELECT ctid, {key} FROM {table} WHERE {where}"
            f" AND ({key}) > ({cursor}) ORDER BY {key} LIMIT {BATCH}),"
            f" gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed))"
            " RETURNING 1)"
            " SELECT (SELECT count(*) FROM doomed), (SELECT count(*) FROM gone), last.*"
            f" FROM (SELECT {key} FROM doomed ORDER BY {key} DESC LIMIT 1) AS last")


async def prune(connect: Connect, where: str, *, max_age_seconds: float | None,
                max_rows: int | None, now: float,
                prune_feed: Callable[[asyncpg.Connection], Awaitable[None]]) -> int:
    """``PostgresStore.prune`` (the module docstring) on connections from ``connect``;
    ``where`` names the database in errors.  Returns the call records removed;
    ``PruneSkipped`` when another gateway holds ``RETENTION_LOCK``."""
    async with _sole(connect):
        return await _prune(connect, where, max_age_seconds=max_age_seconds,
                            max_rows=max_rows, now=now, prune_feed=prune_feed)


@asynccontextmanager
async def _sole(connect: Connect) -> AsyncIterator[None]:
    """Holds ``RETENTION_LOCK`` (the module docstring), or raises ``PruneSkipped``."""
    async with connect() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK):
            raise PruneSkipped("another gateway is pruning this database")
        try:
            yield
        finally:  # shielded: a cancelled prune unlocks too.  A failed unlock is no failed
            # prune: the connection is broken (its lock ended with it) or given back to
            # the pool, whose reset unlocks (``pg_advisory_unlock_all``).
            with (anyio.CancelScope(shield=True), anyio.move_on_after(5),
                  suppress(Exception)):
                await conn.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK)


async def _prune(connect: Connect, where: str, *, max_age_seconds: float | None,
                 max_rows: int | None, now: float,
                 prune_feed: Callable[[asyncpg.Connection], Awaitable[None]]) -> int:
    removed = 0
    if max_age_seconds is not None:
        cutoff = now - max_age_seconds
        for table, column, (key, first) in _BY_AGE:
            bound = (int(cutoff // 60) if table == "invocation_minutes" else
                     int(cutoff // 3600) if table == "invocation_hours" else cutoff)
            gone = await _batches(connect, where, _batch(table, f"{column} < $1", key, 1),
                                  (bound,), first)
            removed += gone if table == "invocations" else 0
    if max_rows is not None:
        async with connect() as conn:  # the newest record beyond the newest max_rows
            last = await conn.fetchrow("SELECT started_at, id FROM invocations ORDER BY"
                                       " started_at DESC, id DESC OFFSET $1 LIMIT 1",
                                       max_rows)
        if last is not None:
            key, first = _INVOCATIONS
            removed += await _batches(connect, where, _batch(
                "invocations", "(started_at, id) <= ($1, $2)", key, 2), tuple(last), first)
    async with _short(connect, where) as conn:
        await prune_feed(conn)
    return removed


async def _batches(connect: Connect, where: str, sql: str, args: tuple[object, ...],
                   cursor: tuple[object, ...]) -> int:
    """Run the batch ``sql`` from ``cursor`` until a batch takes fewer than ``BATCH``
    rows; the rows deleted."""
    total = 0
    while True:
        async with _short(connect, where) as conn:
            row = await conn.fetchrow(sql, *args, *cursor)
        if row is None:
            return total
        taken, deleted, *last = row
        total += int(deleted)
        if int(taken) < BATCH:
            return total
        cursor = tuple(last)


@asynccontextmanager
async def _short(connect: Connect, where: str) -> AsyncIterator[asyncpg.Connection]:
    """One transaction bounded as a write is (``WRITE_LIMITS``); a lock it waited on past
    them is the store-is-busy ``StoreUnavailable``.  Not shielded: cancellable."""
    async with connect() as conn, bounded_transaction(conn, where):
        yield conn
