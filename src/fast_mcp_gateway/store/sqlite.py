"""The durable store: one SQLite file (aiosqlite, WAL) with versioned migrations.

``Store.open(path)`` creates or opens the file, checks its integrity, and applies
pending migrations in order; a file it cannot use is a ``StorageError`` naming the file
and the reason -- never a silent reset.

Tables: ``invocations`` (one row per call through the gateway); ``invocation_minutes``
and ``invocation_hours`` (per-tool aggregates with a latency histogram whose buckets are
columns, maintained on write: a statistics query sums a few thousand rows inside SQLite
whatever the number of calls -- whole hours from the hourly table, the partial hours at
the window's edges from the minute table); ``audit``; ``servers`` (runtime
registrations); ``routes``; ``health_records``; ``inspector_history``.
Reads are safe while the gateway writes (WAL), e.g. from ``mcp-gateway logs``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from fast_mcp_gateway.errors import GatewayError


class StorageError(GatewayError):
    """The store's file cannot be opened, checked, migrated or written."""


# Latency histogram bucket upper bounds in ms (one more bucket takes everything above).
BUCKETS_MS: tuple[float, ...] = tuple(
    round(0.5 * 1.25**i, 3) for i in range(48)
)  # 0.5 ms .. ~18 s, 25 % apart: a percentile is within one bucket (<= 25 % high)
_HIST = [f"h{i}" for i in range(len(BUCKETS_MS) + 1)]


def _aggregate_tables(script: str) -> str:
    """Expand ``AGGREGATE_TABLE(name)``: a per-period, per-tool aggregate table."""
    columns = ", ".join(f"{h} INTEGER NOT NULL DEFAULT 0" for h in _HIST)
    return re.sub(
        r"AGGREGATE_TABLE\((\w+)\)",
        lambda m: f"CREATE TABLE {m.group(1)} (period INTEGER NOT NULL, server TEXT NOT NULL,"
                  " exposed TEXT NOT NULL, count INTEGER NOT NULL, errors INTEGER NOT NULL,"
                  " total_ms REAL NOT NULL, min_ms REAL NOT NULL, max_ms REAL NOT NULL,"
                  f" {columns}, PRIMARY KEY (period, server, exposed))",
        script,
    )

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
    CREATE TABLE invocations (
        id TEXT PRIMARY KEY,
        trace_id TEXT NOT NULL,
        client TEXT NOT NULL,
        kind TEXT NOT NULL,              -- tool | resource | prompt
        exposed TEXT NOT NULL,
        server TEXT NOT NULL,
        original TEXT NOT NULL,
        replica TEXT,
        route TEXT,                      -- JSON list of {replica, outcome}
        retries INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,        -- unix seconds
        duration_ms REAL NOT NULL,
        status TEXT NOT NULL,            -- success | error | timeout | rejected
        error TEXT,
        arguments TEXT,                  -- JSON, redacted
        request_bytes INTEGER,
        response_bytes INTEGER
    );
    CREATE INDEX invocations_started ON invocations (started_at, id);
    CREATE INDEX invocations_server ON invocations (server, started_at);
    CREATE INDEX invocations_tool ON invocations (exposed, started_at);
    CREATE INDEX invocations_status ON invocations (status, started_at);
    AGGREGATE_TABLE(invocation_minutes);  -- period: unix minutes
    AGGREGATE_TABLE(invocation_hours);    -- period: unix hours
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        arguments TEXT,
        result TEXT
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE TABLE servers (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL,            -- JSON ServerConfig, as registered (with ${VARS})
        enabled INTEGER NOT NULL DEFAULT 1,
        updated_at REAL NOT NULL
    );
    CREATE TABLE routes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pattern TEXT NOT NULL,
        match TEXT NOT NULL,             -- exact | prefix | wildcard
        priority INTEGER NOT NULL DEFAULT 0,
        target TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE health_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        server TEXT NOT NULL,
        replica TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX health_server ON health_records (server, at);
    CREATE TABLE inspector_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        server TEXT NOT NULL,
        replica TEXT,
        operation TEXT NOT NULL,
        target TEXT,
        arguments TEXT,
        status TEXT NOT NULL,
        duration_ms REAL NOT NULL,
        result TEXT
    );
    CREATE INDEX inspector_server ON inspector_history (server, id);
    """),
    (2, """
    ALTER TABLE invocations ADD COLUMN rule TEXT;  -- the route rule that chose the server
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True)
class Invocation:
    """One call through the gateway, as recorded."""

    id: str
    trace_id: str
    client: str
    kind: str
    exposed: str
    server: str
    original: str
    started_at: float
    duration_ms: float
    status: str
    replica: str | None = None
    route: list[dict[str, str]] | None = None
    retries: int = 0
    error: str | None = None
    arguments: str | None = None
    request_bytes: int | None = None
    response_bytes: int | None = None
    rule: str | None = None


@dataclass
class LatencyStats:
    """Counts, rates and latency percentiles over a set of calls."""

    count: int = 0
    errors: int = 0
    min_ms: float | None = None
    avg_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    total_ms: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))

    @property
    def success_rate(self) -> float | None:
        return None if not self.count else (self.count - self.errors) / self.count

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["histogram"], data["total_ms"]
        data["success_rate"] = self.success_rate
        return data


def bucket_of(ms: float) -> int:
    for i, bound in enumerate(BUCKETS_MS):
        if ms <= bound:
            return i
    return len(BUCKETS_MS)


def percentile_from(histogram: Sequence[int], q: float, max_ms: float | None) -> float | None:
    """The upper bound of the bucket holding the q-quantile (capped at the maximum)."""
    total = sum(histogram)
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            bound = BUCKETS_MS[i] if i < len(BUCKETS_MS) else max_ms
            return min(bound, max_ms) if bound is not None and max_ms is not None else bound
    return max_ms


class Store:
    """Async access to the gateway's SQLite file.  Create with ``await Store.open(path)``."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: str | Path, *, allow_memory: bool = False) -> Store:
        path = str(path)
        if path == ":memory:" and not allow_memory:
            raise StorageError("the store needs a file: ':memory:' would lose every record")
        if path != ":memory:":
            parent = anyio.Path(path).parent
            try:
                await parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{path}: cannot create its folder: {exc}") from exc
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"{path}: cannot open: {exc}") from exc
        store = cls(db, path)
        try:
            await store._prepare()
        except (sqlite3.Error, OSError) as exc:
            await db.close()
            raise StorageError(f"{path}: not a usable gateway database ({exc}); move it "
                               "away or point MCP_GATEWAY_DB elsewhere") from exc
        except StorageError:
            await db.close()
            raise
        return store

    async def _prepare(self) -> None:
        db = self._db
        await db.execute("PRAGMA busy_timeout = 5000")
        (check,) = await (await db.execute("PRAGMA quick_check")).fetchone() or ("?",)
        if check != "ok":
            raise StorageError(f"{self.path}: integrity check failed: {check}; the file was "
                               "left untouched -- restore it from a backup or move it away")
        if self.path != ":memory:":
            await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        (version,) = await (await db.execute("PRAGMA user_version")).fetchone() or (0,)
        if version > SCHEMA_VERSION:
            raise StorageError(f"{self.path}: schema version {version} is newer than this "
                               f"gateway understands ({SCHEMA_VERSION}); upgrade the gateway")
        for target, script in MIGRATIONS:
            if target <= version:
                continue
            await db.execute("BEGIN IMMEDIATE")
            try:
                await _run_script(db, script)
                await db.execute(f"PRAGMA user_version = {target}")
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        await self._check_columns()

    async def _check_columns(self) -> None:
        """Refuse a file whose tables lack columns its schema version promises (e.g. one
        written by a development build), rather than losing every write to it later."""
        for table, columns in _expected_columns(tuple(MIGRATIONS)).items():
            rows = await (await self._db.execute(f"PRAGMA table_info({table})")).fetchall()
            have = {row[1] for row in rows}
            missing = sorted(columns - have)
            if missing:
                raise StorageError(
                    f"{self.path}: table {table!r} lacks column(s) {', '.join(missing)} that "
                    f"schema version {SCHEMA_VERSION} has; the file was written by another "
                    "build -- move it away or point MCP_GATEWAY_DB elsewhere")

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        (version,) = await (await self._db.execute("PRAGMA user_version")).fetchone() or (0,)
        return int(version)

    # -- invocations --------------------------------------------------------------------

    async def add_invocations(self, rows: Iterable[Invocation]) -> int:
        """Insert a batch in one transaction, with its per-minute and per-hour aggregates."""
        rows = list(rows)
        if not rows:
            return 0
        minutes: dict[tuple[int, str, str], LatencyStats] = {}
        hours: dict[tuple[int, str, str], LatencyStats] = {}
        for r in rows:
            error = r.status != "success"
            minute = int(r.started_at // 60)
            _add(minutes.setdefault((minute, r.server, r.exposed), LatencyStats()),
                 r.duration_ms, error)
            _add(hours.setdefault((minute // 60, r.server, r.exposed), LatencyStats()),
                 r.duration_ms, error)
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany(
                "INSERT OR IGNORE INTO invocations (id, trace_id, client, kind, exposed, server,"
                " original, replica, route, retries, started_at, duration_ms, status, error,"
                " arguments, request_bytes, response_bytes, rule) VALUES"
                " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(r.id, r.trace_id, r.client, r.kind, r.exposed, r.server, r.original,
                  r.replica, json.dumps(r.route) if r.route else None, r.retries,
                  r.started_at, r.duration_ms, r.status, r.error, r.arguments,
                  r.request_bytes, r.response_bytes, r.rule) for r in rows],
            )
            for table, groups in (("invocation_minutes", minutes), ("invocation_hours", hours)):
                await db.executemany(_UPSERT.format(table=table), [
                    (period, server, exposed, a.count, a.errors, a.total_ms, a.min_ms,
                     a.max_ms, *a.histogram)
                    for (period, server, exposed), a in groups.items()
                ])
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return len(rows)

    async def invocations(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        server: str | None = None,
        tool: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of invocation records and the cursor of the next page (or None)."""
        where, args = _filters(since, until, server, tool, status)
        if cursor:
            try:
                at, rid = cursor.split("|", 1)
                where.append("(started_at, id) < (?, ?)" if newest_first
                             else "(started_at, id) > (?, ?)")
                args += [float(at), rid]
            except ValueError:
                raise StorageError(f"invalid cursor {cursor!r}") from None
        order = "DESC" if newest_first else "ASC"
        sql = ("SELECT * FROM invocations" + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY started_at {order}, id {order} LIMIT ?")
        cur = await self._db.execute(sql, [*args, limit + 1])
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = f"{last['started_at']!r}|{last['id']}"
        for row in rows:
            if row.get("route"):
                row["route"] = json.loads(row["route"])
        return rows, next_cursor

    async def stats(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        server: str | None = None,
        tool: str | None = None,
        group_by: str | None = None,
    ) -> dict[str, LatencyStats]:
        """Aggregates over [since, until] (minute resolution): {"": total} or per
        ``group_by`` server/tool.  Whole hours come from the hourly table, the edges
        from the minute table."""
        first = None if since is None else int(since // 60)
        last = None if until is None else int(until // 60)
        parts: list[tuple[str, int | None, int | None]] = []
        if first is None and last is None:
            parts.append(("invocation_hours", None, None))
        else:
            lo = first if first is not None else 0
            hi = last if last is not None else int(time.time() // 60) + 1
            h_lo, h_hi = -(-lo // 60), (hi + 1) // 60  # whole hours inside [lo, hi]
            if h_lo < h_hi:
                parts += [("invocation_minutes", lo, h_lo * 60 - 1),
                          ("invocation_hours", h_lo, h_hi - 1),
                          ("invocation_minutes", h_hi * 60, hi)]
            else:
                parts.append(("invocation_minutes", lo, hi))
        out: dict[str, LatencyStats] = {}
        key = {"server": "server", "tool": "exposed"}.get(group_by or "", "''")
        sums = ", ".join(f"SUM({h})" for h in _HIST)
        for table, p_lo, p_hi in parts:
            where: list[str] = []
            args: list[Any] = []
            for clause, value in (("period >= ?", p_lo), ("period <= ?", p_hi),
                                  ("server = ?", server), ("exposed = ?", tool)):
                if value is not None:
                    where.append(clause)
                    args.append(value)
            if p_lo is not None and p_hi is not None and p_lo > p_hi:
                continue
            sql = (f"SELECT {key}, SUM(count), SUM(errors), SUM(total_ms), MIN(min_ms),"
                   f" MAX(max_ms), {sums} FROM {table}"
                   + (" WHERE " + " AND ".join(where) if where else "") + f" GROUP BY {key}")
            async with self._db.execute(sql, args) as cur:
                async for group, count, errors, total, lo_ms, hi_ms, *hist in cur:
                    if not count:
                        continue
                    agg = out.setdefault(group, LatencyStats())
                    agg.count += count
                    agg.errors += errors
                    agg.total_ms += total
                    agg.min_ms = lo_ms if agg.min_ms is None else min(agg.min_ms, lo_ms)
                    agg.max_ms = hi_ms if agg.max_ms is None else max(agg.max_ms, hi_ms)
                    agg.histogram = [a + b for a, b in zip(agg.histogram, hist, strict=True)]
        for agg in out.values():
            agg.avg_ms = agg.total_ms / agg.count
            agg.p50_ms = percentile_from(agg.histogram, 0.50, agg.max_ms)
            agg.p95_ms = percentile_from(agg.histogram, 0.95, agg.max_ms)
            agg.p99_ms = percentile_from(agg.histogram, 0.99, agg.max_ms)
        return out

    async def prune(self, *, max_age_seconds: float | None, max_rows: int | None,
                    now: float | None = None) -> int:
        """Retention: drop invocation rows older than the age, then beyond the count."""
        now = time.time() if now is None else now
        removed = 0
        db = self._db
        if max_age_seconds is not None:
            cur = await db.execute("DELETE FROM invocations WHERE started_at < ?",
                                   (now - max_age_seconds,))
            removed += cur.rowcount
            await db.execute("DELETE FROM invocation_minutes WHERE period < ?",
                             (int((now - max_age_seconds) // 60),))
            await db.execute("DELETE FROM invocation_hours WHERE period < ?",
                             (int((now - max_age_seconds) // 3600),))
            for table in ("audit", "health_records", "inspector_history"):
                await db.execute(f"DELETE FROM {table} WHERE at < ?", (now - max_age_seconds,))
        if max_rows is not None:
            cur = await db.execute(
                "DELETE FROM invocations WHERE rowid IN (SELECT rowid FROM invocations"
                " ORDER BY started_at DESC LIMIT -1 OFFSET ?)", (max_rows,))
            removed += cur.rowcount
        return removed

    # -- runtime server registrations -------------------------------------------------

    async def put_server(self, name: str, config: dict[str, Any] | None, enabled: bool) -> None:
        """Register (or override) a server; ``config=None`` keeps only the enabled flag."""
        await self._db.execute(
            "INSERT INTO servers (name, config, enabled, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT (name) DO UPDATE SET config = excluded.config,"
            " enabled = excluded.enabled, updated_at = excluded.updated_at",
            (name, json.dumps(config) if config is not None else "null", int(enabled),
             time.time()))

    async def delete_server(self, name: str) -> None:
        await self._db.execute("DELETE FROM servers WHERE name = ?", (name,))

    async def servers(self) -> list[dict[str, Any]]:
        rows = await self._rows("SELECT name, config, enabled, updated_at FROM servers"
                                " ORDER BY name", [])
        for row in rows:
            row["config"] = json.loads(row["config"])
            row["enabled"] = bool(row["enabled"])
        return rows

    # -- health history ---------------------------------------------------------------

    async def add_health_records(self, rows: Sequence[tuple[float, str, str, str, str | None]]
                                 ) -> None:
        await self._db.executemany(
            "INSERT INTO health_records (at, server, replica, status, detail)"
            " VALUES (?,?,?,?,?)", list(rows))

    async def health_records(self, *, server: str | None = None, limit: int = 50,
                             before_id: int | None = None) -> list[dict[str, Any]]:
        return await self._page("health_records", server, limit, before_id)

    # -- route rules ------------------------------------------------------------------

    async def add_route(self, pattern: str, match: str, target: str, priority: int) -> int:
        cur = await self._db.execute(
            "INSERT INTO routes (pattern, match, priority, target, created_at)"
            " VALUES (?,?,?,?,?)", (pattern, match, priority, target, time.time()))
        return int(cur.lastrowid or 0)

    async def update_route(self, route_id: int, pattern: str, match: str, target: str,
                           priority: int) -> bool:
        cur = await self._db.execute(
            "UPDATE routes SET pattern=?, match=?, target=?, priority=? WHERE id=?",
            (pattern, match, target, priority, route_id))
        return cur.rowcount > 0

    async def delete_route(self, route_id: int) -> bool:
        cur = await self._db.execute("DELETE FROM routes WHERE id=?", (route_id,))
        return cur.rowcount > 0

    async def routes(self) -> list[dict[str, Any]]:
        return await self._rows("SELECT id, pattern, match, priority, target, created_at"
                                " FROM routes ORDER BY priority DESC, id", [])

    # -- audit and inspector history ---------------------------------------------------

    async def add_audit(self, actor: str, action: str, target: str | None,
                        arguments: str | None, result: str | None) -> None:
        await self._db.execute(
            "INSERT INTO audit (at, actor, action, target, arguments, result)"
            " VALUES (?,?,?,?,?,?)", (time.time(), actor, action, target, arguments, result))

    async def audit(self, *, limit: int = 50, before_id: int | None = None
                    ) -> list[dict[str, Any]]:
        return await self._page("audit", None, limit, before_id)

    async def add_inspection(self, server: str, replica: str | None, operation: str,
                             target: str | None, arguments: str | None, status: str,
                             duration_ms: float, result: str | None) -> int:
        cur = await self._db.execute(
            "INSERT INTO inspector_history (at, server, replica, operation, target, arguments,"
            " status, duration_ms, result) VALUES (?,?,?,?,?,?,?,?,?)",
            (time.time(), server, replica, operation, target, arguments, status, duration_ms,
             result))
        return int(cur.lastrowid or 0)

    async def inspections(self, *, server: str | None = None, limit: int = 50,
                          before_id: int | None = None) -> list[dict[str, Any]]:
        return await self._page("inspector_history", server, limit, before_id)

    async def clear_inspections(self, server: str | None = None) -> int:
        cur = await self._db.execute(
            "DELETE FROM inspector_history" + (" WHERE server = ?" if server else ""),
            [server] if server else [])
        return cur.rowcount

    async def _page(self, table: str, server: str | None, limit: int, before_id: int | None
                    ) -> list[dict[str, Any]]:
        """Newest first, optionally one server's, older than ``before_id`` (id paging)."""
        where: list[str] = []
        args: list[Any] = []
        if server is not None:
            where.append("server = ?")
            args.append(server)
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        sql = (f"SELECT * FROM {table}" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY id DESC LIMIT ?")
        return await self._rows(sql, [*args, limit])

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        cur = await self._db.execute(sql, list(args))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]

    async def count(self, table: str) -> int:
        if table not in {"invocations", "invocation_minutes", "invocation_hours", "audit",
                         "servers", "routes", "health_records", "inspector_history"}:
            raise StorageError(f"no table {table!r}")
        (n,) = await (await self._db.execute(f"SELECT COUNT(*) FROM {table}")).fetchone() or (0,)
        return int(n)


_UPSERT = (
    "INSERT INTO {table} (period, server, exposed, count, errors, total_ms, min_ms, max_ms, "
    + ", ".join(_HIST) + ") VALUES (" + ", ".join("?" * (8 + len(_HIST))) + ")"
    " ON CONFLICT (period, server, exposed) DO UPDATE SET count = count + excluded.count,"
    " errors = errors + excluded.errors, total_ms = total_ms + excluded.total_ms,"
    " min_ms = min(min_ms, excluded.min_ms), max_ms = max(max_ms, excluded.max_ms), "
    + ", ".join(f"{h} = {h} + excluded.{h}" for h in _HIST)
)


def _add(agg: LatencyStats, ms: float, error: bool) -> None:
    agg.count += 1
    agg.errors += int(error)
    agg.total_ms += ms
    agg.avg_ms = agg.total_ms / agg.count
    agg.min_ms = ms if agg.min_ms is None else min(agg.min_ms, ms)
    agg.max_ms = ms if agg.max_ms is None else max(agg.max_ms, ms)
    agg.histogram[bucket_of(ms)] += 1


def _filters(since: float | None, until: float | None, server: str | None, tool: str | None,
             status: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for clause, value in (("started_at >= ?", since), ("started_at <= ?", until),
                          ("server = ?", server), ("exposed = ?", tool),
                          ("status = ?", status)):
        if value is not None:
            where.append(clause)
            args.append(value)
    return where, args


@functools.cache
def _expected_columns(migrations: tuple[tuple[int, str], ...]) -> dict[str, frozenset[str]]:
    """Every table's columns, as ``migrations`` build them on an empty database."""
    db = sqlite3.connect(":memory:")
    try:
        for _, script in migrations:
            db.executescript(_aggregate_tables(script))
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: frozenset(row[1] for row in db.execute(f"PRAGMA table_info({t})"))
                for t in tables}
    finally:
        db.close()


async def _run_script(db: aiosqlite.Connection, script: str) -> None:
    """Run a migration's statements inside the caller's open transaction."""
    for statement in (s.strip() for s in _aggregate_tables(script).split(";")):
        if statement:
            await db.execute(statement)
