"""Stopping: quietly, with exit code 0 and no process left behind, however it happens."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import IO

from tests import procs

CLI = [sys.executable, "-m", "fast_mcp_gateway", "serve"]


def _config(tmp_path: Path, marker: str) -> Path:
    config = tmp_path / "servers.yaml"
    config.write_text(
        "servers:\n"
        "  notes:\n    command: ${GATEWAY_PYTHON}\n"
        f"    args: ['-m', 'fast_mcp_gateway.demo.notes', '--{marker}']\n"
        "  clock:\n    command: ${GATEWAY_PYTHON}\n"
        f"    args: ['-m', 'fast_mcp_gateway.demo.clock', '--{marker}']\n")
    return config


def _marked(marker: str) -> list[int]:
    """Processes anywhere on the machine whose command line carries ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and procs.is_alive(int(entry)):
                found.append(int(entry))
    return found


def _wait_ready(stderr: IO[str], servers: int = 2) -> list[str]:
    seen: list[str] = []
    for line in stderr:  # blocks until the gateway logs (or exits)
        seen.append(line)
        if sum("-> ready" in s for s in seen) == servers:
            return seen
    raise AssertionError("the gateway exited before its servers were ready:\n" + "".join(seen))


def _assert_quiet(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert " ERROR " not in stderr and " WARNING " not in stderr, stderr


def test_sigterm_stops_an_http_gateway_gracefully(tmp_path: Path) -> None:
    marker = f"m{uuid.uuid4().hex}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*CLI, "--config", str(_config(tmp_path, marker)), "--transport", "http", "--port",
         str(port), "--db", str(tmp_path / "g.db")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        head = _wait_ready(proc.stderr)
        assert len(_marked(marker)) == 2
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_quiet("".join(head) + rest)
    assert "received SIGTERM: stopping" in rest
    assert not procs.wait_gone_pids(_marked(marker), timeout=10)


def test_a_host_that_stops_reading_ends_the_gateway_quietly(tmp_path: Path) -> None:
    marker = f"m{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [*CLI, "--config", str(_config(tmp_path, marker)), "--db", str(tmp_path / "g.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    def send(message: dict[str, object]) -> None:
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()

    try:
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}})
        assert b'"id":1' in proc.stdout.readline()
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        proc.stdout.close()  # the host stops reading
        for n in range(5):
            send({"jsonrpc": "2.0", "id": 10 + n, "method": "tools/list"})
        assert proc.wait(timeout=30) == 0
        stderr = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
    _assert_quiet(stderr)
    assert "closed the gateway's stdout" in stderr
    assert not procs.wait_gone_pids(_marked(marker), timeout=10)


def test_ctrl_c_in_a_terminal_stops_everything_and_restarts_nothing(tmp_path: Path) -> None:
    """Ctrl-C signals the terminal's whole foreground process group, the gateway's."""
    marker = f"m{uuid.uuid4().hex}"
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "--config", str(_config(tmp_path, marker)), "--db", str(tmp_path / "g.db")],
        stdin=terminal, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    os.close(terminal)
    assert proc.stderr is not None
    try:
        head = _wait_ready(proc.stderr)
        started = set(_marked(marker))
        assert len(started) == 2
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_quiet("".join(head) + rest)
    assert "Ctrl-C" in "".join(head)  # a terminal user is told how to stop
    assert not procs.wait_gone_pids(_marked(marker), timeout=10), "upstreams outlived it"
    assert "starting" not in rest.split("received SIGINT")[-1], "an upstream was restarted"
