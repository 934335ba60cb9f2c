"""The PostgreSQL backend's change feed, and the asyncpg plumbing its modules share.

``PgChangeFeed`` serves ``changes(since, wait=)`` from the ``changes`` table.  Writers
add a row inside their mutation's transaction (``note``), which holds
``pg_advisory_xact_lock(FEED_LOCK)``: sequence numbers are then handed out in commit
order, so a reader that has seen ``seq`` never misses a smaller one committed later.
``note`` also sends ``NOTIFY`` (delivered at commit).  A long poll waits on a dedicated
``LISTEN`` connection, opened on demand and dropped when the server goes away; while it
cannot listen it polls every ``POLL_SECONDS``, so a change still arrives within about a
second.  The table keeps the last ``KEEP_CHANGES`` rows; a position before them (or
after the last one: another database's) answers ``complete=False``.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from fast_mcp_gateway.store.base import StorageError, StoreUnavailable
from fast_mcp_gateway.store.postgres_schema import CHANNEL
from fast_mcp_gateway.store.records import Change, ChangeBatch, ChangeKind

if TYPE_CHECKING:
    import asyncpg

POOL_SIZE = 5  # pooled connections per gateway (``PostgresStore.open``), not the feed's
POLL_SECONDS = 1.0  # long-poll granularity while LISTEN is unavailable
KEEP_CHANGES = 10_000  # the feed reaches back this many changes (older: reload in full)


class PgChangeFeed:
    """The shared change feed of one ``PostgresStore`` (see the module docstring)."""

    def __init__(self, connect: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
                 dsn: str, timeout: float) -> None:
        self._connection = connect  # a pooled connection, errors translated
        self._dsn = dsn
        self._timeout = timeout
        self._origin = secrets.token_hex(8)  # this store object, in each row it writes
        self._listener: asyncpg.Connection | None = None
        self._changed = anyio.Event()

    async def note(self, conn: asyncpg.Connection, kind: ChangeKind, key: str | int) -> None:
        """Log a mutation inside its transaction (which holds ``FEED_LOCK``)."""
        seq = await conn.fetchval(
            "INSERT INTO changes (kind, key, origin, at) VALUES ($1, $2, $3, $4)"
            " RETURNING seq", kind, str(key), self._origin, time.time())
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(seq))

    async def changes(self, since: int = 0, *, wait: float = 0.0) -> ChangeBatch:
        batch = await self._read(since)
        if batch.changes or wait <= 0 or not batch.complete:
            return batch
        changed = self._changed
        listening = await self._listen()
        if listening:  # a change that landed before LISTEN took effect is read now
            batch = await self._read(since)
            if batch.changes:
                return batch
        with anyio.move_on_after(wait if listening else min(wait, POLL_SECONDS)):
            await changed.wait()
        return await self._read(since)

    async def _read(self, since: int) -> ChangeBatch:
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT seq, kind, key, origin, at FROM changes"
                                    " WHERE seq > $1 ORDER BY seq", since)
            pruned, last = await conn.fetchrow(
                "SELECT value, COALESCE((SELECT MAX(seq) FROM changes), value)"
                " FROM gateway_meta WHERE key = 'changes_pruned_through'")
        if since > last or since < pruned:
            return ChangeBatch(cursor=last, complete=False)
        # The cursor is the last change read, not ``last``: one committed between the
        # two reads must come in the next batch.
        return ChangeBatch(cursor=rows[-1][0] if rows else since, changes=[
            Change(seq=r[0], kind=r[1], key=r[2], at=r[4], local=r[3] == self._origin)
            for r in rows])

    async def prune(self, conn: asyncpg.Connection) -> None:
        """Keep the last ``KEEP_CHANGES`` rows; remember how far the feed was cut (in
        the caller's transaction: ``postgres_retention``)."""
        cut = await conn.fetchval("SELECT MAX(seq) - $1 FROM changes", KEEP_CHANGES)
        if cut is not None and cut > 0:
            await conn.execute("DELETE FROM changes WHERE seq <= $1", cut)
            await conn.execute("UPDATE gateway_meta SET value = GREATEST(value, $1)"
                               " WHERE key = 'changes_pruned_through'", cut)

    async def _listen(self) -> bool:
        """Have a ``LISTEN`` connection (connecting one if needed); False when the
        database cannot be reached now (the caller polls instead)."""
        if self._listener is not None and not self._listener.is_closed():
            return True
        asyncpg = load_asyncpg()
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._timeout,
                                         server_settings=application(self._dsn, "change feed"))
        except Exception:  # noqa: BLE001 - not listening only makes the long poll coarser
            return False
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except Exception:  # noqa: BLE001
            with suppress(Exception):
                await conn.close(timeout=2)
            return False
        conn.add_termination_listener(self._on_lost)
        self._listener = conn
        return True

    def _on_notify(self, *_: object) -> None:
        self.wake()

    def _on_lost(self, *_: object) -> None:
        self._listener = None
        self.wake()  # a waiter re-reads (and finds the database gone or back)

    def wake(self) -> None:
        """Wake the long polls (a change was committed, here or elsewhere)."""
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(Exception):
                await listener.close(timeout=2)


# -- asyncpg plumbing -----------------------------------------------------------------------


URL_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB"


def url_problem(url: str) -> str | None:
    """What makes a PostgreSQL URL unusable before any connection, in words that show
    none of its user information: a password with an unescaped ``/``, ``?``, ``#`` or
    ``@`` splits the URL elsewhere, and parts of it then read as the host, port or path
    (asyncpg's error and ``describe_url`` would show them)."""
    rest = url.split("://", 1)[-1]
    authority = rest
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    if "@" in rest[len(authority):]:  # an '@' past the address part: split before it
        return ("its user or password holds a '/', '?' or '#', which ends the URL's "
                "address part: percent-encode it (/ as %2F, ? as %3F, # as %23, and an "
                "@ as %40)")
    if authority.count("@") > 1:
        return "its user or password holds an '@': percent-encode it as %40"
    for host in authority.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        port = port.rpartition(":")[2] if ":" in port else ""
        if port and not port.isdigit():
            if "@" not in authority:  # 'USER:PASSWORD' without '@HOST': never shown
                return ("the part after ':' in its address is not a port number (a "
                        "password there means the URL lacks its '@HOST': "
                        "USER:PASSWORD@HOST)")
            return f"the port in the URL is not a number ({port!r})"
    return None


def describe_url(url: str) -> str:
    """``user@host:port/db`` of a PostgreSQL URL (one ``url_problem`` passes): what
    error messages may show."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{user}{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


def application(dsn: str, part: str | None = None) -> dict[str, str] | None:
    """The ``application_name`` a connection gives PostgreSQL (``pg_stat_activity``
    shows which connections are the gateway's, and what for), unless the URL names one."""
    if "application_name" in dsn:
        return None
    return {"application_name": "fast-mcp-gateway" + (f" ({part})" if part else "")}


def load_asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:
        raise StorageError("a postgresql:// store needs asyncpg: pip install "
                           "'fast-mcp-gateway[postgres]'") from None
    return asyncpg


def is_unreachable(exc: BaseException) -> bool:
    """The database cannot be reached (rather than refusing what was asked)."""
    asyncpg = load_asyncpg()
    if isinstance(exc, asyncpg.ClientConfigurationError) or _ssl_refused(exc):
        return False  # nothing to wait for: the URL must change
    return isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                            asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                            asyncpg.exceptions.OperatorInterventionError,
                            asyncpg.exceptions.InternalClientError))


def _ssl_refused(exc: BaseException) -> bool:
    """asyncpg's answer to ``sslmode=require`` (or ``verify-*``) from a server without SSL."""
    return isinstance(exc, ConnectionError) and "rejected SSL upgrade" in str(exc)


def _reason(exc: BaseException) -> str:
    """What went wrong, on one line, in words for a person."""
    asyncpg = load_asyncpg()
    if isinstance(exc, asyncpg.exceptions.InternalClientError) or (
            isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)):
        # asyncpg's own state errors: "cannot switch to state 12; another operation (2)
        # is in progress" (a pooled connection read the server's "terminating
        # connection" while idle, before the close), "cannot call Transaction.__aexit__
        # (): the underlying connection is closed" (a write's connection lost under it,
        # a PostgreSQL restarted mid-traffic): the server is going or gone.
        return "the server closed the connection: it stopped, restarted or ended the session"
    return " ".join(str(exc).split()) or type(exc).__name__  # DETAIL lines joined




class Query:
    """WHERE clauses with numbered parameters, for the conditions whose value is given."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def where(self, clause: str, *values: Any) -> Query:
        if values and values[0] is not None:
            self.conditions.append(clause.format(*(self.arg(v) for v in values)))
        return self

    def clause(self) -> str:
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


def rowcount(status: str) -> int:
    """The row count of a command status such as ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0




def unknown_host(exc: BaseException, dsn: str, where: str) -> StorageError | None:
    """The error of a connection whose host DNS says does not exist (or has no address),
    or None.  At open that is a misconfiguration, not an outage to wait out: a gateway
    started on a mistyped host retried it for ever.  A resolver that cannot answer now
    (``EAI_AGAIN``: no DNS server reachable) stays ``StoreUnavailable``, retried; a
    name gone while the gateway runs too (``store_error``: a DNS record being replaced)."""
    if not (isinstance(exc, socket.gaierror) and exc.errno in _NO_SUCH_NAME):
        return None
    try:
        hosts = urlsplit(dsn).hostname
    except ValueError:
        hosts = None
    host = f"host {hosts!r}" if hosts else "its host"
    return StorageError(
        f"PostgreSQL at {where}: {host} does not exist: DNS has no address for it "
        f"({exc.strerror or _reason(exc)}); fix the host in the store's URL (--db or "
        f"MCP_GATEWAY_DB: {URL_FORM}), or add the name to DNS or /etc/hosts")


_NO_SUCH_NAME = frozenset(code for code in (getattr(socket, "EAI_NONAME", None),
                                            getattr(socket, "EAI_NODATA", None))
                          if code is not None)


def store_error(exc: BaseException, where: str, what: str) -> StorageError:
    """The store's error for an asyncpg failure (the URL's password never shows)."""
    asyncpg = load_asyncpg()
    reason = _reason(exc)
    if is_unreachable(exc):
        return StoreUnavailable(f"PostgreSQL at {where} is unreachable ({reason}); is the "
                                "server running and the address right?")
    if isinstance(exc, asyncpg.TooManyConnectionsError):  # transient: another's burst
        return StoreUnavailable(
            f"PostgreSQL at {where} refuses more connections ({reason}); a gateway takes "
            f"up to {POOL_SIZE + 1} (its pool and the change feed's): raise the role's "
            "CONNECTION LIMIT or the server's max_connections, or run fewer gateways")
    if _ssl_refused(exc):
        return StorageError(f"PostgreSQL at {where} does not accept SSL, which the URL's "
                            "sslmode asks for: write sslmode=prefer (or disable) in the URL, "
                            "or turn ssl on in the server's postgresql.conf")
    if isinstance(exc, ValueError):  # asyncpg's ClientConfigurationError is one too
        return StorageError(f"PostgreSQL URL {where}: {reason}; fix the URL: {URL_FORM}")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StorageError(f"PostgreSQL at {where}: {reason}; create it (createdb) or "
                            "fix the URL")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return StorageError(f"PostgreSQL at {where} refused the login: {reason}; check the "
                            "user and password in the URL (or PGPASSWORD / ~/.pgpass)")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        user = where.split("@", 1)[0] if "@" in where else "the gateway's role"
        db = where.rsplit("/", 1)[-1] or "the database"
        return StorageError(
            f"PostgreSQL at {where}: {what}: {reason}; the gateway creates and uses its own "
            f"tables: as a superuser, ALTER DATABASE {db} OWNER TO {user} (or GRANT CREATE, "
            f"USAGE ON SCHEMA public and ALL ON ALL TABLES IN SCHEMA public TO {user})")
    return StorageError(f"PostgreSQL at {where}: {what}: {reason}")
