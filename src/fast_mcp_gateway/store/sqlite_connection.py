"""The one aiosqlite connection of a ``SQLiteStore``: reads, writes and their errors.

Two gateways (or a gateway and the CLI) may use one file.  SQLite makes a writer wait
for another connection's write lock (``busy_timeout``) only when its statement starts
the transaction.  A connection that is still reading -- a statement stepped but not
finished -- has to upgrade its read to a write, and then SQLite answers SQLITE_BUSY at
once ("database is locked"; SQLITE_BUSY_SNAPSHOT when another connection committed since
the read began: no wait could help).  aiosqlite runs each call in its worker thread, so
a read made as ``execute`` then ``fetchall`` keeps its statement open between the two
calls, and another task's write on this connection runs there.  Hence:

- ``rows`` reads to the end in one worker call: no statement stays open between calls;
  it takes the lock below too, so it never reads another task's uncommitted rows;
- ``run``, ``returning`` (one statement) and ``write`` (batches in one ``BEGIN
  IMMEDIATE`` transaction) take one lock, so a task's statement never lands inside
  another task's transaction (nor is rolled back with it), and no transaction is left
  open;
- a write handed to the worker is shielded from cancellation: the worker runs what it
  was handed whether or not its task was cancelled meanwhile, so a write cancelled then
  ran after its caller was told it was cancelled (a registration made, but never noted
  in the change feed nor applied, an admin operation "cancelled" that changed the
  store).  Now it ends (within ``BUSY_TIMEOUT_MS``) and returns what it did, and the
  cancellation is delivered at the caller's next checkpoint; a write cancelled while it
  waits for the lock, before it is handed over, never runs.  What the caller is told is
  what happened: nothing, or the write and its result;
- each ``sqlite3.Error`` becomes a ``StorageError`` naming the file, what is wrong and
  what to do.  SQLITE_BUSY, which now means another connection held the write lock for
  ``BUSY_TIMEOUT_MS``, is ``StoreUnavailable``: nothing was written, and what retries
  an unreachable store (the call recorder, the change feed) tries again.  So is a write
  refused for a full disk or a file (or folder) made read-only while the gateway runs:
  fixed outside it, the same write succeeds, and the records are held meanwhile, not
  lost.  (Opening a file that cannot be used fails the start, as before: ``open``.)

No retry on top of SQLite's: its busy handler already retries for ``BUSY_TIMEOUT_MS``
with growing waits, and a write that waited that long waits for something other than a
gateway's short transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import aiosqlite
import anyio

from fast_mcp_gateway.store.base import StorageError, StoreUnavailable

BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another connection's write lock (``PRAGMA busy_timeout``)."""

# What to do, by SQLite's primary result code (the low byte of the extended one).
_FIXES = {
    sqlite3.SQLITE_FULL: "free space on its disk",
    sqlite3.SQLITE_READONLY: "make the file, its -wal and -shm files and its folder "
                             "writable by the gateway's user",
    sqlite3.SQLITE_CANTOPEN: "make the file, its -wal and -shm files and its folder "
                             "writable by the gateway's user",
    sqlite3.SQLITE_CORRUPT: "restore it from a backup or move it away",
    sqlite3.SQLITE_NOTADB: "restore it from a backup or move it away",
    sqlite3.SQLITE_IOERR: "check its disk (dmesg) and the free space",
}


class StoreConnection:
    """The store's reads and writes on ``db`` (see the module docstring); ``path``
    names the file in errors."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db = db
        self.path = path
        # One writer at a time on the connection: a second BEGIN while another task's
        # transaction awaits fails ("within a transaction"), and a single statement run
        # meanwhile would join that transaction.
        self._lock = anyio.Lock()
        self._closed = False

    async def rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Every row of a read, fetched in one worker call, never inside another task's
        transaction (it would see rows not yet committed: invocations without their
        aggregates, or a batch that is then rolled back)."""
        return await self._fetched(sql, args, "read")

    async def run(self, sql: str, args: Sequence[Any] = ()) -> aiosqlite.Cursor:
        """One writing statement (its own transaction); the cursor gives ``rowcount``
        and ``lastrowid``."""
        async with self._lock:
            with anyio.CancelScope(shield=True), self._mapped("write"):  # handed over: ends
                cursor = await self._db.execute(sql, args)
        return cursor

    async def returning(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """One writing statement with ``RETURNING``, read to the end (a statement left
        unfinished keeps the transaction open: "SQL statements in progress")."""
        return await self._fetched(sql, args, "write")

    async def _fetched(self, sql: str, args: Sequence[Any], what: str) -> list[Any]:
        async with self._lock:
            # A write handed over ends (module docstring); a read cancelled is dropped.
            with anyio.CancelScope(shield=what == "write"), self._mapped(what):
                rows = list(await self._db.execute_fetchall(sql, args))
        return rows

    async def write(self, *batches: tuple[str, Iterable[Sequence[Any]]]) -> list[int]:
        """Each (statement, rows) batch, in one transaction; the rows each changed."""
        return await self.write_after(None, lambda _: batches)

    async def write_after(self, read: tuple[str, Sequence[Any]] | None,
                          then: Callable[[list[Any]], Iterable[tuple[str, Iterable[Sequence[Any]]]]]
                          ) -> list[int]:
        """``write`` of the batches ``then(rows)`` makes of what ``read`` reads, in the
        same transaction (nothing another connection writes comes between the two)."""
        db = self._db
        async with self._lock:
            # Shielded (module docstring), and more: a BEGIN the worker ran for a task
            # cancelled meanwhile left a transaction nobody ends, holding the file's write
            # lock (every other connection locked out) until the gateway stops.  A write
            # ends within BUSY_TIMEOUT_MS and a few worker calls.
            with anyio.CancelScope(shield=True), self._mapped("write"):
                await db.execute("BEGIN IMMEDIATE")  # the write lock now, waited for
                try:
                    rows_read = list(await db.execute_fetchall(*read)) if read else []
                    changed = [(await db.executemany(statement, rows)).rowcount
                               for statement, rows in then(rows_read)]
                    await db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # SQLite may have rolled back (disk full)
                        await db.execute("ROLLBACK")
                    raise
        return changed

    async def close(self) -> None:
        with self._mapped("close"):
            self._closed = True
            await self._db.close()

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        if self._closed:  # aiosqlite's ValueError: an operation outliving a stop
            raise StoreUnavailable(f"{self.path}: the {what} did not happen: the gateway "
                                   "is stopping and has closed the store")
        try:
            yield
        except sqlite3.Error as exc:
            raise store_error(self.path, what, exc) from exc


def store_error(path: str, what: str, exc: sqlite3.Error) -> StorageError:
    """The store's error for a failed ``what`` (read, write) on the file ``path``."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_BUSY:
        return StoreUnavailable(
            f"{path}: the {what} did not happen: another connection held the database's "
            f"write lock for more than {BUSY_TIMEOUT_MS / 1000:g} s ({exc}); end what "
            "holds it (an open transaction in a sqlite3 shell, a backup, a stuck "
            "process) and try again")
    fix = _FIXES.get(code) or (f"if it goes on, check the file (sqlite3 {path} 'PRAGMA "
                               "integrity_check') or move it away")
    if what == "write" and code in _HELD:
        # Fixed outside the gateway, then the same write succeeds: what retries an
        # unreachable store holds its records meanwhile (and spills them at a stop).
        return StoreUnavailable(f"{path}: the write did not happen: {exc}; {fix}")
    return StorageError(f"{path}: the {what} failed: {exc}; {fix}")


# A full disk, a file or folder made read-only: a write fails until someone fixes it.
_HELD = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN})
