"""Recording off the hot path: bounded queues drained in batches into the store.

``BatchWriter`` is the generic part: ``put(item)`` never blocks and never fails the
caller -- when the queue is full the item is dropped and counted (``dropped``) -- and
``run()`` hands batches of up to ``batch_size`` to one write call (one transaction).
``Recorder`` is the call log built on it: ``record(invocation)`` (stamped with the
gateway's ``instance_id`` when written); its retention (every ``prune_every`` seconds)
runs in a task of its own beside the writer (telemetry/retention.py), so records are
written while a prune runs.

``redact_arguments`` (``telemetry/arguments.py``) is what goes into a record.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS
from fast_mcp_gateway.store.base import InvocationStore, StoreUnavailable
from fast_mcp_gateway.store.outage import StoreOutage
from fast_mcp_gateway.store.records import Invocation
from fast_mcp_gateway.store.retry import while_unavailable
from fast_mcp_gateway.store.spool import Spool
from fast_mcp_gateway.telemetry.arguments import redact_arguments
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.telemetry.retention import Retention

logger = logging.getLogger(__name__)
T = TypeVar("T")
STOP_WAITS = ("stopping: the store is unreachable; waiting up to %g s for it to take %d %s "
              "held for it, then dropping them (MCP_GATEWAY_SHUTDOWN_FLUSH_TIMEOUT)")


class BatchWriter(Generic[T]):
    """A bounded queue of items drained in batches by ``run()`` (see the module docstring).

    ``put`` never blocks and never raises: when the queue is full the item is dropped and
    counted.  ``run`` collects up to ``batch_size`` items for at most ``flush_interval``
    seconds after the first and hands them to ``write`` in one call; a failed write is
    logged and counted, never raised -- except when the store is unreachable
    (``StoreUnavailable``, a shared database restarting): then the batch is kept and
    written again, with backoff, once the store is back, while newer items wait in the
    bounded queue (and beyond it are dropped and counted)."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[object]],
        *,
        what: str,
        capacity: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        drain_timeout: float = 60.0,
    ) -> None:
        self.what = what
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._write_batch = write
        self._send: MemoryObjectSendStream[T]
        self._receive: MemoryObjectReceiveStream[T]
        self._send, self._receive = anyio.create_memory_object_stream[T](capacity)
        self.written = 0
        self.dropped = 0
        self.failed_writes = 0
        self.store_unavailable = False  # a batch is held, waiting for the store
        self.max_backoff = 2.0  # seconds between attempts while the store is away
        self._accepted = 0
        self._taken = 0  # items received off the queue (into a batch)
        self._full: anyio.Event | None = None  # set by put() once a batch is waiting
        self._progress = anyio.Event()
        self.drain_timeout = drain_timeout
        self.stopped = False
        # The gateway's one reporter of store outages (else this writer says its own).
        self.outage: StoreOutage | None = None
        # Where what is held for an unreachable store goes at stop (the spool), if anywhere.
        self.spill: Callable[[list[T]], None] | None = None
        self.spilled = 0

    def put(self, item: T) -> None:
        try:
            self._send.send_nowait(item)
            self._accepted += 1
            # The writer holds a batch's first item: the rest of it is queued now.
            if self._full is not None and self._accepted - self._taken >= self.batch_size - 1:
                self._full.set()
        except anyio.WouldBlock:
            self.dropped += 1
            if self.dropped in (1, 100, 10_000) or self.dropped % 100_000 == 0:
                logger.warning("%s queue full: %d records dropped so far", self.what,
                               self.dropped)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.dropped += 1  # after the writer stopped: nothing would ever write it

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Write batches until cancelled; then write what was collected and everything
        still queued (shielded, at most ``drain_timeout`` seconds) before returning: a
        graceful stop loses nothing that was accepted."""
        task_status.started()
        batch: list[T] = []
        try:
            while True:
                batch = [await self._receive.receive()]
                self._taken += 1
                # Collect for a moment: one transaction per item would cost the callers.
                # Asleep meanwhile, not woken per item (each wake-up was two turns of the
                # event loop on every call's path); put() wakes it once a batch is full.
                if self._accepted - self._taken < self.batch_size - 1:
                    full = self._full = anyio.Event()
                    with anyio.move_on_after(self.flush_interval):
                        await full.wait()
                    self._full = None
                self._take_nowait(batch)
                await self._write(batch)
                batch = []
        except anyio.EndOfStream:
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await self._drain(batch)

    async def _drain(self, batch: list[T]) -> None:
        """Write ``batch`` (the one being collected) and the rest of the queue; items
        still queued after ``drain_timeout`` are counted as dropped -- or, with
        ``spill``, spilled, as is all of it at once when the store is unreachable (it is
        not waited for: one attempt per batch, no retry)."""
        with anyio.move_on_after(self.drain_timeout):
            while True:
                self._take_nowait(batch)
                if not batch:
                    break
                # A write cut at the deadline commits its transaction or not at all
                # (the store stays consistent); its items then count as dropped.
                if self.spill is None:
                    await self._write(batch)
                elif self.store_unavailable or not await self._write_once(batch):
                    break
                batch = []
        while True:  # everything still queued
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._receive.close()
        if batch and self.spill is not None:  # the spool writes it, saying where
            self.spill(batch)
            self.spilled += len(batch)
            batch = []
        self.dropped += len(batch)
        self.stopped = True

    async def _write_once(self, batch: list[T]) -> bool:
        """One attempt to write ``batch`` (at stop); False when the store is unreachable."""
        try:
            await self._write_batch(batch)
        except StoreUnavailable as exc:
            self._unavailable(exc, 1)
            return False
        except Exception as exc:  # noqa: BLE001 - a failed write must never fail callers
            self.failed_writes += len(batch)
            logger.warning("could not write %d %s: %s", len(batch), self.what, exc)
            return True
        self.written += len(batch)
        return True

    def _take_nowait(self, batch: list[T]) -> None:
        """Fill ``batch`` up to ``batch_size`` with what is queued now."""
        while len(batch) < self.batch_size:
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            self._taken += 1

    async def _write(self, batch: list[T]) -> None:
        try:
            await while_unavailable(functools.partial(self._write_batch, batch), first=0.1,
                                    most=self.max_backoff, before_wait=self._unavailable)
            self.written += len(batch)
            if self.store_unavailable:
                self.store_unavailable = False
                if self.outage is not None:
                    self.outage.back(f"writing the held {self.what}")
                else:
                    logger.info("the store is back: writing %s again", self.what)
        except Exception as exc:  # noqa: BLE001 - a failed write must never fail callers
            self.failed_writes += len(batch)
            logger.warning("could not write %d %s: %s", len(batch), self.what, exc)
        progress, self._progress = self._progress, anyio.Event()
        progress.set()

    @property
    def pending(self) -> int:
        """Items accepted and not yet written, failed or spilled."""
        return self._accepted - self.written - self.failed_writes - self.spilled

    async def flushed(self, within: float = 10.0) -> bool:
        """Wait until every item queued so far is written (for tests and shutdown)."""
        with anyio.move_on_after(within):
            while self.written + self.failed_writes < self._accepted:
                await self._progress.wait()
            return True
        return False

    async def stopping(self, within: float, *, store_down: bool = False) -> None:
        """Before the writer is stopped: wait (shielded, at most ``within`` s) until what
        is queued is written -- unless the store is unreachable (``store_down``, or this
        writer holds a batch for it) and ``spill`` is set: then the stop does not wait,
        the drain spills it.  What is left of ``within`` is the drain's budget."""
        started = time.monotonic()
        if not ((store_down or self.store_unavailable) and self.spill is not None):
            if self.store_unavailable and self.pending:
                logger.warning(STOP_WAITS, within, self.pending, self.what)
            with anyio.CancelScope(shield=True):
                await self.flushed(within=within)
        self.drain_timeout = max(0.0, within - (time.monotonic() - started))

    def _unavailable(self, error: StoreUnavailable, _failures: int) -> None:
        if self.outage is not None:
            self.outage.lost(error)
        elif not self.store_unavailable:
            logger.warning("%s held until the store is back: %s", self.what, error)
        self.store_unavailable = True

    def stats(self) -> dict[str, Any]:
        # Queued: everything accepted and not yet written, the batch held for a store
        # that is away included (the channel alone looked empty during an outage).
        return {"written": self.written, "dropped": self.dropped,
                "failed_writes": self.failed_writes, "queued": self.pending}


class Recorder(BatchWriter[Invocation]):
    """The call log: invocation records written in batches, with retention."""

    def __init__(
        self,
        store: InvocationStore,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        retention_seconds: float | None = 7 * 24 * 3600,
        retention_rows: int | None = 1_000_000,
        prune_every: float = 300.0,
        flush_interval: float = 0.2,
        redact_keys: Iterable[str] = DEFAULT_REDACT_KEYS,
        instance_id: str | None = None,
        drain_timeout: float = 60.0,
        spool: Spool | None = None,
    ) -> None:
        super().__init__(self._store_batch, what="call records", capacity=capacity,
                         batch_size=batch_size, flush_interval=flush_interval,
                         drain_timeout=drain_timeout)
        self.store = store
        self.instance_id = instance_id
        self.redact_keys = tuple(redact_keys)
        # None: no retention (neither an age nor a row count bounds the call log).
        self.retention = (None if retention_seconds is None and retention_rows is None else
                          Retention(store, max_age_seconds=retention_seconds,
                                    max_rows=retention_rows, every=prune_every))
        self.spool = spool  # records held for an unreachable store go there at stop
        if spool is not None:
            self.spill = lambda held: spool.hold_calls(self._stamped(held))

    def record(self, invocation: Invocation) -> None:
        if invocation.error:  # an upstream's text may echo a secret (error path only)
            masked = cut(mask_text(invocation.error), MAX_ERROR)
            if masked != invocation.error:
                invocation = dataclasses.replace(invocation, error=masked)
        if invocation.kind == "resource" or invocation.status == "rejected":
            # The host's words: a URI it read (a template's parameters are its arguments:
            # data://items/ghp_..., ?api_key=...) or a name it made up.  Stored whole, they
            # were shown beside their own error masked (secrets26).
            exposed, original = mask_text(invocation.exposed), mask_text(invocation.original)
            if exposed != invocation.exposed or original != invocation.original:
                invocation = dataclasses.replace(invocation, exposed=exposed,
                                                 original=original)
        if ("\x00" in invocation.exposed or "\x00" in invocation.client
                or "\x00" in invocation.original
                or (invocation.error is not None and "\x00" in invocation.error)):
            invocation = _without_nul(invocation)
        self.put(invocation)

    def _stamped(self, batch: list[Invocation]) -> list[Invocation]:
        # Stamped here, off the call path: every record names the gateway that served it.
        if self.instance_id is None:
            return batch
        return [r if r.instance_id else replace(r, instance_id=self.instance_id)
                for r in batch]

    async def _store_batch(self, batch: list[Invocation]) -> None:
        await self.store.add_invocations(self._stamped(batch))

    @property
    def recorded(self) -> int:
        return self.written

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """The writer (``BatchWriter.run``) and, beside it, the retention task: both end
        when this is cancelled (a prune running is cut between its batches; the writer
        drains what it holds, shielded, as ever)."""
        retention = self.retention
        if retention is None:
            await super().run(task_status=task_status)
            return
        retention.outage = self.outage  # the control plane attached it before the start
        async with anyio.create_task_group() as tg:
            tg.start_soon(retention.run)
            await super().run(task_status=task_status)
            retention.stop()  # the writer ended (its queue closed): retention ends too

    async def stopping(self, within: float, *, store_down: bool = False) -> None:
        # A prune running is stopped first: the flush then has the store to itself.
        if self.retention is not None:
            self.retention.stop()
        await super().stopping(within, store_down=store_down)

    def stats(self) -> dict[str, Any]:
        stats, more = super().stats(), {} if self.retention is None else self.retention.stats()
        return {"recorded": stats.pop("written"), **stats, **more}


_ARGUMENTS_JSON = json.JSONEncoder(default=str)  # json.dumps(..., default=str), built once


def _without_nul(invocation: Invocation) -> Invocation:
    """``invocation`` with each NUL of the texts a host or an upstream chose (a tool or
    client name, an error) as U+FFFD: PostgreSQL stores no NUL in text, and refused the
    whole batch holding one (every record in it lost)."""
    def clean(text: str) -> str:
        return text.replace("\x00", "\ufffd")

    return replace(invocation, exposed=clean(invocation.exposed),
                   client=clean(invocation.client), original=clean(invocation.original),
                   error=None if invocation.error is None else clean(invocation.error))


MAX_ARGUMENTS = 32 * 1024  # characters of a record's arguments kept (its JSON, cut)
MAX_ERROR = 32 * 1024  # characters of a record's error text kept (an upstream chose it)


def cut(text: str, limit: int) -> str:
    """``text`` up to ``limit`` characters, with a note saying it was cut and how long
    it was (masked first: a cut never leaves half a secret unmasked)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [cut by the gateway: {len(text)} characters in all]"


def dumps_arguments(arguments: Any, secret_values: frozenset[str],
                    keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> str | None:
    """``arguments`` as a record keeps them: redacted JSON, cut past ``MAX_ARGUMENTS``
    (a caller's megabytes were stored whole in each record, and a page of records
    read back whole by any ``tools`` token: 500 of them, gigabytes)."""
    if arguments is None:
        return None
    return cut(_ARGUMENTS_JSON.encode(redact_arguments(arguments, keys, secret_values)),
               MAX_ARGUMENTS)
