"""The health history's writer: replica transitions, batched into the store.

The manager reports a transition synchronously from inside a replica's supervisor, which
must never wait on disk; so ``record`` only queues (dropping beyond a burst of 1000) and
``run`` writes whatever has queued in one batch -- holding it while the store is
unreachable (newer transitions queue meanwhile), and writing it once the store is back.
``flushed`` lets a reader (the ``health_history`` operation) see the transitions that
happened before it asked.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable

import anyio
import anyio.abc

from fast_mcp_gateway.store import HealthRecord, StorageError, Store
from fast_mcp_gateway.store.retry import while_unavailable
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)

class HealthLog:
    """Queue of transitions for the store returned by ``store()`` (none: not recorded)."""

    def __init__(self, store: Callable[[], Store | None], *, capacity: int = 1000,
                 instance_id: str | None = None) -> None:
        self._store = store
        self.instance_id = instance_id  # each row's: every gateway runs its own replicas
        self._send, self._receive = anyio.create_memory_object_stream[HealthRecord](capacity)
        self._queued = self._done = 0
        self._progress = ChangeSignal()
        # Where the transitions held for an unreachable store go at stop (the spool).
        self.spill: Callable[[list[HealthRecord]], None] | None = None

    def record(self, server: str, replica: str, status: str, detail: str | None) -> None:
        """Queue one transition (the manager's transition listener; never blocks)."""
        if self._store() is None:
            return
        with contextlib.suppress(anyio.WouldBlock):  # a burst beyond capacity: drop
            # PostgreSQL stores no NUL in text: one in an upstream's words (an error
            # text) made it refuse the whole batch.
            if detail is not None and "\x00" in detail:
                detail = detail.replace("\x00", "\ufffd")
            self._send.send_nowait(HealthRecord(at=time.time(), server=server, replica=replica,
                                                status=status, detail=detail,
                                                instance_id=self.instance_id))
            self._queued += 1

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Write queued transitions in batches until cancelled; then what is left is
        written in one attempt, or, the store being unreachable, handed to ``spill``."""
        task_status.started()
        batch: list[HealthRecord] = []
        try:
            async for first in self._receive:
                batch = [first]
                self._take(batch)
                try:  # held through an outage (said once, by the gateway), then written
                    await while_unavailable(functools.partial(self._write, batch),
                                            first=0.5, most=5.0)
                except Exception as exc:  # noqa: BLE001 - history must not stop the gateway
                    logger.warning("could not write health records: %s", exc)
                self._done += len(batch)
                batch = []
                self._progress.notify()
        finally:
            with anyio.CancelScope(shield=True):
                await self._last(batch)

    async def _write(self, batch: list[HealthRecord]) -> None:
        # The store as it is at each attempt: one the gateway started without is held
        # until it opens, and then this writes to the opened one.
        store = self._store()
        if store is not None:
            await store.add_health_records(batch)

    def _take(self, batch: list[HealthRecord]) -> None:
        while True:
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return

    async def _last(self, batch: list[HealthRecord]) -> None:
        """At stop: the transitions not written yet, in one bounded attempt, else to
        ``spill`` (the store is unreachable)."""
        self._take(batch)
        store = self._store()
        if not batch or store is None:
            return
        with anyio.move_on_after(2):
            try:
                await store.add_health_records(batch)
                return
            except StorageError:
                pass
        if self.spill is not None:
            self.spill(batch)

    async def flushed(self, within: float = 5.0) -> bool:
        """Wait until every queued transition is written (``False`` after ``within``)."""
        return await self._progress.wait_until(lambda: self._done >= self._queued, within)
