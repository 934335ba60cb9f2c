"""A PostgreSQL write's bound: how long it may wait, and who to blame when it did.

A write that has its connection is shielded from cancellation (``PostgresStore._written``),
so whatever bounds it bounds a gateway's stop too.  asyncpg's ``command_timeout`` (60 s)
was that bound: a write waiting on a lock another session held (the change feed's
advisory lock, a row) kept a stop waiting up to a minute.  Each write's transaction now
sets ``lock_timeout`` and ``statement_timeout`` to ``WRITE_TIMEOUT`` (``SET LOCAL``: only
that transaction), as SQLite's writes give up after its busy timeout; a write that hits
either is rolled back -- nothing of it was made -- and its caller gets ``busy_error``,
naming the sessions that held the gateway's locks (pid, application, user, address):
``StoreUnavailable``, as SQLite's SQLITE_BUSY, so what retries an unreachable store (the
call recorder, the change feed) holds its records and tries again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fast_mcp_gateway.store.base import StoreUnavailable

if TYPE_CHECKING:
    import asyncpg

__all__ = ["WRITE_LIMITS", "WRITE_TIMEOUT", "bounded_transaction", "busy_error", "is_busy"]

WRITE_TIMEOUT = 5.0
"""Seconds a write may wait for a lock (SQLite's busy timeout); one of its statements
may run a second more (the lock wait it includes is said as such, not as a slow one)."""
WRITE_LIMITS = (f"SET LOCAL lock_timeout = {int(WRITE_TIMEOUT * 1000)};"
                f" SET LOCAL statement_timeout = {int(WRITE_TIMEOUT * 1000) + 1000}")

# The other sessions that hold an advisory lock (the feed's, the records') or have been
# in a transaction longer than a write may wait: the likely holders of what it waited on.
_HOLDERS = """
SELECT DISTINCT a.pid, a.application_name, a.usename, host(a.client_addr) AS client_addr, a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS seconds
FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid AND l.granted
     AND l.locktype = 'advisory'
WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
  AND (l.pid IS NOT NULL OR a.xact_start < now() - make_interval(secs => $1))
ORDER BY seconds DESC NULLS LAST LIMIT 3
"""


@asynccontextmanager
async def bounded_transaction(conn: asyncpg.Connection, where: str
                              ) -> AsyncIterator[asyncpg.Connection]:
    """One transaction on ``conn`` bounded as a write is (``WRITE_LIMITS``); a lock it
    waited on past them is the store-is-busy ``StoreUnavailable`` (``busy_error``)."""
    try:
        async with conn.transaction():
            await conn.execute(WRITE_LIMITS)
            yield conn
    except Exception as exc:
        if is_busy(exc):
            raise await busy_error(conn, exc, where) from exc
        raise


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is a write's ``lock_timeout`` or ``statement_timeout``."""
    import asyncpg

    return isinstance(exc, asyncpg.LockNotAvailableError | asyncpg.QueryCanceledError)


async def busy_error(conn: asyncpg.Connection, exc: BaseException, where: str
                     ) -> StoreUnavailable:
    """The error of a write ``WRITE_TIMEOUT`` ended (``exc``), naming who held the locks."""
    import asyncpg

    waited = (f"{WRITE_TIMEOUT:g}s for a lock" if isinstance(exc, asyncpg.LockNotAvailableError)
              else f"{WRITE_TIMEOUT + 1:g}s on a statement")
    try:
        rows = await conn.fetch(_HOLDERS, WRITE_TIMEOUT)
    except Exception:  # noqa: BLE001 - the blame is a courtesy; the error stands without it
        rows = []
    holders = "; ".join(
        f"pid {r['pid']} (application '{r['application_name'] or '?'}', user "
        f"'{r['usename']}'{', from ' + r['client_addr'] if r['client_addr'] else ''}, "
        f"{r['state']}" + (f", in a transaction for {r['seconds']:.0f}s)"
                           if r['seconds'] is not None else ")") for r in rows)
    return StoreUnavailable(
        f"PostgreSQL at {where}: the store is busy (locked by "
        f"{holders or 'another session'}): a write waited {waited} and "
        "was not made; retry it, and if that session is stuck, end its transaction (as a "
        "superuser: SELECT pg_terminate_backend(pid))")
