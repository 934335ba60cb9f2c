"""A NUL character in a call record: a host's tool name or client name, an upstream's
error text.

PostgreSQL stores no NUL in text: the batch holding such a record was refused whole
("invalid byte sequence for encoding UTF8: 0x00"), so one host calling a tool named
with a NUL (recorded as an unknown call) erased the records of every call written with
it, other hosts' among them.  Now the NUL is stored as U+FFFD.  Real PostgreSQL.
"""

from __future__ import annotations

import time

import anyio
import pytest

from fast_mcp_gateway.admin.health_log import HealthLog
from fast_mcp_gateway.store import Invocation, open_store
from fast_mcp_gateway.telemetry.recorder import Recorder

pytestmark = pytest.mark.anyio


def call(id: str, **fields: str) -> Invocation:
    return Invocation(**{"id": id, "trace_id": "", "client": "host", "kind": "tool",
                         "exposed": "alpha_add", "server": "alpha", "original": "add",
                         "started_at": time.time(), "duration_ms": 1.0, "status": "success",
                         **fields})


async def test_a_nul_in_a_record_loses_no_record(pg_url: str) -> None:
    store = await open_store(pg_url)
    recorder = Recorder(store)
    try:
        async with anyio.create_task_group() as group:
            await group.start(recorder.run)
            recorder.record(call("fine"))
            recorder.record(call("named", exposed="no\x00such", server="", original="",
                                 status="rejected", error="Unknown tool 'no\x00such'"))
            recorder.record(call("client", client="evil\x00host"))
            assert await recorder.flushed(30)
            group.cancel_scope.cancel()
        assert recorder.failed_writes == 0
        stored = {r.id: r for r in (await store.invocations(limit=10))[0]}
        assert set(stored) == {"fine", "named", "client"}
        assert stored["named"].exposed == "no\ufffdsuch"
        assert stored["named"].error == "Unknown tool 'no\ufffdsuch'"
        assert stored["client"].client == "evil\ufffdhost"
    finally:
        await store.close()


async def test_a_nul_in_a_health_transition_loses_no_transition(pg_url: str) -> None:
    """The same for the health history: an upstream's words (a failure's detail) with a
    NUL made PostgreSQL refuse the batch, and its other transitions with it."""
    store = await open_store(pg_url)
    log = HealthLog(lambda: store, instance_id="gw")
    try:
        async with anyio.create_task_group() as group:
            await group.start(log.run)
            log.record("alpha", "alpha", "ready", None)
            log.record("alpha", "alpha", "failed", "exited: bad\x00byte")
            assert await log.flushed(30)
            group.cancel_scope.cancel()
        details = [r.detail for r in await store.health_records(limit=10)]
        assert details == ["exited: bad\ufffdbyte", None]
    finally:
        await store.close()
