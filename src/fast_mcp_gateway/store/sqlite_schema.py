"""The SQLite file's schema: versioned migrations, and the checks run when it is opened.

``prepare`` checks the file's integrity, switches it to WAL, applies the pending
``MIGRATIONS`` in order (each in one transaction, ``PRAGMA user_version`` recording the
last; the version read again once the transaction holds the write lock, so gateways
opening a new file at once migrate it once), then checks that every table has the
columns its version promises.  A file it cannot use is a ``StorageError`` naming the
file and the reason -- never a silent reset.

The aggregate tables (``invocation_minutes``, ``invocation_hours``) hold one row per
(period, server, exposed) with the latency histogram's buckets as columns ``h0..h48``,
so a statistics query sums a few thousand rows inside SQLite whatever the number of calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import aiosqlite

from fast_mcp_gateway.store import schema_readers, sqlite_connection
from fast_mcp_gateway.store.base import StorageError
from fast_mcp_gateway.store.stats import HIST_COLUMNS


def _aggregate_tables(script: str) -> str:
    """Expand ``AGGREGATE_TABLE(name)``: a per-period, per-tool aggregate table."""
    columns = ", ".join(f"{h} INTEGER NOT NULL DEFAULT 0" for h in HIST_COLUMNS)
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
    (3, """
    ALTER TABLE invocations ADD COLUMN instance_id TEXT;  -- the gateway that served the call
    """),
    (4, """
    CREATE TABLE alert_rules (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL,            -- JSON AlertRule, or 'null' (deletes a file rule)
        updated_at REAL NOT NULL
    );
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        rule TEXT NOT NULL,
        server TEXT NOT NULL,
        state TEXT NOT NULL,             -- firing | resolved
        metric TEXT NOT NULL,
        value TEXT,                      -- JSON
        threshold TEXT,                  -- JSON
        severity TEXT NOT NULL,
        message TEXT
    );
    CREATE INDEX alert_events_server ON alert_events (server, id);
    CREATE INDEX alert_events_rule ON alert_events (rule, id);
    CREATE INDEX alert_events_at ON alert_events (at);
    """),
    (5, """
    CREATE TABLE pins (
        server TEXT NOT NULL,
        kind TEXT NOT NULL,              -- tool | prompt | resource | resource_template
        name TEXT NOT NULL,              -- the upstream's own name / URI
        status TEXT NOT NULL,            -- approved | pending
        digest TEXT NOT NULL,            -- sha256 of the canonical definition
        definition TEXT NOT NULL,        -- JSON
        actor TEXT NOT NULL,             -- who approved ("first use"), or the pending state
        at REAL NOT NULL,
        markers TEXT NOT NULL DEFAULT '[]',  -- JSON list of injection markers
        PRIMARY KEY (server, kind, name, status)
    );
    """),
    (6, """
    -- calls the host cancelled: counted apart from errors
    ALTER TABLE invocation_minutes ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE invocation_hours ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
    """),
    (7, """
    -- who announces what every gateway on the store sees (alerts on calls): one holder
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """),
    (8, """
    -- what protocol: auto learned about a server's era (store/eras.py)
    CREATE TABLE era_needs (
        server TEXT PRIMARY KEY,
        start TEXT NOT NULL,             -- digest of how the server is started
        era TEXT NOT NULL,               -- 2026-07-28 | handshake
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    """),
    (9, """
    -- which server's tool or prompt each exposed name belongs to (store/names.py)
    CREATE TABLE name_bindings (
        kind TEXT NOT NULL,              -- tool | prompt
        exposed TEXT NOT NULL,
        server TEXT NOT NULL,
        original TEXT NOT NULL,          -- the name its server's rules give it
        base TEXT NOT NULL,              -- the name it had with nothing colliding
        at REAL NOT NULL,
        PRIMARY KEY (kind, exposed)
    );
    CREATE UNIQUE INDEX name_bindings_origin ON name_bindings (kind, server, original);
    """),
    (10, """
    -- the gateway whose replica changed, and the one that applied an admin change
    ALTER TABLE health_records ADD COLUMN instance_id TEXT;
    ALTER TABLE audit ADD COLUMN instance_id TEXT;
    """),
    (11, """
    -- an audit entry's id, given when it is made: written twice, stored once
    ALTER TABLE audit ADD COLUMN uid TEXT;
    CREATE UNIQUE INDEX audit_uid ON audit (uid);
    """),
    (12, """
    -- what client names (token | jwt | host: names of each kind may be alike), and a
    -- caller's own page of records (invocations(client=...): a caller without admin)
    -- without scanning everyone's newer records first
    ALTER TABLE invocations ADD COLUMN client_kind TEXT;
    CREATE INDEX invocations_client ON invocations (client, client_kind, started_at, id);
    """),
    (13, """
    -- the servers an instance lease's gateway configures in its config file, tagged with
    -- that holder (records.lease_servers): a forget of their pins elsewhere is refused
    ALTER TABLE leases ADD COLUMN servers TEXT;
    """),
    (14, """
    -- a server's sign-in (auth:), one row per (server, owner): only 'sealed' holds
    -- secrets, sealed with the credential keys (store/credentials.py)
    CREATE TABLE upstream_credentials (
        server TEXT NOT NULL,
        owner TEXT NOT NULL,             -- 'gateway' (one sign-in for every caller)
        issuer TEXT,
        token_endpoint TEXT,
        revocation_endpoint TEXT,
        resource TEXT,
        scopes TEXT,
        redirect_uri TEXT,
        expires_at REAL,                 -- unix seconds (the access token's)
        sealed TEXT NOT NULL,
        updated_at REAL NOT NULL,
        updated_by TEXT NOT NULL,
        PRIMARY KEY (server, owner)
    );
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
READABLE_FROM: dict[int, int] = {11: 10, 12: 10, 13: 10, 14: 10}
"""Migrations that leave the store usable by older gateways: version -> the oldest schema
version whose gateways may use it (``schema_readers``).  Only a migration that adds
(nullable columns, tables, indexes) may claim it; none of 1-10 does (they predate it).
11 does: a gateway of 10 writes its audit entries without a uid (NULL: never a conflict
under the unique index).  12 does: a gateway of 10 or 11 writes its records without
a client_kind (NULL: an admin's only).  13 does: a gateway of 10-12 holds its leases
leaving ``servers`` alone (a row it takes over keeps another holder's tag: not read as
its own, ``records.servers_of``).  14 does: a table only gateways of 14 use."""
CACHE_KIB = 128
"""SQLite page cache per connection, KiB (``PRAGMA cache_size``; SQLite's default: 2000)."""

TABLES = frozenset({"invocations", "invocation_minutes", "invocation_hours", "audit",
                    "servers", "routes", "health_records", "inspector_history",
                    "alert_rules", "alert_events", "pins", "leases", "era_needs",
                    "name_bindings", "upstream_credentials"})

# The store's clock, unix seconds (the host's, as PostgreSQL's is its server's:
# postgres_schema.CLOCK): what lease ends are written and compared by.
CLOCK = "((julianday('now') - 2440587.5) * 86400.0)"

# Take a free or expired lease for ?3 seconds, or renew one's own; returns the holder
# after it.
LEASE = ("INSERT INTO leases (name, holder, expires_at, servers)"
         f" VALUES (?1, ?2, {CLOCK} + ?3, ?4)"
         " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
         " expires_at = excluded.expires_at, servers = excluded.servers"
         f" WHERE leases.holder = excluded.holder OR leases.expires_at < {CLOCK}"
         " RETURNING holder")

# A lease's seconds left by the store's clock (records.lease_of).
LEASES = f"SELECT name, holder, expires_at - {CLOCK}, servers FROM leases"

# A claim of an exposed name (store/names.py): drop its component's binding for another
# base, then bind the name unless it, or the component, is bound already.
CLAIM_NAMES = (
    "DELETE FROM name_bindings WHERE kind = ? AND server = ? AND original = ? AND base <> ?",
    "INSERT INTO name_bindings (kind, exposed, server, original, base, at)"
    " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING")
# Forget bindings (a JSON array of [kind, exposed, server, original]), each only while
# it still binds its name to that component.
FORGET_NAMES = (  # returns the servers of the bindings that went (a change each)
    "DELETE FROM name_bindings WHERE (kind, exposed, server, original) IN (SELECT"
    " json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
    " json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?))"
    " RETURNING server")

# Insert a registration where none is (no row, or a vacant one: base.VACANT_CONFIGS);
# returns a row when it did.
ADD_SERVER = ("INSERT INTO servers (name, config, enabled, updated_at) VALUES (?1, ?2, ?3, ?4)"
              " ON CONFLICT (name) DO UPDATE SET config = excluded.config,"
              " enabled = excluded.enabled, updated_at = excluded.updated_at"
              " WHERE servers.config IN (?5, ?6) RETURNING name")

# Adds a batch's aggregates to the stored ones (min/max kept, the rest summed).
UPSERT_AGGREGATE = (
    "INSERT INTO {table} (period, server, exposed, count, errors, total_ms, min_ms, max_ms, "
    "cancelled, " + ", ".join(HIST_COLUMNS) + ") VALUES ("
    + ", ".join("?" * (9 + len(HIST_COLUMNS))) + ")"
    " ON CONFLICT (period, server, exposed) DO UPDATE SET count = count + excluded.count,"
    " errors = errors + excluded.errors, total_ms = total_ms + excluded.total_ms,"
    " cancelled = cancelled + excluded.cancelled,"
    " min_ms = min(min_ms, excluded.min_ms), max_ms = max(max_ms, excluded.max_ms), "
    + ", ".join(f"{h} = {h} + excluded.{h}" for h in HIST_COLUMNS)
)


async def prepare(db: aiosqlite.Connection, path: str) -> None:
    """Check, tune and migrate a freshly opened connection (see the module docstring).
    sqlite3 errors propagate for the caller to name the file."""
    await db.execute(f"PRAGMA busy_timeout = {sqlite_connection.BUSY_TIMEOUT_MS}")
    (check,) = await (await db.execute("PRAGMA quick_check")).fetchone() or ("?",)
    if check != "ok":
        raise StorageError(f"{path}: integrity check failed: {check}; the file was "
                           "left untouched -- restore it from a backup or move it away")
    if path != ":memory:":
        await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = NORMAL")
    # Deleted content zeroed, not left in free space: a registration taken back (an add
    # whose server did not start, a removal, a rotated key) held secrets in clear.  Its
    # cost is on deletions, off the call path: retention's prune of 100k rows took
    # 0.83 s off, 0.86-1.56 s on (a loaded machine); benchmarks/store.py's fill of
    # call records was within the noise.
    await db.execute("PRAGMA secure_delete = ON")
    # SQLite's default page cache is 2 MB per connection, and call records fill it: the
    # writes are small appends, and statistics read the minute and hour aggregates,
    # which the OS caches anyway (benchmarks/store.py: the queries' times unchanged at
    # 2 MB, 512 KiB and 128 KiB; 128 KiB holds the pages a batch of records touches).
    # The pages live in the writer thread's malloc arena, which keeps its high-water
    # mark: 512 KiB cost ~0.4 MB of RSS more than 128 once full (issue 15).
    await db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    version = await schema_version(db)
    await _refuse_newer(db, path, version)
    for target, script in MIGRATIONS:
        if target <= version:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Another process opening the file at the same moment may have applied it
            # while this one waited for the write lock ("table ... already exists").
            version = await schema_version(db)
            await _refuse_newer(db, path, version)  # a newer gateway migrated it meanwhile
            if target > version:
                for statement in statements(script):
                    await db.execute(statement)
                await db.execute(schema_readers.CREATE)
                await db.execute(f"INSERT OR REPLACE INTO {schema_readers.TABLE} VALUES (?, ?)",
                                 (target, READABLE_FROM.get(target, target)))
                await db.execute(f"PRAGMA user_version = {target}")
                version = target
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
    await _check_columns(db, path)


async def _refuse_newer(db: aiosqlite.Connection, path: str, version: int) -> None:
    if version <= SCHEMA_VERSION:
        return
    readable_from = None
    if await (await db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (schema_readers.TABLE,))).fetchone():
        row = await (await db.execute(f"SELECT readable_from FROM {schema_readers.TABLE}"
                                      " WHERE version = ?", (version,))).fetchone()
        readable_from = None if row is None else int(row[0])
    problem = schema_readers.refusal(path, version, readable_from, SCHEMA_VERSION)
    if problem is not None:
        raise StorageError(problem)


async def schema_version(db: aiosqlite.Connection) -> int:
    (version,) = await (await db.execute("PRAGMA user_version")).fetchone() or (0,)
    return int(version)


_AGGREGATE_COLUMNS = frozenset({"period", "server", "exposed", "count", "errors", "total_ms",
                                "min_ms", "max_ms", "cancelled", *HIST_COLUMNS})
COLUMNS: dict[str, frozenset[str]] = {
    "invocations": frozenset({
        "id", "trace_id", "client", "kind", "exposed", "server", "original", "replica",
        "route", "retries", "started_at", "duration_ms", "status", "error", "arguments",
        "request_bytes", "response_bytes", "rule", "instance_id", "client_kind"}),
    "invocation_minutes": _AGGREGATE_COLUMNS,
    "invocation_hours": _AGGREGATE_COLUMNS,
    "audit": frozenset({"id", "at", "actor", "action", "target", "arguments", "result",
                        "instance_id", "uid"}),
    "servers": frozenset({"name", "config", "enabled", "updated_at"}),
    "routes": frozenset({"id", "pattern", "match", "target", "priority", "created_at"}),
    "health_records": frozenset({"id", "at", "server", "replica", "status", "detail",
                                 "instance_id"}),
    "inspector_history": frozenset({
        "id", "at", "server", "replica", "operation", "target", "arguments", "status",
        "duration_ms", "result"}),
    "alert_rules": frozenset({"name", "config", "updated_at"}),
    "alert_events": frozenset({
        "id", "at", "rule", "server", "metric", "value", "threshold", "severity", "state",
        "message"}),
    "pins": frozenset({"server", "kind", "name", "digest", "definition", "markers", "status",
                       "actor", "at"}),
    "leases": frozenset({"name", "holder", "expires_at", "servers"}),
    "era_needs": frozenset({"server", "start", "era", "reason", "at"}),
    "name_bindings": frozenset({"kind", "exposed", "server", "original", "base", "at"}),
    "upstream_credentials": frozenset({
        "server", "owner", "issuer", "token_endpoint", "revocation_endpoint", "resource",
        "scopes", "redirect_uri", "expires_at", "sealed", "updated_at", "updated_by"}),
}
"""Every table's columns at ``SCHEMA_VERSION``: what ``MIGRATIONS`` build on an empty
database, written out (tests/test_store.py builds them and compares).  Building them at
each open, on a ``:memory:`` database, cost ~0.5 MB of RSS for the life of the process
(SQLite's pages and statements, freed into the main thread's heap; issue 15)."""

# Every table's columns in one statement (one prepared statement kept, not twelve).
_TABLE_COLUMNS = ("SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p"
                  " WHERE m.type = 'table'")


async def _check_columns(db: aiosqlite.Connection, path: str) -> None:
    """Refuse a file whose tables lack columns its schema version promises (e.g. one
    written by a development build), rather than losing every write to it later."""
    have: dict[str, set[str]] = {}
    for table, column in await (await db.execute(_TABLE_COLUMNS)).fetchall():
        have.setdefault(table, set()).add(column)
    for table, columns in COLUMNS.items():
        missing = sorted(columns - have.get(table, set()))
        if missing:
            raise StorageError(
                f"{path}: table {table!r} lacks column(s) {', '.join(missing)} that "
                f"schema version {SCHEMA_VERSION} has; the file was written by another "
                "build -- move it away or point MCP_GATEWAY_DB elsewhere")


def statements(script: str) -> Iterator[str]:
    """A migration's statements, one by one (run inside the caller's transaction)."""
    for statement in (s.strip() for s in _aggregate_tables(script).split(";")):
        if statement:
            yield statement
