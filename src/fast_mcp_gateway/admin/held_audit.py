"""Audit entries of what was done while the store could not take them, held for it.

A config reload is made whatever the store answers once it has read the runtime
registrations: the file is read and the servers converge, and then the store must take
its audit entry -- which it may not: a SQLite file another process keeps locked (reads
go on, a write waits past the busy timeout), a full disk, a PostgreSQL lost between the
two.  So is every admin operation that acts first and audits after (a reconnect, a
breaker reset, a registration saved and applied: ``ControlPlane.audit``); those
answered "the write did not happen ... try again" (503 over REST) although they had
acted.  Now ``add`` writes the entry or, the store being unreachable, holds it (stamped
when the action was made; said in one line), and ``run`` writes what is held,
in order, waiting out the outage (``while_unavailable``; the gateway says the outage
once), as the call records and health transitions are held.  At stop what is still
held gets one bounded attempt and then goes to ``spill`` (the spool: written into the
store at the next start with it); so does, at once, an entry held after that (an
operation outliving the stop's cancellation: ``admin.context.finishing``).  Once the
store is closed (``close``), an entry of an operation that ended only then is spilled
to a spool file of its own at once (``late``), in one line: it was dropped without a
word (``admin/in_flight.py``).
``flushed`` lets a reader see them written.  A write may have been made and its
answer lost (PostgreSQL's COMMIT done, the connection cut before it answered): the
entry, held and written again, is stored once, by the ``uid`` it was made with (the
store's unique key; SQLite 11, PostgreSQL 10).  (An entry that must precede its action,
``inspect_call_tool``'s, is ``write_entry``'d: refused with the store, never held.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.abc

from fast_mcp_gateway.store import StorageError, Store, StoreUnavailable
from fast_mcp_gateway.store.records import AuditEntry
from fast_mcp_gateway.store.retry import while_unavailable
from fast_mcp_gateway.store.spool import Spool
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)

LAST_ATTEMPT = 2.0  # seconds the stop gives the store before spilling what is held


class HeldAudit:
    """Audit entries held for the store ``store()`` returns (see the module docstring)."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._store = store
        self.entries: list[AuditEntry] = []
        self._changed = ChangeSignal()  # an entry held, or written
        # Where the entries still held at stop go (the spool), if anywhere.
        self.spill: Callable[[list[AuditEntry]], None] | None = None
        self._stopped = False  # ``run`` ended: nothing writes what is held any more
        self._closed = False  # the store was closed at a stop (``close``)
        self.late: Spool | None = None  # where an entry made after that is spilled

    def close(self) -> None:
        """The store is closing (the gateway stops): an entry added from now on is
        spilled at once, with a line of its own, to ``late``."""
        self._closed = True

    async def add(self, entry: AuditEntry) -> None:
        """Write ``entry`` (its ``at``: when the audited action was done; none without
        a store), or hold it for ``run`` while the store is unreachable; a store that
        refuses it costs the entry, logged -- never the audited action's outcome."""
        store = self._store()
        if store is None:
            if self._closed:
                self._spill_late(entry)
            return
        if self.entries:  # written after those held before it
            self._hold(entry, f"{len(self.entries)} audit entries held before it are not "
                              "written yet")
            return
        try:
            await write_entry(store, entry)
        except StoreUnavailable as exc:
            self._hold(entry, f"the store is unreachable: {exc}")
        except StorageError as exc:
            logger.warning("%s by %s: not audited, the store refused the entry: %s",
                           entry.action, entry.actor, exc)

    def _hold(self, entry: AuditEntry, why: str) -> None:
        if self._stopped:  # an operation that outlived the stop's cancellation (finishing)
            if self.spill is not None:
                self.spill([entry])
            logger.warning("%s by %s: the gateway is stopping and %s: its audit entry is %s",
                           entry.action, entry.actor, why,
                           "spilled with the call records" if self.spill is not None
                           else "lost")
            return
        self.entries.append(entry)
        self._changed.notify()
        logger.warning("%s by %s: its audit entry is held and written once the store is "
                       "back (spilled with the call records if the gateway stops first); "
                       "%s", entry.action, entry.actor, why)

    def _spill_late(self, entry: AuditEntry) -> None:
        spool = self.late
        if spool is not None:  # the spool says where, or why it could not
            spool.hold_audit([entry], "an admin operation ended after the store closed")
            spool.write()
            return
        logger.warning("%s by %s ended after the gateway closed its store, which has no "
                       "spool folder: its audit entry is lost", entry.action, entry.actor)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Write what is held until cancelled; then what is left gets one attempt, or,
        the store being unreachable, is handed to ``spill``."""
        self._stopped = False
        task_status.started()
        try:
            while True:
                await self._changed.wait_until(lambda: bool(self.entries), float("inf"))
                try:
                    await while_unavailable(self._write_first, first=0.5, most=5.0)
                except Exception as exc:  # noqa: BLE001 - refused for good: said, not retried
                    logger.warning("could not write a held audit entry (%s at %s): %s",
                                   self.entries[0].action, self.entries[0].at, exc)
                    self.entries.pop(0)
                self._changed.notify()
        finally:
            with anyio.CancelScope(shield=True):
                await self._last()

    async def _write_first(self) -> None:
        # The store as it is at each attempt: one the gateway started without is held
        # until it opens, and then this writes to the opened one.
        store = self._store()
        if store is None:
            self.entries.clear()  # detached: nothing records any more
            return
        entry = self.entries[0]
        await write_entry(store, entry)
        self.entries.pop(0)
        logger.info("wrote the audit entry of %s by %s, held while the store was "
                    "unreachable", entry.action, entry.actor)

    async def _last(self) -> None:
        """At stop: what is held, in one bounded attempt, else to ``spill``."""
        with anyio.move_on_after(LAST_ATTEMPT):
            try:
                while self.entries:
                    await self._write_first()
            except StorageError:
                pass
        if self.entries and self.spill is not None:
            self.spill(self.entries)
        self.entries = []
        self._stopped = True  # an entry held from now on goes to ``spill`` at once

    async def flushed(self, within: float = 5.0) -> bool:
        """Wait until nothing is held (``False`` after ``within``)."""
        return await self._changed.wait_until(lambda: not self.entries, within)


async def write_entry(store: Store, entry: AuditEntry) -> None:
    """Write ``entry`` now (the store's errors raised)."""
    await store.add_audit(entry.actor, entry.action, entry.target, entry.arguments,
                          entry.result, entry.instance_id, at=entry.at, uid=entry.uid)
