"""The PostgreSQL backend: one database shared by several gateways (asyncpg).

``PostgresStore.open(url)`` connects a small pool, migrates under an advisory lock
(postgres_schema.py) and serves every store protocol with the SQLite backend's
semantics (the contract suite, tests/test_store_contract.py, runs against both):
the same ordering, cursors, aggregates (histogram buckets as columns, store/stats.py)
and retention.  The call log's queries (records, pages, statistics) are those of its
base class, ``PgCallLog`` (postgres_calls.py); retention, in bounded batches, is
postgres_retention.py's.

Shared state.  ``servers`` and ``routes`` (and the releases and forgets of
``name_bindings``) are written together with a row of the change feed (postgres_feed.py)
in one transaction, followed by ``NOTIFY``; every gateway on the database sees every
writer's changes (``shared = True``).

Failures.  asyncpg is imported on first use (SQLite needs nothing installed).  A
database that cannot be reached is ``StoreUnavailable`` -- the call did not happen; the
pool reconnects by itself once the server is back -- and any other PostgreSQL error is a
``StorageError``; messages name ``user@host:port/db``, never the password.  A write
cancelled once it has its connection ends and returns what it did (``_written``), as a
SQLite write handed to its worker does: the caller learns what happened.  Each write is
one transaction bounded by ``WRITE_TIMEOUT`` (postgres_busy.py): a lock another session
holds makes it "the store is busy", after seconds, not a minute.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from fast_mcp_gateway.store import postgres_retention as retention
from fast_mcp_gateway.store import postgres_schema as schema
from fast_mcp_gateway.store.base import (
    PIN_COLUMNS,
    VACANT_CONFIGS,
    StorageError,
    pin_record,
    pin_row,
)
from fast_mcp_gateway.store.credentials import PgCredentials
from fast_mcp_gateway.store.eras import EraNeed
from fast_mcp_gateway.store.names import NameBinding, claimed
from fast_mcp_gateway.store.outage import pool_connect, quiet_pool_floor
from fast_mcp_gateway.store.postgres_busy import bounded_transaction
from fast_mcp_gateway.store.postgres_calls import PgCallLog
from fast_mcp_gateway.store.postgres_feed import (
    POOL_SIZE,
    URL_FORM,
    PgChangeFeed,
    Query,
    application,
    describe_url,
    load_asyncpg,
    rowcount,
    store_error,
    unknown_host,
    url_problem,
)
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

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresStore"]

R = TypeVar("R")


class PostgresStore(PgCallLog, PgCredentials):
    """Every ``Store`` protocol on PostgreSQL.  Create with ``await PostgresStore.open``."""

    shared = True

    def __init__(self, pool: asyncpg.Pool, url: str, where: str, timeout: float) -> None:
        self._pool = pool
        self._url = url
        self.where = where
        self._timeout = timeout
        self._feed = PgChangeFeed(self._conn, url, timeout)

    @classmethod
    async def open(cls, url: str, *, connect_timeout: float = 10.0,
                   max_size: int = POOL_SIZE) -> PostgresStore:
        """Connect and migrate; ``StoreUnavailable`` when the server cannot be reached,
        ``StorageError`` when it refuses (no such database, authentication...)."""
        asyncpg = load_asyncpg()
        quiet_pool_floor()  # an outage is said once, by the gateway (store/outage.py)
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        if (problem := url_problem(dsn)) is not None:
            raise StorageError(f"the PostgreSQL URL cannot be used: {problem}; fix the "
                               f"URL: {URL_FORM}")
        where = describe_url(dsn)
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size,
                                             timeout=connect_timeout, command_timeout=60,
                                             server_settings=application(dsn),
                                             connect=pool_connect(asyncpg.connect))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a clear message
            raise unknown_host(exc, dsn, where) or store_error(exc, where,
                                                               "cannot connect") from None
        try:
            async with pool.acquire() as conn:
                await schema.migrate(conn, where)
        except StorageError:
            await pool.close()
            raise
        except Exception as exc:  # noqa: BLE001
            await pool.close()
            raise store_error(exc, where, "cannot migrate") from None
        return cls(pool, dsn, where, connect_timeout)

    async def close(self) -> None:
        await self._feed.close()
        with anyio.move_on_after(5) as scope:
            await self._pool.close()
        if scope.cancelled_caught:
            self._pool.terminate()

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; asyncpg's failures become the store's errors."""
        asyncpg = load_asyncpg()
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn:
                yield conn
        except StorageError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError,
                asyncpg.exceptions.InternalClientError) as exc:
            raise store_error(exc, self.where, "failed") from exc

    @asynccontextmanager
    async def _written(self) -> AsyncIterator[asyncpg.Connection]:
        """``_conn`` for a write: a write cancelled while it waits for a connection never
        runs; once it has one it is shielded, so it ends and returns what it did, and the
        cancellation lands at the caller's next checkpoint.  (asyncpg answers a cancelled
        query at once and asks the server, on another connection, to cancel it: a
        statement or COMMIT the server finished first was done, its caller told
        "cancelled" -- a registration never applied here, as the feed skips this
        gateway's own changes.)  The connection's release is shielded too: it is a
        checkpoint the cancellation would land at, inside the write.  It is one
        transaction, bounded by ``WRITE_TIMEOUT`` (its lock waits and each statement:
        ``postgres_busy``), so a stop waits no longer for it; a write that hits the bound
        was not made, and raises the store-is-busy ``StoreUnavailable``."""
        stack = AsyncExitStack()
        conn = await stack.enter_async_context(self._conn())
        with anyio.CancelScope(shield=True):
            async with stack, bounded_transaction(conn, self.where):
                yield conn

    async def schema_version(self) -> int:
        async with self._conn() as conn:
            return await schema.schema_version(conn)

    async def count(self, table: str) -> int:
        """Rows in one table (for tests and benchmarks)."""
        if table not in schema.TABLES:
            raise StorageError(f"no table {table!r}")
        async with self._conn() as conn:
            return int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))

    # -- retention (postgres_retention.py; the call log's queries: postgres_calls.py) ------

    async def prune(self, *, max_age_seconds: float | None, max_rows: int | None,
                    now: float | None = None) -> int:
        # In batches, each a short transaction bounded as a write is, and cancellable (a
        # stop does not wait for it): postgres_retention.py.
        return await retention.prune(
            self._conn, self.where, max_age_seconds=max_age_seconds, max_rows=max_rows,
            now=time.time() if now is None else now, prune_feed=self._feed.prune)

    # -- control plane ----------------------------------------------------------------

    @asynccontextmanager
    async def _mutation(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction holding the feed lock: its change rows get sequence numbers in
        commit order (see the module docstring)."""
        async with self._written() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", schema.FEED_LOCK)
            yield conn
        self._feed.wake()

    async def put_server(self, name: str, config: dict[str, Any] | None, enabled: bool) -> None:
        async with self._mutation() as conn:
            await conn.execute(
                "INSERT INTO servers (name, config, enabled, updated_at) VALUES ($1,$2,$3,$4)"
                " ON CONFLICT (name) DO UPDATE SET config = excluded.config,"
                " enabled = excluded.enabled, updated_at = excluded.updated_at",
                name, json.dumps(config) if config is not None else "null", enabled,
                time.time())
            await self._feed.note(conn, "server", name)

    async def add_server(self, name: str, config: dict[str, Any], enabled: bool) -> bool:
        async with self._mutation() as conn:
            added = await conn.fetchval(
                "INSERT INTO servers (name, config, enabled, updated_at) VALUES ($1,$2,$3,$4)"
                " ON CONFLICT (name) DO UPDATE SET config = excluded.config,"
                " enabled = excluded.enabled, updated_at = excluded.updated_at"
                " WHERE servers.config = ANY($5::text[]) RETURNING TRUE",
                name, json.dumps(config), enabled, time.time(), list(VACANT_CONFIGS))
            if added:
                await self._feed.note(conn, "server", name)
        return bool(added)

    async def set_server_enabled(self, name: str, enabled: bool) -> None:
        async with self._mutation() as conn:
            await conn.execute(
                "INSERT INTO servers (name, config, enabled, updated_at) VALUES ($1,'null',$2,$3)"
                " ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled,"
                " updated_at = excluded.updated_at", name, enabled, time.time())
            await self._feed.note(conn, "server", name)

    async def delete_server(self, name: str) -> None:
        async with self._mutation() as conn:
            if rowcount(await conn.execute("DELETE FROM servers WHERE name = $1", name)):
                await self._feed.note(conn, "server", name)

    async def servers(self) -> list[Registration]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {columns(Registration)} FROM servers"
                                    " ORDER BY name")
        return [record_of(Registration, row) for row in rows]

    async def add_route(self, pattern: str, match: RouteMatch, target: str,
                        priority: int) -> int:
        async with self._mutation() as conn:
            route_id = int(await conn.fetchval(
                "INSERT INTO routes (pattern, match, priority, target, created_at)"
                " VALUES ($1,$2,$3,$4,$5) RETURNING id", pattern, match, priority, target,
                time.time()))
            await self._feed.note(conn, "route", route_id)
        return route_id

    async def update_route(self, route_id: int, pattern: str, match: RouteMatch,
                           target: str, priority: int) -> bool:
        async with self._mutation() as conn:
            changed = rowcount(await conn.execute(
                "UPDATE routes SET pattern=$1, match=$2, target=$3, priority=$4 WHERE id=$5",
                pattern, match, target, priority, route_id)) > 0
            if changed:
                await self._feed.note(conn, "route", route_id)
        return changed

    async def delete_route(self, route_id: int) -> bool:
        async with self._mutation() as conn:
            changed = rowcount(await conn.execute("DELETE FROM routes WHERE id=$1",
                                                   route_id)) > 0
            if changed:
                await self._feed.note(conn, "route", route_id)
        return changed

    async def routes(self) -> list[RouteRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {columns(RouteRecord)} FROM routes"
                                    " ORDER BY priority DESC, id")
        return [record_of(RouteRecord, row) for row in rows]

    async def changes(self, since: int = 0, *, wait: float = 0.0) -> ChangeBatch:
        return await self._feed.changes(since, wait=wait)

    # -- histories: health, audit, inspector ---------------------------------------------

    async def add_health_records(self, rows: Sequence[HealthRecord]) -> None:
        if not rows:
            return
        async with self._written() as conn:
            await conn.executemany(
                f"INSERT INTO health_records ({columns(HealthRecord, assigned_id=False)})"
                " VALUES ($1,$2,$3,$4,$5,$6)", [row_of(r, assigned_id=False) for r in rows])

    async def health_records(self, *, server: str | None = None, limit: int = 50,
                             before_id: int | None = None) -> list[HealthRecord]:
        return await self._page(HealthRecord, "health_records", server, limit, before_id)

    async def add_audit(self, actor: str, action: str, target: str | None,
                        arguments: str | None, result: str | None,
                        instance_id: str | None = None, *, at: float | None = None,
                        uid: str | None = None) -> None:
        async with self._written() as conn:
            await conn.execute(
                f"INSERT INTO audit ({columns(AuditEntry, assigned_id=False)})"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (uid) DO NOTHING",
                time.time() if at is None else at, actor, action, target, arguments,
                result, instance_id, uid)

    async def audit(self, *, limit: int = 50, before_id: int | None = None
                    ) -> list[AuditEntry]:
        return await self._page(AuditEntry, "audit", None, limit, before_id)

    async def add_inspection(self, server: str, replica: str | None, operation: str,
                             target: str | None, arguments: str | None, status: str,
                             duration_ms: float, result: str | None) -> int:
        async with self._written() as conn:
            return int(await conn.fetchval(
                "INSERT INTO inspector_history (at, server, replica, operation, target,"
                " arguments, status, duration_ms, result) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
                " RETURNING id", time.time(), server, replica, operation, target, arguments,
                status, duration_ms, result))

    async def inspections(self, *, server: str | None = None, limit: int = 50,
                          before_id: int | None = None) -> list[InspectionRecord]:
        return await self._page(InspectionRecord, "inspector_history", server, limit,
                                before_id)

    async def clear_inspections(self, server: str | None = None) -> int:
        async with self._written() as conn:
            return rowcount(await conn.execute(
                "DELETE FROM inspector_history" + (" WHERE server = $1" if server else ""),
                *([server] if server else [])))

    # -- learned eras -------------------------------------------------------------------

    async def era_needs(self) -> list[EraNeed]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {columns(EraNeed)} FROM era_needs ORDER BY server")
        return [record_of(EraNeed, row) for row in rows]

    async def put_era_need(self, need: EraNeed) -> None:
        async with self._written() as conn:
            await conn.execute(
                f"INSERT INTO era_needs ({columns(EraNeed)}) VALUES ($1,$2,$3,$4,$5)"
                " ON CONFLICT (server) DO UPDATE SET start = excluded.start,"
                " era = excluded.era, reason = excluded.reason, at = excluded.at",
                *row_of(need))

    async def name_bindings(self) -> list[NameBinding]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {columns(NameBinding)} FROM name_bindings"
                                    " ORDER BY kind, exposed")
        return [record_of(NameBinding, row) for row in rows]

    async def claim_names(self, claims: Sequence[NameBinding]) -> list[NameBinding]:
        async with self._written() as conn:
            await conn.executemany(
                "DELETE FROM name_bindings WHERE kind = $1 AND server = $2 AND original = $3"
                " AND base <> $4", [(c.kind, c.server, c.original, c.base) for c in claims])
            await conn.executemany(
                f"INSERT INTO name_bindings ({columns(NameBinding)}) VALUES ($1,$2,$3,$4,$5,$6)"
                " ON CONFLICT DO NOTHING", [row_of(c) for c in claims])
            rows = await conn.fetch(  # the claimed components' and names' holders
                f"SELECT {columns(NameBinding)} FROM name_bindings"
                " WHERE server = ANY($1::text[]) OR exposed = ANY($2::text[])",
                sorted({c.server for c in claims}), sorted({c.exposed for c in claims}))
        return claimed((record_of(NameBinding, r) for r in rows), claims)

    async def release_names(self, server: str) -> int:
        # A change in the feed: the other gateways re-claim or drop them (bindings.py).
        async with self._mutation() as conn:
            gone = rowcount(await conn.execute("DELETE FROM name_bindings WHERE server = $1",
                                               server))
            if gone:
                await self._feed.note(conn, "names", server)
        return gone

    async def forget_names(self, bindings: Sequence[NameBinding]) -> int:
        if not bindings:
            return 0
        async with self._mutation() as conn:
            rows = await conn.fetch(
                "DELETE FROM name_bindings WHERE (kind, exposed, server, original) IN"
                " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]))"
                " RETURNING server",
                *([getattr(b, f) for b in bindings]
                  for f in ("kind", "exposed", "server", "original")))
            for server in sorted({r[0] for r in rows}):
                await self._feed.note(conn, "names", server)
        return len(rows)

    # -- alerts -----------------------------------------------------------------------

    async def alert_rules(self) -> list[AlertRuleRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {columns(AlertRuleRecord)} FROM alert_rules"
                                    " ORDER BY name")
        return [record_of(AlertRuleRecord, row) for row in rows]

    async def put_alert_rule(self, name: str, config: dict[str, Any] | None) -> None:
        async with self._written() as conn:
            await conn.execute(
                "INSERT INTO alert_rules (name, config, updated_at) VALUES ($1,$2,$3)"
                " ON CONFLICT (name) DO UPDATE SET config = excluded.config,"
                " updated_at = excluded.updated_at", name, json.dumps(config), time.time())

    async def delete_alert_rule(self, name: str) -> bool:
        async with self._written() as conn:
            return rowcount(await conn.execute("DELETE FROM alert_rules WHERE name = $1",
                                               name)) > 0

    async def add_alert_events(self, rows: Sequence[AlertEvent]) -> None:
        if not rows:
            return
        async with self._written() as conn:
            await conn.executemany(
                f"INSERT INTO alert_events ({columns(AlertEvent, assigned_id=False)}) VALUES"
                " ($1,$2,$3,$4,$5,$6,$7,$8,$9)", [row_of(r, assigned_id=False) for r in rows])

    async def hold_lease(self, name: str, holder: str, ttl: float,
                         servers: Iterable[str] | None = None) -> bool:
        async with self._written() as conn:
            holder_now = await conn.fetchval(schema.LEASE, name, holder, ttl,
                                             lease_servers(servers, holder))
        return bool(holder_now == holder)

    async def release_lease(self, name: str, holder: str) -> None:
        async with self._written() as conn:
            await conn.execute("DELETE FROM leases WHERE name = $1 AND holder = $2",
                               name, holder)

    async def lease(self, name: str) -> Lease | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"{schema.LEASES} WHERE name = $1", name)
        return None if row is None else lease_of(row)

    async def leases(self, prefix: str) -> list[Lease]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"{schema.LEASES} WHERE left(name, char_length($1)) = $1"
                                    " ORDER BY name", prefix)
        return [lease_of(r) for r in rows]

    async def alert_events(self, *, server: str | None = None, rule: str | None = None,
                           limit: int = 50, before_id: int | None = None
                           ) -> list[AlertEvent]:
        return await self._page(AlertEvent, "alert_events", server, limit, before_id,
                                rule=rule)

    async def _page(self, record: type[R], table: str, server: str | None, limit: int,
                    before_id: int | None, *, rule: str | None = None) -> list[R]:
        """Newest first, optionally one server's, older than ``before_id`` (id paging)."""
        q = Query().where("server = {}", server).where("rule = {}", rule)
        q.where("id < {}", before_id)
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {columns(record)} FROM {table}{q.clause()}"
                                    f" ORDER BY id DESC LIMIT {q.arg(limit)}", *q.args)
        return [record_of(record, row) for row in rows]


    # -- pins -----------------------------------------------------------------------------

    async def pins(self, server: str | None = None) -> list[PinRecord]:
        where, args = (" WHERE server = $1", [server]) if server is not None else ("", [])
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {PIN_COLUMNS} FROM pins{where}"
                                    " ORDER BY server, kind, name, status", *args)
        return [pin_record(tuple(row)) for row in rows]

    async def put_pins(self, rows: Sequence[PinRecord]) -> None:
        async with self._written() as conn:
            await conn.executemany(
                f"INSERT INTO pins ({PIN_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
                " ON CONFLICT (server, kind, name, status) DO UPDATE SET"
                " digest = excluded.digest, definition = excluded.definition,"
                " actor = excluded.actor, at = excluded.at, markers = excluded.markers",
                [pin_row(r) for r in rows])

    async def delete_pins(self, server: str, keys: Sequence[tuple[str, str, str]] | None = None
                          ) -> int:
        async with self._written() as conn:
            if keys is None:
                return rowcount(await conn.execute("DELETE FROM pins WHERE server = $1",
                                                   server))
            removed = 0
            for kind, name, status in keys:
                removed += rowcount(await conn.execute(
                    "DELETE FROM pins WHERE server = $1 AND kind = $2 AND name = $3"
                    " AND status = $4", server, kind, name, status))
            return removed

    async def forget_pins(self, server: str, actor: str) -> tuple[int, int]:
        async with self._written() as conn:
            statuses = await conn.fetch("DELETE FROM pins WHERE server = $1 RETURNING status",
                                        server)
            approved = sum(r["status"] == "approved" for r in statuses)
            if statuses:
                await conn.execute(
                    f"INSERT INTO audit ({columns(AuditEntry, assigned_id=False)})"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8)", time.time(), actor, "forget_pins",
                    server, None, forgotten(approved, len(statuses) - approved), None, None)
        return approved, len(statuses) - approved
