"""The PostgreSQL backend's call log: ``PgCallLog``, the base of ``PostgresStore``.

``add_invocations`` writes a batch in one transaction: the records in one ``unnest``
insert (a record whose id is stored already is skipped, and not counted again: a batch
written twice -- retried after a COMMIT whose answer was lost, replayed from the spool
-- adds nothing) and each aggregate table (minute, hour) in one upsert, under
``RECORDS_LOCK``, so ``seq`` is handed out in commit order across gateways: the order
``invocations_written`` reads. ``invocations`` pages by (started_at, id) cursors;
``stats`` sums the aggregates of the minute and hour periods covering a window
(store/stats.py). The semantics are the SQLite backend's (the contract suite runs
against both). Retention (``prune``) is postgres_retention.py's: it spans every table and
the change feed. The subclass provides ``_conn``: a pooled connection with asyncpg's
failures translated, and ``_written``: one for a write, in one transaction bounded by
``WRITE_TIMEOUT`` (postgres_busy.py), which a cancellation does not cut once it has it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from fast_mcp_gateway.store import postgres_schema as schema
from fast_mcp_gateway.store.base import invocation_page, parse_cursor, written_position
from fast_mcp_gateway.store.postgres_feed import Query
from fast_mcp_gateway.store.records import Invocation
from fast_mcp_gateway.store.rows import aggregate_rows, record_of, row_of
from fast_mcp_gateway.store.stats import (
    HIST_COLUMNS,
    LatencyStats,
    aggregate_batch,
    finish,
    merge_into,
    window_parts,
)

if TYPE_CHECKING:
    import asyncpg

_FIELDS = [f.name for f in fields(Invocation)]
_TYPES = {"retries": "int4", "started_at": "float8", "duration_ms": "float8",
          "request_bytes": "int8", "response_bytes": "int8"}
_INSERT_INVOCATIONS = (
    f"INSERT INTO invocations ({', '.join(_FIELDS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{_TYPES.get(name, 'text')}[]" for i, name in enumerate(_FIELDS, 1))
    + ") ON CONFLICT (id) DO NOTHING RETURNING id")
_TABLE_OF = {"minute": "invocation_minutes", "hour": "invocation_hours"}


class PgCallLog:
    """The ``InvocationStore`` queries but ``prune`` (see the module docstring)."""

    _conn: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]
    _written: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]  # a write's

    async def add_invocations(self, rows: Iterable[Invocation]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        by_column: list[list[Any]] = [[] for _ in _FIELDS]
        for r in rows:
            for column, value in zip(by_column, row_of(r), strict=True):
                column.append(value)
        async with self._written() as conn:  # one transaction
            # Records' seq in commit order, across gateways (``invocations_written``).
            await conn.execute("SELECT pg_advisory_xact_lock($1)", schema.RECORDS_LOCK)
            # Only the records inserted now are counted: a batch written again (a retry
            # whose COMMIT went through unanswered, a spool replayed) adds nothing.
            inserted = {r[0] for r in await conn.fetch(_INSERT_INVOCATIONS, *by_column)}
            minutes, hours = aggregate_batch(_first_of(rows, inserted))
            for table, groups in (("invocation_minutes", minutes), ("invocation_hours", hours)):
                arrays: list[list[Any]] = [[] for _ in range(9 + len(HIST_COLUMNS))]
                for row in aggregate_rows(groups):
                    for array, value in zip(arrays, row, strict=True):
                        array.append(value)
                await conn.execute(schema.upsert_aggregate(table), *arrays)
        return len(rows)

    async def invocations(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        server: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        instance: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
        client: tuple[str, str] | None = None,
    ) -> tuple[list[Invocation], str | None]:
        kind, name = client or (None, None)
        q = Query()
        q.where("started_at >= {}", since).where("started_at <= {}", until)
        q.where("server = {}", server).where("exposed = {}", tool).where("status = {}", status)
        q.where("instance_id = {}", instance).where("client = {}", name)
        q.where("client_kind = {}", kind)
        if cursor:
            at, rid = parse_cursor(cursor)
            q.where("(started_at, id) " + ("<" if newest_first else ">") + " ({}, {})", at, rid)
        order = "DESC" if newest_first else "ASC"
        sql = (f"SELECT {', '.join(_FIELDS)} FROM invocations{q.clause()}"
               f" ORDER BY started_at {order}, id {order} LIMIT {q.arg(limit + 1)}")
        async with self._conn() as conn:
            rows = [record_of(Invocation, row) for row in await conn.fetch(sql, *q.args)]
        return invocation_page(rows, limit)

    async def invocations_written(
        self, after: int | None, *, server: str | None = None, tool: str | None = None,
        status: str | None = None, instance: str | None = None, limit: int = 1000,
    ) -> tuple[list[Invocation], int]:
        # ``seq``: an identity handed out under RECORDS_LOCK, so in commit order.
        async with self._conn() as conn:
            last = int(await conn.fetchval("SELECT COALESCE(MAX(seq), 0) FROM invocations"))
            if after is None:
                return [], last
            q = Query().where("seq > {}", after if after <= last else 0)
            q.where("server = {}", server).where("exposed = {}", tool).where("status = {}", status)
            q.where("instance_id = {}", instance)
            rows = await conn.fetch(f"SELECT seq, {', '.join(_FIELDS)} FROM invocations"
                                    f"{q.clause()} ORDER BY seq LIMIT {q.arg(limit)}", *q.args)
        return ([record_of(Invocation, tuple(row)[1:]) for row in rows],
                written_position(rows[-1][0] if rows else None, last, len(rows), limit))

    async def stats(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        server: str | None = None,
        tool: str | None = None,
        group_by: str | None = None,
    ) -> dict[str, LatencyStats]:
        out: dict[str, LatencyStats] = {}
        key = {"server": "server", "tool": "exposed"}.get(group_by or "", "''::text")
        sums = ", ".join(f"SUM({h})::bigint" for h in HIST_COLUMNS)
        async with self._conn() as conn:
            for resolution, p_lo, p_hi in window_parts(since, until, time.time()):
                if p_lo is not None and p_hi is not None and p_lo > p_hi:
                    continue
                q = Query()
                q.where("period >= {}", p_lo).where("period <= {}", p_hi)
                q.where("server = {}", server).where("exposed = {}", tool)
                sql = (f"SELECT {key}, SUM(count)::bigint, SUM(errors)::bigint, SUM(total_ms),"
                       f" MIN(min_ms), MAX(max_ms), SUM(cancelled)::bigint, {sums}"
                       f" FROM {_TABLE_OF[resolution]}{q.clause()} GROUP BY 1")
                for group, count, errors, total, lo_ms, hi_ms, cancelled, *hist in (
                        await conn.fetch(sql, *q.args)):
                    if count:
                        merge_into(out.setdefault(group, LatencyStats()), count, errors,
                                   total, lo_ms, hi_ms, hist, cancelled)
        return finish(out)


def _first_of(rows: list[Invocation], inserted: set[str]) -> list[Invocation]:
    """The rows whose ids were ``inserted`` (of a repeated id, the first: as stored)."""
    fresh = []
    for r in rows:
        if r.id in inserted:
            inserted.discard(r.id)
            fresh.append(r)
    return fresh
