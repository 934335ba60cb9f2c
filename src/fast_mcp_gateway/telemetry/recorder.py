"""Recording calls off the hot path: a bounded queue drained in batches into the store.

``Recorder.record(invocation)`` never blocks and never fails a call: when the queue is
full the record is dropped and counted (``dropped``).  ``run()`` writes batches of up to
``batch_size`` in one transaction, and applies retention every ``prune_every`` seconds.

``redact_arguments`` is what goes into a record: values under credential-like keys, and
any known secret value inside a string, become ``***``.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS
from fast_mcp_gateway.store.sqlite import Invocation, Store
from fast_mcp_gateway.telemetry.redaction import mask_secrets

logger = logging.getLogger(__name__)

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def new_traceparent(trace_id: str | None = None) -> str:
    """A W3C ``traceparent`` (new span), continuing ``trace_id`` when given."""
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def current_trace_id() -> str | None:
    """The trace id of the active OpenTelemetry span, if the API is there and one is."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - fastmcp ships the API
        return None
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def trace_id_of(traceparent: object) -> str | None:
    match = _TRACEPARENT.match(traceparent) if isinstance(traceparent, str) else None
    return match.group(1) if match else None


def redact_arguments(arguments: Any, keys: Iterable[str] = DEFAULT_REDACT_KEYS,
                     secret_values: frozenset[str] = frozenset()) -> Any:
    """A copy of ``arguments`` with credential-like keys and known secrets masked."""
    lowered = tuple(k.lower() for k in keys)

    def walk(value: Any, key: str = "") -> Any:
        if key and any(k in key.lower() for k in lowered):
            return "***"
        if isinstance(value, dict):
            return {k: walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and secret_values:
            return mask_secrets(value, secret_values)
        return value

    return walk(arguments)


class Recorder:
    """The bounded, batched writer of invocation records (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        retention_seconds: float | None = 7 * 24 * 3600,
        retention_rows: int | None = 1_000_000,
        prune_every: float = 300.0,
        flush_interval: float = 0.2,
        redact_keys: Iterable[str] = DEFAULT_REDACT_KEYS,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.redact_keys = tuple(redact_keys)
        self.batch_size = batch_size
        self.retention_seconds = retention_seconds
        self.retention_rows = retention_rows
        self.prune_every = prune_every
        self._send: MemoryObjectSendStream[Invocation]
        self._receive: MemoryObjectReceiveStream[Invocation]
        self._send, self._receive = anyio.create_memory_object_stream[Invocation](capacity)
        self.recorded = 0
        self.dropped = 0
        self.failed_writes = 0
        self._accepted = 0
        self._written = anyio.Event()

    def record(self, invocation: Invocation) -> None:
        try:
            self._send.send_nowait(invocation)
            self._accepted += 1
        except anyio.WouldBlock:
            self.dropped += 1
            if self.dropped in (1, 100, 10_000) or self.dropped % 100_000 == 0:
                logger.warning("call log queue full: %d records dropped so far", self.dropped)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        last_prune = 0.0
        async with self._receive:
            async for first in self._receive:
                # Collect for a moment: one transaction per call would cost the calls.
                batch = [first]
                with anyio.move_on_after(self.flush_interval), suppress(anyio.EndOfStream):
                    while len(batch) < self.batch_size:
                        batch.append(await self._receive.receive())
                await self._write(batch)
                if time.monotonic() - last_prune > self.prune_every:
                    last_prune = time.monotonic()
                    await self._prune()

    async def _write(self, batch: list[Invocation]) -> None:
        try:
            await self.store.add_invocations(batch)
            self.recorded += len(batch)
        except Exception as exc:  # noqa: BLE001 - a failed write must never fail calls
            self.failed_writes += len(batch)
            logger.warning("could not write %d call records: %s", len(batch), exc)
        written, self._written = self._written, anyio.Event()
        written.set()

    async def _prune(self) -> None:
        try:
            await self.store.prune(max_age_seconds=self.retention_seconds,
                                   max_rows=self.retention_rows)
        except Exception as exc:  # noqa: BLE001 - retention retries at the next interval
            logger.warning("retention failed: %s", exc)

    async def flushed(self, within: float = 10.0) -> bool:
        """Wait until every record queued so far is written (for tests and shutdown)."""
        with anyio.move_on_after(within):
            while self.recorded + self.failed_writes < self._accepted:
                await self._written.wait()
            return True
        return False

    def stats(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "dropped": self.dropped,
                "failed_writes": self.failed_writes,
                "queued": self._receive.statistics().current_buffer_used}


def dumps_arguments(arguments: Any, secret_values: frozenset[str],
                    keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> str | None:
    if arguments is None:
        return None
    return json.dumps(redact_arguments(arguments, keys, secret_values), default=str)
