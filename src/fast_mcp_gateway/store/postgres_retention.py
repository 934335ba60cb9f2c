"""PostgreSQL retention: ``prune`` in bounded batches, each a short write of its own.

Retention deleted everything past its age (or beyond ``max_rows``) in one statement per
table, under no bound but asyncpg's ``command_timeout`` (60 s): after a week's traffic,
or a retention lowered, hundreds of thousands of rows, whose locks that statement held
until it ended.  A write touching one of them -- a spool replayed, a record written
again after a lost answer (``ON CONFLICT`` waits for the deleting transaction), an
aggregate of an old minute -- waited past its ``lock_timeout`` (``WRITE_TIMEOUT``, 5 s)
and gave up, "the store is busy".  Now each table loses at most ``BATCH`` rows per
transaction, oldest first, and each transaction sets the writes' own ``WRITE_LIMITS``
(``postgres_busy``): a write waits for one batch at most, and a batch that waits on
another session's lock gives up as a write does (``StoreUnavailable``, naming the
holders; the next retention run goes on).  Batches take a pooled connection each, so
other writers get one between them.  A prune is cancellable (a gateway's stop does not
wait for it): the batches committed stay pruned, a batch cut short is rolled back, and
the next run prunes the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from fast_mcp_gateway.store.postgres_busy import WRITE_LIMITS, busy_error, is_busy
from fast_mcp_gateway.store.postgres_feed import rowcount

if TYPE_CHECKING:
    import asyncpg

__all__ = ["BATCH", "prune"]

BATCH = 5000
"""Rows one retention transaction deletes at most (PostgreSQL: ~50 ms of a loaded
2-core machine's time for call records, well inside ``WRITE_TIMEOUT``)."""

Connect = Callable[[], AbstractAsyncContextManager["asyncpg.Connection"]]

# Each table's age column, and the order its oldest rows come first in (an index's).
_BY_AGE = (("invocations", "started_at", "started_at, id"),
           ("invocation_minutes", "period", "period"),
           ("invocation_hours", "period", "period"),
           ("audit", "at", "at"), ("health_records", "at", "at"),
           ("inspector_history", "at", "id"), ("alert_events", "at", "at"))


def _delete(table: str, where: str, order: str) -> str:
    """A batch: the oldest ``BATCH`` rows of ``table`` matching ``where``."""
    return (f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table}"
            f" WHERE {where} ORDER BY {order} LIMIT {BATCH}))")


async def prune(connect: Connect, where: str, *, max_age_seconds: float | None,
                max_rows: int | None, now: float,
                prune_feed: Callable[[asyncpg.Connection], Awaitable[None]]) -> int:
    """``PostgresStore.prune`` (the module docstring) on connections from ``connect``;
    ``where`` names the database in errors.  Returns the call records removed."""
    removed = 0
    if max_age_seconds is not None:
        cutoff = now - max_age_seconds
        for table, column, order in _BY_AGE:
            bound = (int(cutoff // 60) if table == "invocation_minutes" else
                     int(cutoff // 3600) if table == "invocation_hours" else cutoff)
            gone = await _batches(connect, where, _delete(table, f"{column} < $1", order),
                                  bound)
            removed += gone if table == "invocations" else 0
    if max_rows is not None:
        async with connect() as conn:  # the newest record beyond the newest max_rows
            last = await conn.fetchrow("SELECT started_at, id FROM invocations ORDER BY"
                                       " started_at DESC, id DESC OFFSET $1 LIMIT 1",
                                       max_rows)
        if last is not None:
            removed += await _batches(connect, where, _delete(
                "invocations", "(started_at, id) <= ($1, $2)", "started_at, id"), *last)
    async with _short(connect, where) as conn:
        await prune_feed(conn)
    return removed


async def _batches(connect: Connect, where: str, sql: str, *args: object) -> int:
    """Run the batch ``sql`` until it deletes fewer than ``BATCH`` rows; the total."""
    total = 0
    while True:
        async with _short(connect, where) as conn:
            deleted = rowcount(await conn.execute(sql, *args))
        total += deleted
        if deleted < BATCH:
            return total


@asynccontextmanager
async def _short(connect: Connect, where: str) -> AsyncIterator[asyncpg.Connection]:
    """One transaction bounded as a write is (``WRITE_LIMITS``); a lock it waited on past
    them is the store-is-busy ``StoreUnavailable``.  Not shielded: cancellable."""
    async with connect() as conn:
        try:
            async with conn.transaction():
                await conn.execute(WRITE_LIMITS)
                yield conn
        except Exception as exc:
            if is_busy(exc):
                raise await busy_error(conn, exc, where) from exc
            raise
