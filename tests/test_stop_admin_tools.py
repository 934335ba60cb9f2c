"""An admin operation started by an MCP admin tool when the gateway stops, or its stdio
host leaves: waited for (bounded), then the servers under it stopped, so that it ends
and is audited in the store (``Gateway._admin_ops_ended``).

The REST API's operation is cut by uvicorn and left to the stop's bounded wait
(``tests/test_stop_cut_request.py``).  An admin tool's runs in its MCP session, whose
end waits for it: over stateful HTTP the stop never reached its wait, and only the
hard exit, 15 s on, spilled the audit entry; over stdio a host that closed stdin left
the gateway running until the operation's own bound (here a first connect of up to
300 s).  A real gateway process, a real stdio server whose start the test holds
(``servers/slow_start.py``, never released: the stop ends it), a real SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures import PY, SERVERS, WITHIN
from tests.test_stop_cut_request import CLI, OPS, Lines, _started

INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "host", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def _setup(tmp: Path) -> tuple[Path, dict[str, Any], dict[str, str]]:
    config = tmp / "servers.yaml"
    config.write_text(json.dumps({
        "gateway": {"auth": {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}},
        "servers": {"clock": {"command": "${GATEWAY_PYTHON}",
                              "args": ["-m", "fast_mcp_gateway.demo.clock"]}}}))
    add = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "gateway_add_server", "arguments": {"name": "slow", "config": {
            "command": PY, "args": [str(SERVERS / "slow_start.py"), str(tmp / "release"),
                                    "--per-process", "--fail"],
            "timeouts": {"connect": 300}}}}}
    env = {**os.environ, "MCP_GATEWAY_SPOOL_DIR": str(tmp / "spool"), "HOME": str(tmp)}
    return config, add, env


def _audited_in_the_store(tmp: Path, said: str, actor: str) -> None:
    assert "waiting up to 5 s for 1 admin operation(s) in flight: add_server 'slow' by " \
           f"{actor}" in said, said
    assert "still running at the hard exit" not in said and "Traceback" not in said, said
    with sqlite3.connect(tmp / "g.db") as check:
        audited = list(check.execute("SELECT action, target, actor FROM audit"))
    assert audited == [("add_server", "slow", actor)], (audited, said)
    assert not list((tmp / "spool").glob("held-*")), said  # written, not spilled


def test_an_admin_tool_over_stateful_http_at_a_stop_is_waited_for(tmp_path: Path) -> None:
    config, add, env = _setup(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*CLI, "--config", str(config), "--transport", "http", "--port", str(port),
         "--db", str(tmp_path / "g.db")], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    url = f"http://127.0.0.1:{port}/mcp"
    headers = {"Authorization": f"Bearer {OPS}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}

    def post(body: dict[str, Any], sent: dict[str, str]) -> Any:
        return urllib.request.urlopen(urllib.request.Request(
            url, json.dumps(body).encode(), sent, method="POST"), timeout=WITHIN)

    def call(sent: dict[str, str]) -> None:
        try:
            with post(add, sent) as response:
                response.read()
        except OSError:
            pass  # the stop cut it: what matters is the audit

    try:
        log = Lines(proc.stderr)
        log.wait_for("upstream clock: starting -> ready")
        with post(INITIALIZE, headers) as opened:
            opened.read()
            session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"],
                       "mcp-protocol-version": "2025-11-25"}
        post(INITIALIZED, session).close()
        adding = threading.Thread(target=call, args=(session,), daemon=True)
        adding.start()
        _started(tmp_path / "release.started.1")
        proc.send_signal(signal.SIGTERM)
        said = log.wait_ended()
        assert proc.wait(timeout=WITHIN) == 0, said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _audited_in_the_store(tmp_path, said, "ops")


def test_an_admin_tool_in_flight_when_the_stdio_host_leaves_is_waited_for(
        tmp_path: Path) -> None:
    config, add, env = _setup(tmp_path)
    proc = subprocess.Popen(
        [*CLI, "--config", str(config), "--db", str(tmp_path / "g.db")],
        env={**env, "MCP_GATEWAY_ALLOW_UNAUTHENTICATED_ADMIN": "true"},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        log = Lines(proc.stderr)
        for message in (INITIALIZE, INITIALIZED, add):
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
            if message is INITIALIZE:
                assert '"id":0' in proc.stdout.readline()
        _started(tmp_path / "release.started.1")
        proc.stdin.close()  # the host leaves
        said = log.wait_ended()
        assert proc.wait(timeout=WITHIN) == 0, said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _audited_in_the_store(tmp_path, said, "stdio")
