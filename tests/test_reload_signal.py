"""SIGHUP makes a running ``mcp-gateway serve`` re-read its config file, and the audit
log names the signal as the actor (``signal:SIGHUP``), apart from the file watcher
(``config-file``) and library code (``library``).  A real gateway process on pipes."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_hostile_stdin import DEADLINE, GatewayProcess, wait_for_tool

CLOCK = ('    command: ${GATEWAY_PYTHON}\n'
         '    args: ["-m", "fast_mcp_gateway.demo.clock"]\n')


def reloads(process: GatewayProcess) -> list[dict[str, Any]]:
    """The ``reload_config`` entries ``gateway_audit`` lists, once there is one."""
    deadline = time.monotonic() + DEADLINE
    while True:
        reply = process.request("tools/call", {"name": "gateway_audit", "arguments": {}})
        entries = reply["result"]["structuredContent"]["entries"]
        found = [e for e in entries if e["action"] == "reload_config"]
        if found:
            return found
        assert time.monotonic() < deadline, f"no reload audited: {entries}"
        time.sleep(0.05)  # another process's progress: nothing here to wait on


@pytest.mark.timeout(300)
def test_sighup_reloads_the_file_and_is_audited_as_the_signal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No watcher: only the signal can make this reload.
    monkeypatch.setenv("MCP_GATEWAY_RELOAD_INTERVAL", "0")
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  clock:\n" + CLOCK)
    db = tmp_path / "g.db"
    process = GatewayProcess(config, db, tmp_path / "stderr.log", lane=True)
    try:
        process.ready("clock_now")
        config.write_text("servers:\n  clock:\n" + CLOCK + "  second:\n" + CLOCK)
        process.proc.send_signal(signal.SIGHUP)
        wait_for_tool(process, "second_now")
        entries = reloads(process)
        assert [e["actor"] for e in entries] == ["signal:SIGHUP"], entries
        assert entries[0]["target"] == str(config)
        assert process.proc.poll() is None  # a reload, not a stop
        code = process.close()
    finally:
        process.kill()
    assert code == 0, (tmp_path / "stderr.log").read_text()
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT actor FROM audit WHERE action = 'reload_config'").fetchall()
    assert stored == [("signal:SIGHUP",)]
