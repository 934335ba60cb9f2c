"""``serve`` on either event loop: uvloop (the default when installed) and asyncio.

The choice itself is a unit (``cli/loop.py``); what matters is that everything touching
the loop behaves the same on both, with real processes: the threadless stdio front
(pipes, one socket for both directions, a host that stops reading), stdio upstreams
(spawn, kill -9 and failover, none left behind), signals (SIGHUP reload, SIGTERM stop)
and HTTP mode (uvicorn inside the loop).  Terminals and regular files as stdin are
covered by ``tests/test_dashboard_any_stdio.py`` and ``tests/test_shutdown.py`` on the
default loop (uvloop here).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from fastmcp import Client

from fast_mcp_gateway.cli import loop as loop_module
from fast_mcp_gateway.cli.loop import choose_loop
from fast_mcp_gateway.cli.main import main
from fast_mcp_gateway.errors import ConfigError
from tests import procs
from tests.test_rest_cli import _free_port, _wait_for_api
from tests.test_shutdown import _marked

CLI = [sys.executable, "-m", "fast_mcp_gateway", "serve"]
WITHIN = 60.0  # a bound for anything on a loaded machine, never a speed expectation

try:
    import uvloop
except ImportError:  # Windows, or an install without it
    uvloop = None  # type: ignore[assignment]

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    uvloop is None, reason="uvloop is not installed"))]


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if uvloop were not installed: importing it fails."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


# -- the choice ---------------------------------------------------------------------------

def test_asyncio_is_asyncio() -> None:
    assert choose_loop("asyncio") == loop_module.LoopChoice("asyncio", {})


@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
@pytest.mark.parametrize("choice", ["auto", "uvloop"])
def test_auto_and_uvloop_run_on_uvloop_when_installed(choice: str) -> None:
    chosen = choose_loop(choice)
    assert chosen.name.startswith("uvloop ")
    assert chosen.backend_options == {"use_uvloop": True}


@pytest.mark.usefixtures("no_uvloop")
def test_auto_falls_back_to_asyncio_without_uvloop() -> None:
    assert choose_loop("auto") == loop_module.LoopChoice("asyncio", {})


@pytest.mark.usefixtures("no_uvloop")
def test_uvloop_asked_for_but_missing_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigError) as caught:
        choose_loop("uvloop")
    text = str(caught.value)
    assert "uvloop" in text and "not installed" in text
    assert "pip install uvloop" in text and "MCP_GATEWAY_EVENT_LOOP=asyncio" in text


def test_an_unknown_choice_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="'trio' is not one of auto, asyncio, uvloop"):
        choose_loop("trio")


def _empty_config(tmp_path: Path) -> Path:
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    return config


@pytest.mark.usefixtures("no_uvloop")
def test_serve_with_uvloop_missing_exits_2_before_starting_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--config", str(_empty_config(tmp_path)), "--event-loop", "uvloop",
                 "--no-db"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("mcp-gateway: event loop") and "pip install uvloop" in err
    assert "Traceback" not in err


def test_a_bad_setting_in_the_environment_names_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MCP_GATEWAY_EVENT_LOOP", "fastest")
    code = main(["serve", "--config", str(_empty_config(tmp_path)), "--no-db"])
    assert code == 2
    err = capsys.readouterr().err
    assert "MCP_GATEWAY_EVENT_LOOP" in err and "'fastest'" in err
    assert "'auto', 'asyncio' or 'uvloop'" in err and "Traceback" not in err


def test_a_store_url_in_a_bad_setting_is_not_echoed() -> None:
    from pydantic import ValidationError

    from fast_mcp_gateway.config.settings import GatewaySettings, settings_problem

    with pytest.raises(ValidationError) as caught:
        GatewaySettings(db=["postgresql://u:hunter2@db/x"])  # type: ignore[arg-type]
    text = settings_problem(caught.value)
    assert "MCP_GATEWAY_DB" in text and "hunter2" not in text


# -- real processes -------------------------------------------------------------------------

class Host:
    """A raw JSON-RPC host on the gateway's stdio, its lines read by a thread."""

    def __init__(self, write: BinaryIO, read: BinaryIO) -> None:
        self._write, self._lines = write, queue.Queue[bytes]()
        self.notifications: list[dict[str, Any]] = []
        threading.Thread(target=self._pump, args=(read,), daemon=True).start()
        self._next = 0

    def _pump(self, read: BinaryIO) -> None:
        for line in iter(read.readline, b""):
            self._lines.put(line)
        self._lines.put(b"")

    def send(self, message: dict[str, Any]) -> None:
        self._write.write((json.dumps(message) + "\n").encode())
        self._write.flush()

    def next_message(self) -> dict[str, Any]:
        line = self._lines.get(timeout=WITHIN)
        assert line, "the gateway closed its stdout"
        message: dict[str, Any] = json.loads(line)
        return message

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next += 1
        self.send({"jsonrpc": "2.0", "id": self._next, "method": method,
                   **({"params": params} if params is not None else {})})
        while True:
            message = self.next_message()
            if message.get("id") == self._next:
                assert "result" in message, message
                result: dict[str, Any] = message["result"]
                return result
            self.notifications.append(message)

    def initialize(self) -> None:
        self.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                    "clientInfo": {"name": "raw", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def tools(self) -> set[str]:
        return {tool["name"] for tool in self.request("tools/list")["tools"]}

    def wait_for_tool(self, name: str) -> None:
        """Until ``tools/list`` has ``name``, listing again after each list_changed."""
        deadline = time.monotonic() + WITHIN
        while name not in self.tools():
            assert time.monotonic() < deadline, f"{name} never listed"
            while True:
                message = self.next_message()
                if message.get("method") == "notifications/tools/list_changed":
                    break

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments or {}})


def _config(tmp_path: Path, marker: str, *, clock: bool = False) -> Path:
    config = tmp_path / "servers.yaml"
    text = ("servers:\n  notes:\n    command: ${GATEWAY_PYTHON}\n"
            f"    args: ['-m', 'fast_mcp_gateway.demo.notes', '--{marker}']\n"
            "    replicas: 2\n")
    if clock:
        text += ("  clock:\n    command: ${GATEWAY_PYTHON}\n"
                 f"    args: ['-m', 'fast_mcp_gateway.demo.clock', '--{marker}']\n")
    config.write_text(text)
    return config


def _wait_processes(marker: str, count: int) -> list[int]:
    deadline = time.monotonic() + WITHIN
    while len(found := _marked(marker)) != count:
        assert time.monotonic() < deadline, f"{len(found)} processes, not {count}"
        time.sleep(0.05)
    return found


def _assert_clean_stop(proc: subprocess.Popen[bytes], log: Path, marker: str,
                       loop: str) -> str:
    assert proc.wait(timeout=WITHIN) == 0
    text = log.read_text()
    assert f"event loop: {loop}" in text, text
    assert "Traceback" not in text and " ERROR " not in text, text
    assert not procs.wait_gone_pids(_marked(marker), timeout=10), "upstreams outlived it"
    return text


@contextlib.contextmanager
def _serving(tmp_path: Path, loop: str, *args: str, **popen: Any
             ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / f"gateway-{loop}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([*CLI, "--event-loop", loop, *args], stderr=err, **popen)
        try:
            yield proc, log
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("loop", LOOPS)
def test_stdio_calls_failover_reload_and_stop(tmp_path: Path, loop: str) -> None:
    marker = f"m{uuid.uuid4().hex}"
    config = _config(tmp_path, marker)
    with _serving(tmp_path, loop, "--config", str(config), "--db", str(tmp_path / "g.db"),
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE) as (proc, log):
        assert proc.stdin is not None and proc.stdout is not None
        host = Host(proc.stdin, proc.stdout)
        host.initialize()
        assert "notes_list_notes" in host.tools()
        assert not host.call("notes_list_notes")["isError"]

        # kill -9 one replica: the calls go on (the other replica), and it comes back.
        notes = _wait_processes(marker, 2)
        os.kill(notes[0], signal.SIGKILL)
        assert not procs.wait_gone_pids([notes[0]], timeout=WITHIN)
        for _ in range(5):
            assert not host.call("notes_list_notes")["isError"]
        restarted = _wait_processes(marker, 2)
        assert notes[0] not in restarted

        # SIGHUP reloads the file: the new server is started and listed.
        _config(tmp_path, marker, clock=True)
        proc.send_signal(signal.SIGHUP)
        host.wait_for_tool("clock_now")
        assert not host.call("clock_now")["isError"]
        _wait_processes(marker, 3)

        proc.send_signal(signal.SIGTERM)
        text = _assert_clean_stop(proc, log, marker, loop)
    assert "received SIGTERM: stopping" in text


@pytest.mark.parametrize("loop", LOOPS)
def test_one_socket_for_stdin_and_stdout(tmp_path: Path, loop: str) -> None:
    """``socat EXEC:`` and inetd give a server one socket as both: the pipe transports'
    peer-close watch took the host's requests for a close (asyncio closed stdout, uvloop
    stopped answering); the threaded streams serve it."""
    marker = f"m{uuid.uuid4().hex}"
    ours, theirs = socket.socketpair()
    with ours, _serving(tmp_path, loop, "--config", str(_config(tmp_path, marker)),
                        "--no-db", stdin=theirs.fileno(), stdout=theirs.fileno()) as (proc, log):
        theirs.close()
        with ours.makefile("rb") as read, ours.makefile("wb") as write:
            host = Host(write, read)
            host.initialize()
            for _ in range(3):
                assert not host.call("notes_list_notes")["isError"]
            ours.shutdown(socket.SHUT_WR)  # the host leaves
            _assert_clean_stop(proc, log, marker, loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_host_that_closes_stdout_ends_the_gateway_quietly(tmp_path: Path, loop: str) -> None:
    """uvloop refuses a write on a pipe its reader closed with RuntimeError, asyncio
    drops it; both end as 'the host closed the gateway's stdout'."""
    marker = f"m{uuid.uuid4().hex}"
    with _serving(tmp_path, loop, "--config", str(_config(tmp_path, marker)), "--no-db",
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE) as (proc, log):
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        def send(message: dict[str, Any]) -> None:
            stdin.write((json.dumps(message) + "\n").encode())
            stdin.flush()

        # No reader thread here: closing a file another thread reads blocks.
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}})
        assert b'"id":1' in proc.stdout.readline()
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        proc.stdout.close()  # the host stops reading
        with contextlib.suppress(BrokenPipeError):
            for n in range(5):
                send({"jsonrpc": "2.0", "id": 10 + n, "method": "tools/list"})
        text = _assert_clean_stop(proc, log, marker, loop)
    assert "closed the gateway's stdout" in text


@pytest.mark.anyio
@pytest.mark.parametrize("loop", LOOPS)
async def test_http_serves_and_stops_gracefully(tmp_path: Path, loop: str) -> None:
    marker = f"m{uuid.uuid4().hex}"
    port = _free_port()
    with _serving(tmp_path, loop, "--config", str(_config(tmp_path, marker)), "--transport",
                  "http", "--port", str(port), "--no-db", stdin=subprocess.DEVNULL,
                  stdout=subprocess.DEVNULL) as (proc, log):
        _wait_for_api(f"http://127.0.0.1:{port}/api/v1/openapi.json", proc)  # type: ignore[arg-type]
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("notes_list_notes", {})
            assert not result.is_error
        proc.send_signal(signal.SIGTERM)
        text = _assert_clean_stop(proc, log, marker, loop)
    assert "received SIGTERM: stopping" in text


@pytest.mark.parametrize("loop", LOOPS)
def test_a_missing_command_is_named_on_either_loop(tmp_path: Path, loop: str) -> None:
    """uvloop's spawn raises FileNotFoundError without the file name: the log said
    'command not found: [Errno 2] No such file or directory', naming nothing."""
    missing = f"/nonexistent/mcp-server-{uuid.uuid4().hex}"
    config = tmp_path / "servers.yaml"
    config.write_text(f"servers:\n  gone:\n    command: {missing}\n")
    with _serving(tmp_path, loop, "--config", str(config), "--no-db",
                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as (proc, log):
        deadline = time.monotonic() + WITHIN
        while "upstream gone: starting -> " not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert proc.stdin is not None
        proc.stdin.close()  # the host leaves: the gateway stops
        assert proc.wait(timeout=WITHIN) == 0
    assert f"command not found: {missing}" in log.read_text()


def test_allowed_hosts_and_origins_in_the_environment_are_comma_separated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The README lists MCP_GATEWAY_ALLOWED_HOSTS among the settings; a plain value
    (MCP_GATEWAY_ALLOWED_HOSTS=gw.internal) stopped serve with a pydantic-settings
    traceback: only a JSON list was read."""
    from fast_mcp_gateway.config.settings import GatewaySettings

    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_HOSTS", "gw.internal, gw.example:8765")
    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_ORIGINS", "https://ui.example")
    settings = GatewaySettings()
    assert settings.allowed_hosts == ["gw.internal", "gw.example:8765"]
    assert settings.allowed_origins == ["https://ui.example"]
    monkeypatch.setenv("MCP_GATEWAY_REDACT_KEYS", "password,ssn")
    assert GatewaySettings().redact_keys == ["password", "ssn"]
    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_HOSTS", '["a.example"]')  # a JSON list still
    assert GatewaySettings().allowed_hosts == ["a.example"]
    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_HOSTS", '["a.example"')
    code = main(["serve", "--config", str(_empty_config(tmp_path)), "--no-db"])
    err = capsys.readouterr().err
    assert code == 2 and "MCP_GATEWAY_ALLOWED_HOSTS" in err and "Traceback" not in err
