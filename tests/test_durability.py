"""A clean stop loses no call record (README: "Durability").

A real ``mcp-gateway serve`` on pipes answers K calls; right after the last reply it is
stopped by SIGTERM, SIGINT or the host closing stdin, and the store must hold all K.
Also the recorder itself: cancelling its writer mid-batch writes what it held.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.telemetry.recorder import BatchWriter
from tests.test_hostile_stdin import DEADLINE, GatewayProcess

K = 120


@pytest.mark.timeout(300)
@pytest.mark.parametrize("stop, lane", [("SIGTERM", True), ("SIGINT", False),
                                        ("EOF", True), ("EOF", False)])
def test_a_clean_stop_keeps_every_acknowledged_record(tmp_path: Path, stop: str,
                                                      lane: bool) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  clock:\n    command: ${GATEWAY_PYTHON}\n"
                      '    args: ["-m", "fast_mcp_gateway.demo.clock"]\n')
    db = tmp_path / "g.db"
    process = GatewayProcess(config, db, tmp_path / "stderr.log", lane=lane)
    try:
        process.ready("clock_now")
        # All at once: the last replies come while the recorder is still batching.
        process.write(b"".join(json.dumps({
            "jsonrpc": "2.0", "id": f"c{n}", "method": "tools/call",
            "params": {"name": "clock_now", "arguments": {}}}).encode() + b"\n"
            for n in range(K)))
        answered: set[Any] = set()
        while len(answered) < K:
            message = process.next_message(f"call replies ({len(answered)} of {K})")
            assert "result" in message, message
            answered.add(message["id"])
        if stop == "EOF":
            code = process.close()
        else:
            process.proc.send_signal(getattr(signal, stop))
            code = process.close()
    finally:
        process.kill()
    assert code == 0, (tmp_path / "stderr.log").read_text()
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute(
            "SELECT count(*) FROM invocations WHERE exposed = 'clock_now'").fetchone()
    assert stored == K, (tmp_path / "stderr.log").read_text()[-2000:]


@pytest.mark.anyio
async def test_a_cancelled_writer_writes_what_it_held_and_what_was_queued() -> None:
    written: list[int] = []

    async def write(batch: list[int]) -> None:
        written.extend(batch)

    # A long collection window: cancellation always finds items held, not yet written.
    writer = BatchWriter(write, what="items", batch_size=1000, flush_interval=3600)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        for n in range(50):
            writer.put(n)
        await anyio.wait_all_tasks_blocked()
        assert written == []  # still collecting
        tg.cancel_scope.cancel()
    assert sorted(written) == list(range(50))
    assert writer.written == 50 and writer.dropped == 0 and writer.stopped
    writer.put(99)  # after the writer stopped: counted, never raised
    assert writer.dropped == 1


@pytest.mark.anyio
async def test_a_drain_that_cannot_finish_counts_the_rest_as_dropped() -> None:
    async def stuck(batch: list[int]) -> None:
        await anyio.sleep_forever()

    writer = BatchWriter(stuck, what="items", batch_size=10, flush_interval=3600,
                         drain_timeout=0.05)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            for n in range(25):
                writer.put(n)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert writer.written == 0 and writer.dropped == 25 and writer.stopped
