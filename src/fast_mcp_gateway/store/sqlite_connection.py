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

The file deleted while the gateway runs (or its folder removed) is found at the next
write (``same_file``: the path's inode against the one opened, one ``stat``): SQLite
went on writing into the unlinked inode, every write "succeeding", the metrics saying
the store was up, and all of it gone at the next start.  The file is then opened again
at its path (created and migrated as at a start), said once in a WARNING, and the write
goes there; one that cannot be made (the folder cannot be created) is
``StoreUnavailable``: the records are held and the write tried again.  Another file
moved into its place is only said (once): its companions at the path cannot be told
apart from the old file's.

No retry on top of SQLite's: its busy handler already retries for ``BUSY_TIMEOUT_MS``
with growing waits, and a write that waited that long waits for something other than a
gateway's short transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import aiosqlite
import anyio

from fast_mcp_gateway.store.base import StorageError, StoreUnavailable

log = logging.getLogger("fast_mcp_gateway.store")

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

    def __init__(self, db: aiosqlite.Connection, path: str,
                 reopen: Callable[[], Awaitable[aiosqlite.Connection]] | None = None) -> None:
        self._db = db
        self.path = path
        self._reopen = reopen
        self._file = _identity(path) if reopen is not None else None
        self._lost = False  # closed for a file gone, not open again yet
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
            await self.same_file()
            with anyio.CancelScope(shield=True), self._mapped("write"):  # handed over: ends
                cursor = await self._db.execute(sql, args)
        return cursor

    async def returning(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """One writing statement with ``RETURNING``, read to the end (a statement left
        unfinished keeps the transaction open: "SQL statements in progress")."""
        return await self._fetched(sql, args, "write")

    async def _fetched(self, sql: str, args: Sequence[Any], what: str) -> list[Any]:
        async with self._lock:
            if what == "write" or self._lost:
                await self.same_file()
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
        async with self._lock:
            await self.same_file()
            db = self._db
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

    async def same_file(self) -> None:
        """Open the file at ``path`` again if it is gone (module docstring); called
        holding the lock, before a write is handed over (and before a read while the
        file could not be opened again)."""
        if self._reopen is None or self._closed:
            return
        now = _identity(self.path)
        if now == self._file and not self._lost:
            return
        if now is not None and not self._lost:
            # Another file in its place: its -wal at the path may be the old file's (which
            # it would read as its own) or a gateway's sharing it that opened it already
            # (removing it would lose that one's writes).  Said once; a restart uses it.
            self._file = now
            log.warning("store %s: another file was put in its place while the gateway "
                        "ran; this gateway goes on with the file it opened (no longer at "
                        "that path: what it writes is lost at a stop): restart it to use "
                        "the file now there", self.path)
            return
        if not self._lost:
            # Closed first, then its -wal and -shm at the path removed: SQLite leaves them
            # for a file no longer at its path, and the new file would read them as its
            # own (the old file's pages over the new one's).
            with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.Error):
                await self._db.close()
            self._lost = True
            log.warning("store %s: the file was deleted while the gateway ran; writing to "
                        "a new file at that path from now on (what the old one held is not "
                        "in it: servers registered at runtime keep running until the "
                        "gateway stops; register them again to keep them)", self.path)
        try:
            if _identity(self.path) is None:
                for companion in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path + companion)
            db = await self._reopen()
        except (StorageError, OSError) as exc:
            raise StoreUnavailable(
                f"{self.path}: the file was deleted while the gateway ran, and opening it "
                f"again failed ({exc}); nothing was written") from exc
        self._db, self._file, self._lost = db, _identity(self.path), False

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


def _identity(path: str) -> tuple[int, int] | None:
    """The file at ``path`` (device, inode), or None when there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


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
