"""The report commands stop quietly when their reader leaves (``mcp-gateway logs | head``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.store.base import Invocation

CLI = [sys.executable, "-m", "fast_mcp_gateway"]
REPO = Path(__file__).resolve().parents[1]


async def _store_with_calls(db: Path, count: int) -> None:
    store = await open_store(str(db))
    try:
        now = time.time()
        await store.add_invocations(
            Invocation(id=f"{i:032x}", trace_id=f"{i:032x}", client="t", kind="tool",
                       exposed="clock_add", server="clock", original="add",
                       started_at=now - count + i, duration_ms=1.0, status="success")
            for i in range(count))
    finally:
        await store.close()


@pytest.mark.parametrize("command", [["logs", "--json"], ["logs"], ["stats"],
                                     ["servers", "--config", "servers.yaml"]])
def test_a_closed_stdout_ends_the_command_without_a_traceback(
        tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "calls.db"
    anyio.run(_store_with_calls, db, 50)
    # The reader is gone before the first line is written: every write fails (EPIPE),
    # as after `| head -1` has read its line and exited.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([*CLI, *command, "--db", str(db)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, cwd=REPO)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 1
