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

from fast_mcp_gateway.store import HealthRecord, Store
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

    def record(self, server: str, replica: str, status: str, detail: str | None) -> None:
        """Queue one transition (the manager's transition listener; never blocks)."""
        if self._store() is None:
            return
        with contextlib.suppress(anyio.WouldBlock):  # a burst beyond capacity: drop
            self._send.send_nowait(HealthRecord(at=time.time(), server=server, replica=replica,
                                                status=status, detail=detail,
                                                instance_id=self.instance_id))
            self._queued += 1

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Write queued transitions in batches until cancelled."""
        task_status.started()
        async for first in self._receive:
            batch = [first]
            while True:
                try:
                    batch.append(self._receive.receive_nowait())
                except anyio.WouldBlock:
                    break
            store = self._store()
            if store is not None:
                try:  # held through an outage (said once, by the gateway), then written
                    await while_unavailable(functools.partial(store.add_health_records, batch),
                                            first=0.5, most=5.0)
                except Exception as exc:  # noqa: BLE001 - history must not stop the gateway
                    logger.warning("could not write health records: %s", exc)
            self._done += len(batch)
            self._progress.notify()

    async def flushed(self, within: float = 5.0) -> bool:
        """Wait until every queued transition is written (``False`` after ``within``)."""
        return await self._progress.wait_until(lambda: self._done >= self._queued, within)
