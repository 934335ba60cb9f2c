"""The SQLite backend: one file (aiosqlite, WAL) with versioned migrations.

``SQLiteStore.open(path)`` creates or opens the file, checks its integrity, and applies
pending migrations in order (sqlite_schema.py); a file it cannot use is a
``StorageError`` naming the file and the reason -- never a silent reset.

Tables: ``invocations`` (one row per call through the gateway); ``invocation_minutes``
and ``invocation_hours`` (per-tool aggregates with a latency histogram whose buckets are
columns, maintained on write: a statistics query sums a few thousand rows inside SQLite
whatever the number of calls -- whole hours from the hourly table, the partial hours at
the window's edges from the minute table); ``audit``; ``servers`` (runtime
registrations); ``routes``; ``health_records``; ``inspector_history``;
``alert_rules`` (runtime alert rules) and ``alert_events`` (alert history).
Reads are safe while the gateway writes (WAL), e.g. from ``mcp-gateway logs``.

A registration's settings may hold secrets in clear, so none is left behind when they
change or go: deleted content is zeroed (``PRAGMA secure_delete``), and each change of a
registration empties the WAL, which holds the pages' old images (``_forget_old_pages``).

The change feed reports the control-plane mutations made through this object (one
gateway owns a file); another process writing the same file is not seen.  Every read and
write goes through ``sqlite_connection.StoreConnection``: reads fetched whole, writes one
at a time, SQLite's errors in words (so two gateways on one file wait for each other's
writes rather than fail with "database is locked").
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import anyio

from fast_mcp_gateway.store import sqlite_schema as schema
from fast_mcp_gateway.store.base import (
    PIN_COLUMNS,
    PRUNE_BATCH,
    VACANT_CONFIGS,
    StorageError,
    pin_record,
    pin_row,
)
from fast_mcp_gateway.store.credentials import SQLiteCredentials
from fast_mcp_gateway.store.eras import EraNeed
from fast_mcp_gateway.store.feed import LocalChangeFeed
from fast_mcp_gateway.store.files import (
    SQLITE_COMPANIONS,
    private_file,
    report_shared,
    shared_files,
)
from fast_mcp_gateway.store.names import NameBinding, claimed
from fast_mcp_gateway.store.records import (
    AlertEvent,
    AlertRuleRecord,
    AuditEntry,
    ChangeBatch,
    HealthRecord,
    InspectionRecord,
    Lease,
    PinRecord,
    Registration,
    RouteMatch,
    RouteRecord,
    forgotten,
    lease_of,
    lease_servers,
)
from fast_mcp_gateway.store.rows import columns, record_of, row_of
from fast_mcp_gateway.store.sqlite_calls import SQLiteCallLog, where_clause, where_given
from fast_mcp_gateway.store.sqlite_connection import StoreConnection

__all__ = ["SQLiteStore", "StorageError"]

R = TypeVar("R")
logger = logging.getLogger(__name__)
HOLDS = "registered servers' headers and environment in clear"
# Retention: each table's age column and the order its batches go in (an index's, or
# rowid: the histories' insertion order).
_BY_AGE = (("invocations", "started_at", "started_at, id"),
           ("invocation_minutes", "period", "period"), ("invocation_hours", "period", "period"),
           ("audit", "at", "rowid"), ("health_records", "at", "rowid"),
           ("inspector_history", "at", "rowid"), ("alert_events", "at", "rowid"))


class SQLiteStore(SQLiteCallLog, SQLiteCredentials):
    """Async access to the gateway's SQLite file.  Create with ``await SQLiteStore.open``."""

    shared = False  # one gateway owns a file

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        # Opened again at a write once the file is gone (deleted, its folder removed)
        # or another file is in its place: ``StoreConnection.same_file``.
        self._db = StoreConnection(db, path, reopen=None if path == ":memory:" else
                                   functools.partial(self._reopened, path))
        self.path = path
        self._feed = LocalChangeFeed()

    @classmethod
    async def open(cls, path: str | Path, *, allow_memory: bool = False) -> SQLiteStore:
        """Open (creating folder and file when missing) and migrate.  ``':memory:'``
        is refused unless ``allow_memory``: a gateway would lose every record."""
        path = str(path)
        if path == ":memory:" and not allow_memory:
            raise StorageError("the store needs a file: ':memory:' would lose every record "
                               "(for a throwaway store say memory:// or sqlite:///:memory:)")
        db, shared = await cls._connect(path)
        # Said once the file is known to be a gateway's store: "chmod 600" is no advice
        # for a mistyped --db naming some other file (/etc/passwd).
        report_shared(shared, HOLDS)
        return cls(db, path)

    @staticmethod
    async def _connect(path: str) -> tuple[aiosqlite.Connection, list[tuple[Path, int]]]:
        """The file at ``path`` opened (created 0600 in a 0700 folder when missing) and
        migrated; with the companions found shared (``report_shared``)."""
        shared: list[tuple[Path, int]] = []
        if path != ":memory:":
            # Created 0600 before SQLite opens it (SQLite would make it 0644): it holds
            # registrations' headers and env in clear.  SQLite gives its -wal, -shm and
            # -journal files the mode of the database file.
            try:
                created = await anyio.to_thread.run_sync(functools.partial(
                    private_file, Path(path), holds=HOLDS, companions=SQLITE_COMPANIONS,
                    warn=False))
                if not created:  # its companions as they were before SQLite opens it
                    shared = await anyio.to_thread.run_sync(
                        shared_files, Path(path), SQLITE_COMPANIONS)
            except OSError as exc:
                raise StorageError(f"{path}: cannot create it: {exc}") from exc
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"{path}: cannot open: {exc}") from exc
        try:
            await schema.prepare(db, path)
        except (sqlite3.Error, OSError) as exc:
            await db.close()
            raise StorageError(f"{path}: not a usable gateway database ({exc}); move it "
                               "away or point MCP_GATEWAY_DB elsewhere") from exc
        except BaseException:  # StorageError, or cancelled: the worker thread ends too
            with anyio.CancelScope(shield=True):
                await db.close()
            raise
        return db, shared

    @classmethod
    async def _reopened(cls, path: str) -> aiosqlite.Connection:
        return (await cls._connect(path))[0]

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        ((version,),) = await self._db.rows("PRAGMA user_version")
        return int(version)

    async def count(self, table: str) -> int:
        """Rows in one table (for tests and benchmarks)."""
        if table not in schema.TABLES:
            raise StorageError(f"no table {table!r}")
        ((n,),) = await self._db.rows(f"SELECT COUNT(*) FROM {table}")
        return int(n)

    async def prune(self, *, max_age_seconds: float | None, max_rows: int | None,
                    now: float | None = None) -> int:
        # In batches (``PRUNE_BATCH`` rows, each its own statement and transaction): one
        # DELETE held the file's write lock for its whole length (0.83-1.56 s per 100k
        # records), past another gateway's busy timeout on a large prune.
        now = time.time() if now is None else now
        removed = 0
        if max_age_seconds is not None:
            cutoff = now - max_age_seconds
            for table, column, order in _BY_AGE:
                bound = (int(cutoff // 60) if table == "invocation_minutes" else
                         int(cutoff // 3600) if table == "invocation_hours" else cutoff)
                gone = await self._pruned(table, f"{column} < ?", order, (bound,))
                removed += gone if table == "invocations" else 0
        if max_rows is not None:  # up to the newest record beyond the newest max_rows
            last = await self._db.rows("SELECT started_at, id FROM invocations ORDER BY"
                                       " started_at DESC, id DESC LIMIT 1 OFFSET ?",
                                       (max_rows,))
            if last:
                removed += await self._pruned("invocations", "(started_at, id) <= (?, ?)",
                                              "started_at, id", tuple(last[0]))
        return removed

    async def _pruned(self, table: str, where: str, order: str, args: tuple[Any, ...]
                      ) -> int:
        """Delete ``table``'s rows matching ``where``, ``PRUNE_BATCH`` at a time (other
        writers, here and in other processes, get the file between two); how many."""
        total = 0
        while True:
            cur = await self._db.run(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE"
                f" {where} ORDER BY {order} LIMIT {PRUNE_BATCH})", args)
            total += cur.rowcount
            if cur.rowcount < PRUNE_BATCH:
                return total

    # -- control plane: runtime server registrations and route rules --------------------

    async def put_server(self, name: str, config: dict[str, Any] | None, enabled: bool) -> None:
        await self._db.run(
            "INSERT INTO servers (name, config, enabled, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT (name) DO UPDATE SET config = excluded.config,"
            " enabled = excluded.enabled, updated_at = excluded.updated_at",
            (name, json.dumps(config) if config is not None else "null", int(enabled),
             time.time()))
        self._feed.note("server", name)
        await self._forget_old_pages()

    async def add_server(self, name: str, config: dict[str, Any], enabled: bool) -> bool:
        # One statement: SQLite's write lock decides between gateways on one file.
        rows = await self._db.returning(schema.ADD_SERVER, (
            name, json.dumps(config), int(enabled), time.time(), *VACANT_CONFIGS))
        if rows:
            self._feed.note("server", name)
        return bool(rows)

    async def set_server_enabled(self, name: str, enabled: bool) -> None:
        await self._db.run(
            "INSERT INTO servers (name, config, enabled, updated_at) VALUES (?,'null',?,?)"
            " ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled,"
            " updated_at = excluded.updated_at", (name, int(enabled), time.time()))
        self._feed.note("server", name)

    async def delete_server(self, name: str) -> None:
        cur = await self._db.run("DELETE FROM servers WHERE name = ?", (name,))
        if cur.rowcount:
            self._feed.note("server", name)
            await self._forget_old_pages()

    async def _forget_old_pages(self) -> None:
        """Empty the WAL after a registration changed or went: it holds the old images of
        the pages written since the last checkpoint, secrets included (the file itself
        gets the zeroed pages: ``secure_delete``).  ``TRUNCATE`` waits ``busy_timeout``
        for other connections' reads; one still reading then (another gateway, the CLI)
        leaves the WAL as it is until the next change or the last connection closes.
        Shielded and never raising: the change it follows is made, and its caller is
        told so (``sqlite_connection``: a write handed over ends and returns)."""
        if self.path == ":memory:":
            return
        try:
            with anyio.CancelScope(shield=True):
                rows = await self._db.returning("PRAGMA wal_checkpoint(TRUNCATE)")
        except StorageError as exc:
            logger.warning("%s: the store's WAL could not be emptied after a change of a "
                           "registration, so it may hold the old settings until the next "
                           "one: %s", self.path, exc)
            return
        if rows and rows[0][0]:
            logger.warning("%s: another connection was reading, so the store's WAL still "
                           "holds the registration's old settings until the next change "
                           "of a registration or until every gateway and CLI using the "
                           "file stops", self.path)

    async def servers(self) -> list[Registration]:
        rows = await self._db.rows(f"SELECT {columns(Registration)} FROM servers"
                                   " ORDER BY name")
        return [record_of(Registration, row) for row in rows]

    async def add_route(self, pattern: str, match: RouteMatch, target: str,
                        priority: int) -> int:
        cur = await self._db.run(
            "INSERT INTO routes (pattern, match, priority, target, created_at)"
            " VALUES (?,?,?,?,?)", (pattern, match, priority, target, time.time()))
        route_id = int(cur.lastrowid or 0)
        self._feed.note("route", route_id)
        return route_id

    async def update_route(self, route_id: int, pattern: str, match: RouteMatch,
                           target: str, priority: int) -> bool:
        cur = await self._db.run(
            "UPDATE routes SET pattern=?, match=?, target=?, priority=? WHERE id=?",
            (pattern, match, target, priority, route_id))
        self._feed.note_each("route", (str(route_id),) if cur.rowcount > 0 else ())
        return cur.rowcount > 0

    async def delete_route(self, route_id: int) -> bool:
        cur = await self._db.run("DELETE FROM routes WHERE id=?", (route_id,))
        self._feed.note_each("route", (str(route_id),) if cur.rowcount > 0 else ())
        return cur.rowcount > 0

    async def routes(self) -> list[RouteRecord]:
        rows = await self._db.rows(f"SELECT {columns(RouteRecord)} FROM routes"
                                   " ORDER BY priority DESC, id")
        return [record_of(RouteRecord, row) for row in rows]

    async def changes(self, since: int = 0, *, wait: float = 0.0) -> ChangeBatch:
        return await self._feed.changes(since, wait=wait)

    # -- histories: health, audit, inspector ---------------------------------------------

    async def add_health_records(self, rows: Sequence[HealthRecord]) -> None:
        await self._db.write((
            f"INSERT INTO health_records ({columns(HealthRecord, assigned_id=False)})"
            " VALUES (?,?,?,?,?,?)", [row_of(r, assigned_id=False) for r in rows]))

    async def health_records(self, *, server: str | None = None, limit: int = 50,
                             before_id: int | None = None) -> list[HealthRecord]:
        return await self._page(HealthRecord, "health_records", server, limit, before_id)

    async def add_audit(self, actor: str, action: str, target: str | None,
                        arguments: str | None, result: str | None,
                        instance_id: str | None = None, *, at: float | None = None,
                        uid: str | None = None) -> None:
        await self._db.run(
            f"INSERT INTO audit ({columns(AuditEntry, assigned_id=False)})"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (uid) DO NOTHING",
            (time.time() if at is None else at, actor, action, target, arguments, result,
             instance_id, uid))

    async def audit(self, *, limit: int = 50, before_id: int | None = None
                    ) -> list[AuditEntry]:
        return await self._page(AuditEntry, "audit", None, limit, before_id)

    async def add_inspection(self, server: str, replica: str | None, operation: str,
                             target: str | None, arguments: str | None, status: str,
                             duration_ms: float, result: str | None) -> int:
        cur = await self._db.run(
            "INSERT INTO inspector_history (at, server, replica, operation, target, arguments,"
            " status, duration_ms, result) VALUES (?,?,?,?,?,?,?,?,?)",
            (time.time(), server, replica, operation, target, arguments, status, duration_ms,
             result))
        return int(cur.lastrowid or 0)

    async def inspections(self, *, server: str | None = None, limit: int = 50,
                          before_id: int | None = None) -> list[InspectionRecord]:
        return await self._page(InspectionRecord, "inspector_history", server, limit,
                                before_id)

    async def clear_inspections(self, server: str | None = None) -> int:
        cur = await self._db.run(
            "DELETE FROM inspector_history" + (" WHERE server = ?" if server else ""),
            [server] if server else [])
        return cur.rowcount

    # -- learned eras -------------------------------------------------------------------

    async def era_needs(self) -> list[EraNeed]:
        rows = await self._db.rows(f"SELECT {columns(EraNeed)} FROM era_needs ORDER BY server")
        return [record_of(EraNeed, row) for row in rows]

    async def put_era_need(self, need: EraNeed) -> None:
        await self._db.run(f"INSERT OR REPLACE INTO era_needs ({columns(EraNeed)})"
                           " VALUES (?,?,?,?,?)", row_of(need))

    async def name_bindings(self) -> list[NameBinding]:
        rows = await self._db.rows(f"SELECT {columns(NameBinding)} FROM name_bindings"
                                   " ORDER BY kind, exposed")
        return [record_of(NameBinding, row) for row in rows]

    async def claim_names(self, claims: Sequence[NameBinding]) -> list[NameBinding]:
        await self._db.write((schema.CLAIM_NAMES[0], [(c.kind, c.server, c.original, c.base)
                                                      for c in claims]),
                             (schema.CLAIM_NAMES[1], [row_of(c) for c in claims]))
        rows = await self._db.rows(  # the claimed components' and names' holders
            f"SELECT {columns(NameBinding)} FROM name_bindings WHERE server IN (SELECT value"
            " FROM json_each(?1)) OR exposed IN (SELECT value FROM json_each(?2))",
            (json.dumps(sorted({c.server for c in claims})),
             json.dumps(sorted({c.exposed for c in claims}))))
        return claimed((record_of(NameBinding, r) for r in rows), claims)

    async def release_names(self, server: str) -> int:
        cur = await self._db.run("DELETE FROM name_bindings WHERE server = ?", (server,))
        self._feed.note_each("names", (server,) if cur.rowcount else ())
        return cur.rowcount

    async def forget_names(self, bindings: Sequence[NameBinding]) -> int:
        rows = [[b.kind, b.exposed, b.server, b.original] for b in bindings]
        gone = list(await self._db.returning(schema.FORGET_NAMES, (json.dumps(rows),)))
        self._feed.note_each("names", (r[0] for r in gone))
        return len(gone)

    # -- alerts -----------------------------------------------------------------------

    async def alert_rules(self) -> list[AlertRuleRecord]:
        rows = await self._db.rows(f"SELECT {columns(AlertRuleRecord)} FROM alert_rules"
                                   " ORDER BY name")
        return [record_of(AlertRuleRecord, row) for row in rows]

    async def put_alert_rule(self, name: str, config: dict[str, Any] | None) -> None:
        await self._db.run(
            "INSERT INTO alert_rules (name, config, updated_at) VALUES (?,?,?)"
            " ON CONFLICT (name) DO UPDATE SET config = excluded.config,"
            " updated_at = excluded.updated_at", (name, json.dumps(config), time.time()))

    async def delete_alert_rule(self, name: str) -> bool:
        cur = await self._db.run("DELETE FROM alert_rules WHERE name = ?", (name,))
        return cur.rowcount > 0

    async def add_alert_events(self, rows: Sequence[AlertEvent]) -> None:
        await self._db.write((
            f"INSERT INTO alert_events ({columns(AlertEvent, assigned_id=False)})"
            " VALUES (?,?,?,?,?,?,?,?,?)", [row_of(r, assigned_id=False) for r in rows]))

    async def alert_events(self, *, server: str | None = None, rule: str | None = None,
                           limit: int = 50, before_id: int | None = None
                           ) -> list[AlertEvent]:
        return await self._page(AlertEvent, "alert_events", server, limit, before_id,
                                rule=rule)

    async def hold_lease(self, name: str, holder: str, ttl: float,
                         servers: Iterable[str] | None = None) -> bool:
        rows = await self._db.returning(schema.LEASE, (name, holder, ttl,
                                                       lease_servers(servers, holder)))
        return any(row[0] == holder for row in rows)

    async def release_lease(self, name: str, holder: str) -> None:
        await self._db.run("DELETE FROM leases WHERE name = ? AND holder = ?",
                           (name, holder))

    async def lease(self, name: str) -> Lease | None:
        rows = await self._db.rows(f"{schema.LEASES} WHERE name = ?", (name,))
        return next((lease_of(row) for row in rows), None)

    async def leases(self, prefix: str) -> list[Lease]:
        rows = await self._db.rows(f"{schema.LEASES} WHERE substr(name, 1, ?) = ?"
                                   " ORDER BY name", (len(prefix), prefix))
        return [lease_of(row) for row in rows]

    async def _page(self, record: type[R], table: str, server: str | None, limit: int,
                    before_id: int | None, *, rule: str | None = None) -> list[R]:
        """Newest first, optionally one server's, older than ``before_id`` (id paging)."""
        where, args = where_given((("server = ?", server), ("rule = ?", rule),
                              ("id < ?", before_id)))
        rows = await self._db.rows(f"SELECT {columns(record)} FROM {table}" + where_clause(where)
                                   + " ORDER BY id DESC LIMIT ?", [*args, limit])
        return [record_of(record, row) for row in rows]

    # -- pins -----------------------------------------------------------------------------

    async def pins(self, server: str | None = None) -> list[PinRecord]:
        sql = f"SELECT {PIN_COLUMNS} FROM pins"
        args: tuple[str, ...] = ()
        if server is not None:
            sql, args = sql + " WHERE server = ?", (server,)
        rows = await self._db.rows(sql + " ORDER BY server, kind, name, status", args)
        return [pin_record(row) for row in rows]

    async def put_pins(self, rows: Sequence[PinRecord]) -> None:
        await self._db.write((f"INSERT OR REPLACE INTO pins ({PIN_COLUMNS}) VALUES"
                              " (?,?,?,?,?,?,?,?,?)", [pin_row(r) for r in rows]))

    async def delete_pins(self, server: str, keys: Sequence[tuple[str, str, str]] | None = None
                          ) -> int:
        if keys is None:
            cur = await self._db.run("DELETE FROM pins WHERE server = ?", (server,))
            return cur.rowcount
        (removed,) = await self._db.write((
            "DELETE FROM pins WHERE server = ? AND kind = ? AND name = ? AND status = ?",
            [(server, kind, name, status) for kind, name, status in keys]))
        return removed

    async def forget_pins(self, server: str, actor: str) -> tuple[int, int]:
        counts = [0, 0]

        def then(rows: list[Any]) -> list[tuple[str, list[tuple[Any, ...]]]]:
            approved = sum(status == "approved" for (status,) in rows)
            counts[:] = [approved, len(rows) - approved]
            return [] if not rows else [
                ("DELETE FROM pins WHERE server = ?", [(server,)]),
                (f"INSERT INTO audit ({columns(AuditEntry, assigned_id=False)})"
                 " VALUES (?,?,?,?,?,?,?,?)", [(time.time(), actor, "forget_pins", server,
                                                None, forgotten(*counts), None, None)])]

        await self._db.write_after(("SELECT status FROM pins WHERE server = ?", (server,)),
                                   then)
        return counts[0], counts[1]
