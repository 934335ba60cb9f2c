"""Stopping: quietly, with exit code 0 and no process left behind, however it happens."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

import pytest

from tests import procs
from tests.fixtures import SERVERS

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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("start", ["early", "restarted"])
def test_a_gateway_killed_with_sigkill_takes_its_stdio_upstreams_along(
        tmp_path: Path, loop: str, start: str) -> None:
    """No code runs in a gateway killed with SIGKILL; an upstream blocked in a call does
    not read stdin, so it never sees EOF: the kernel's death signal stops it.  Both
    places a server starts: serve's early start, and a connect attempt (the restart
    after its first process exited at once)."""
    config = tmp_path / "servers.yaml"
    args = [str(SERVERS / "raw_stdio.py")]
    if start == "restarted":
        args.append(f"--exit-once={tmp_path / 'exited'}")
    config.write_text(f"servers:\n  raw:\n    command: {sys.executable}\n"
                      f"    args: {json.dumps(args)}\n")
    pid_file = tmp_path / "blocked.pid"
    proc = subprocess.Popen(
        [*CLI, "--config", str(config), "--db", str(tmp_path / "g.db"), "--event-loop", loop],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stderr is not None
    upstream = None
    try:
        head = _wait_ready(proc.stderr, servers=1)
        assert f"event loop: {loop}" in "".join(head)
        for message in (
                {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"}}},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                 "params": {"name": "raw_block", "arguments": {"path": str(pid_file)}}}):
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
        upstream = _wait_for_pid(pid_file, proc, timeout=30)
        assert procs.is_alive(upstream)
        proc.kill()
        proc.wait(timeout=30)
        assert not procs.wait_gone_pids([upstream], timeout=15), "the upstream outlived it"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if upstream is not None and procs.is_alive(upstream):
            os.kill(upstream, signal.SIGKILL)  # a failed test leaves nothing behind


def _wait_for_pid(path: Path, proc: subprocess.Popen[str], timeout: float) -> int:
    """The pid an upstream wrote to ``path`` (polled, bounded; the gateway must live)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "the gateway exited"
        assert time.monotonic() < deadline, f"no {path.name} within {timeout}s"
        time.sleep(0.05)
    return int(path.read_text())
