"""The SQLite backend's call log: ``SQLiteCallLog``, the base of ``SQLiteStore``.

``add_invocations`` writes a batch in chunks (SQLite's bound-variable limit), each in
one transaction: the records whose ids are not stored yet, and their minute and hour
aggregates (a batch written again -- retried, replayed from the spool -- adds nothing).
``invocations`` pages by (started_at, id) cursors, ``invocations_written`` by rowid (the
order records were written), and ``stats`` sums the aggregates of the minute and hour
periods covering a window (store/stats.py).  The semantics are PostgreSQL's
(postgres_calls.py; the contract suite runs against both).  Retention (``prune``) stays
in sqlite.py: it spans every table.  The subclass provides ``_db``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from fast_mcp_gateway.store import sqlite_schema as schema
from fast_mcp_gateway.store.base import invocation_page, parse_cursor, written_position
from fast_mcp_gateway.store.records import Invocation
from fast_mcp_gateway.store.rows import aggregate_rows, columns, record_of, row_of
from fast_mcp_gateway.store.sqlite_connection import StoreConnection
from fast_mcp_gateway.store.stats import (
    HIST_COLUMNS,
    LatencyStats,
    aggregate_batch,
    finish,
    merge_into,
    window_parts,
)

_INVOCATION_COLUMNS = columns(Invocation)
_INVOCATION_PLACEHOLDERS = ", ".join("?" for _ in fields(Invocation))
_CHUNK = 500  # records per transaction (their ids are bound variables of one query)
_TABLE_OF = {"minute": "invocation_minutes", "hour": "invocation_hours"}


class SQLiteCallLog:
    """The call records and their statistics (see the module docstring)."""

    _db: StoreConnection

    async def add_invocations(self, rows: Iterable[Invocation]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        for start in range(0, len(rows), _CHUNK):  # SQLite's limit on bound variables
            chunk = rows[start:start + _CHUNK]
            ids = [r.id for r in chunk]
            await self._db.write_after(
                (f"SELECT id FROM invocations WHERE id IN ({', '.join('?' for _ in ids)})",
                 ids), functools.partial(_invocation_batches, chunk))
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
        where, args = where_given((("started_at >= ?", since), ("started_at <= ?", until),
                              ("server = ?", server), ("exposed = ?", tool),
                              ("status = ?", status), ("instance_id = ?", instance),
                              ("client = ?", name), ("client_kind = ?", kind)))
        if cursor:
            where.append("(started_at, id) < (?, ?)" if newest_first
                         else "(started_at, id) > (?, ?)")
            args += list(parse_cursor(cursor))
        order = "DESC" if newest_first else "ASC"
        sql = (f"SELECT {_INVOCATION_COLUMNS} FROM invocations" + where_clause(where)
               + f" ORDER BY started_at {order}, id {order} LIMIT ?")
        rows = await self._db.rows(sql, [*args, limit + 1])
        return invocation_page([record_of(Invocation, row) for row in rows], limit)

    async def invocations_written(
        self, after: int | None, *, server: str | None = None, tool: str | None = None,
        status: str | None = None, instance: str | None = None, limit: int = 1000,
    ) -> tuple[list[Invocation], int]:
        # The rowid: SQLite gives each insert the largest one so far plus one.
        ((last,),) = await self._db.rows("SELECT COALESCE(MAX(rowid), 0) FROM invocations")
        if after is None:
            return [], int(last)
        where, args = where_given((("rowid > ?", after if after <= last else 0),
                              ("server = ?", server), ("exposed = ?", tool),
                              ("status = ?", status), ("instance_id = ?", instance)))
        rows = await self._db.rows(
            f"SELECT rowid, {_INVOCATION_COLUMNS} FROM invocations" + where_clause(where)
            + " ORDER BY rowid LIMIT ?", [*args, limit])
        return ([record_of(Invocation, row[1:]) for row in rows],
                written_position(rows[-1][0] if rows else None, int(last), len(rows), limit))

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
        key = {"server": "server", "tool": "exposed"}.get(group_by or "", "''")
        sums = ", ".join(f"SUM({h})" for h in HIST_COLUMNS)
        for resolution, p_lo, p_hi in window_parts(since, until, time.time()):
            if p_lo is not None and p_hi is not None and p_lo > p_hi:
                continue
            where, args = where_given((("period >= ?", p_lo), ("period <= ?", p_hi),
                                  ("server = ?", server), ("exposed = ?", tool)))
            sql = (f"SELECT {key}, SUM(count), SUM(errors), SUM(total_ms), MIN(min_ms),"
                   f" MAX(max_ms), SUM(cancelled), {sums} FROM {_TABLE_OF[resolution]}"
                   + where_clause(where) + f" GROUP BY {key}")
            for group, count, errors, total, lo_ms, hi_ms, cancelled, *hist in (
                    await self._db.rows(sql, args)):
                if count:
                    merge_into(out.setdefault(group, LatencyStats()), count, errors,
                               total, lo_ms, hi_ms, hist, cancelled)
        return finish(out)


def where_given(conditions: Iterable[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    """The clauses whose value is given, and their arguments."""
    given = [(clause, value) for clause, value in conditions if value is not None]
    return [clause for clause, _ in given], [value for _, value in given]


def where_clause(where: list[str]) -> str:
    return " WHERE " + " AND ".join(where) if where else ""


def _invocation_batches(rows: list[Invocation], stored: list[Any]
                        ) -> list[tuple[str, Iterable[Sequence[Any]]]]:
    """The inserts of ``rows`` whose ids are not ``stored`` yet, and their aggregates:
    a batch written again (a retry, a spool replayed) adds nothing.  Of a repeated id,
    the first, as stored."""
    seen = {row[0] for row in stored}
    fresh = []
    for r in rows:
        if r.id not in seen:
            seen.add(r.id)
            fresh.append(r)
    minutes, hours = aggregate_batch(fresh)
    return [(f"INSERT OR IGNORE INTO invocations ({_INVOCATION_COLUMNS}) VALUES"
             f" ({_INVOCATION_PLACEHOLDERS})", [row_of(r) for r in fresh]),
            *((schema.UPSERT_AGGREGATE.format(table=table), aggregate_rows(groups))
              for table, groups in (("invocation_minutes", minutes), ("invocation_hours", hours)))]
