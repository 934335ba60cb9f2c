"""A server that cannot be connected to is reported with its cause and the fix (issue 8
item 7): nothing listening at the URL, a URL that is no MCP endpoint, a stdio process
that exits or writes junk on stdout.  Real subprocesses and real HTTP on 127.0.0.1;
every wait is on the attempt itself (``probe`` returns when it failed)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.telemetry.redaction import SECRETS
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState
from tests.fixtures import FAST_RESTART, PY, make_gateway, stdio_entry

pytestmark = pytest.mark.anyio


async def failure(entry: dict[str, Any], connect_timeout: float = 30.0) -> str:
    """``last_error`` after one connect attempt of ``entry`` (as ``mcp-gateway check``)."""
    config = parse_config({"servers": {"up": entry}}, source="test").servers["up"]
    upstream = Upstream(config, connect_timeout=connect_timeout)
    with anyio.fail_after(120):  # a guard only: each attempt ends by itself
        with pytest.raises(Exception):  # noqa: B017 - the text is what is tested
            await upstream.probe()
    assert upstream.last_error is not None
    return upstream.last_error


class _NotMcp(BaseHTTPRequestHandler):
    """A web server that is no MCP server: 404 JSON (as FastAPI answers) for unknown
    paths, 405 for a GET-only path, 401 behind a login, and one JSON-RPC error body."""

    def do_POST(self) -> None:
        if self.path == "/rpc-error":
            self._send(400, {"jsonrpc": "2.0", "id": None,
                             "error": {"code": -32600, "message": "bad envelope, says the server"}})
        elif self.path == "/private/mcp":
            self._send(401, {"detail": "login first"})
        elif self.path == "/health":
            self._send(405, {"detail": "Method Not Allowed"})
        else:
            self._send(404, {"detail": "Not Found"})

    do_GET = do_POST  # SSE opens with a GET

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` on a free port of 127.0.0.1; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a handler may still hold a connection at shutdown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def not_mcp() -> contextlib.AbstractContextManager[str]:
    return serving(_NotMcp)


async def test_connection_refused_names_the_url_and_says_nothing_listens() -> None:
    # A bound socket that never listens: every connect to its port is refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/mcp"
        error = await failure({"url": url})
    assert error.startswith(f"cannot connect to {url}: connection refused"), error
    assert "nothing is listening" in error and "check that the server is running" in error


@pytest.mark.parametrize(("path", "status"), [("/nothing", "404 Not Found"),
                                              ("/health", "405 Method Not Allowed")])
async def test_a_url_that_is_no_mcp_endpoint_says_the_http_status(path: str, status: str) -> None:
    with not_mcp() as base:
        error = await failure({"url": base + path})
    assert error.startswith(f"connect: initialize got HTTP {status} at {base}{path}: not an "
                            "MCP endpoint; check the path in 'url'"), error
    assert "/mcp" in error and "-326" not in error


async def test_refused_credentials_point_at_headers() -> None:
    with not_mcp() as base:
        error = await failure({"url": base + "/private/mcp"})
    assert f"HTTP 401 Unauthorized at {base}/private/mcp" in error, error
    assert "'headers'" in error and "Authorization" in error


async def test_a_json_rpc_error_body_is_the_servers_own_word() -> None:
    """Only the SDK's stand-ins for an HTTP status are replaced, never a real answer."""
    with not_mcp() as base:
        error = await failure({"url": base + "/rpc-error"})
    assert error == "connect: initialize answered -32600 bad envelope, says the server"


async def test_an_sse_url_that_is_not_found_says_so() -> None:
    with not_mcp() as base:
        error = await failure({"url": base + "/sse"})
    assert error.startswith(f"HTTP 404 Not Found at {base}/sse: not an MCP endpoint"), error


class _Html(BaseHTTPRequestHandler):
    """A web site at the URL: every request gets a 200 HTML page (or, at /api, JSON
    that is no JSON-RPC)."""

    def do_POST(self) -> None:
        api = self.path == "/api"
        data = b'{"status": "ok"}' if api else b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if api else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


def web_site() -> contextlib.AbstractContextManager[str]:
    return serving(_Html)


@pytest.mark.parametrize(("path", "body"), [("/mcp", "a text/html body"),
                                            ("/api", "a application/json body")])
async def test_a_web_page_at_the_url_says_it_is_no_mcp_answer(path: str, body: str) -> None:
    """The SDK says "Unexpected content type" / "Failed to parse JSON response" (a
    JSON-RPC error it made up); the text says what the URL answered."""
    with web_site() as base:
        error = await failure({"url": base + path})
    assert error.startswith(f"connect: initialize got HTTP 200 OK at {base}{path} with "
                            f"{body}, not a JSON-RPC answer: not an MCP endpoint; check the "
                            "path in 'url'"), error
    assert "-326" not in error and "Unexpected" not in error


async def test_a_web_page_at_an_sse_url_says_it_is_no_event_stream() -> None:
    with web_site() as base:
        error = await failure({"url": base + "/sse"})
    assert error.startswith(f"HTTP 200 OK at {base}/sse with a text/html body, not an SSE "
                            "stream: not an MCP SSE endpoint; check the path in 'url'"), error


@pytest.mark.parametrize(("path", "what"), [("/mcp", "initialize"),
                                            ("/sse", "the SSE stream request")])
async def test_a_silent_server_says_it_accepted_and_did_not_answer(path: str, what: str) -> None:
    """A listening socket nobody reads from: the TCP connection is made (the kernel
    accepts it), no HTTP answer ever comes; the deadline ends the attempt."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}{path}"
        error = await failure({"url": url}, connect_timeout=1.0)
    # A one-shot probe (mcp-gateway check): no next attempt to tell of.
    assert error == (f"upstream 'up': {url} accepted the connection but sent no answer to "
                     f"{what} within 1 s (timeouts.connect); is it an MCP server, and is it "
                     "overloaded?"), error


async def test_no_tcp_connection_in_time_points_at_host_port_and_firewall() -> None:
    """A socket whose accept queue is full (backlog 0, one connection waiting): Linux
    drops further SYNs, so the connect hangs as towards a host behind a firewall."""
    with socket.socket() as full, socket.socket() as filler:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        filler.connect(full.getsockname())
        url = f"http://127.0.0.1:{full.getsockname()[1]}/mcp"
        error = await failure({"url": url}, connect_timeout=1.0)
    assert error.startswith(f"upstream 'up': no connection to {url} within 1 s "
                            "(timeouts.connect): the host does not answer on that port; "
                            "check the host and port in 'url'"), error


async def test_a_timeout_text_masks_credentials_in_the_url() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        error = await failure({"url": f"http://me:pa55-w0rd-xyz@127.0.0.1:{port}/mcp"
                                      "?api_key=k3y-v4lue-xyz"}, connect_timeout=1.0)
    assert "accepted the connection" in error, error
    assert "pa55-w0rd-xyz" not in error and "k3y-v4lue-xyz" not in error, error


class _StreamNothing(BaseHTTPRequestHandler):
    """Answers with an event stream's headers, then sends nothing until the client goes."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.flush()
        self.rfile.read(1)  # blocks until the client closes the connection

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


async def test_an_answer_without_a_message_says_which_answer_came() -> None:
    with serving(_StreamNothing) as base:
        url = f"{base}/mcp"
        error = await failure({"url": url}, connect_timeout=1.0)
    assert error.startswith(f"upstream 'up': {url} answered HTTP 200 OK (POST {url}) but sent "
                            "no MCP answer to initialize within 1 s (timeouts.connect); "), error


async def test_a_process_that_exits_gives_its_exit_code_and_a_hint() -> None:
    error = await failure({"command": "true"})
    assert error.startswith("connect: the server exited with code 0 before answering "
                            "initialize; check that 'command' and 'args' start an MCP server "
                            "that talks over stdio"), error


async def test_a_command_not_on_the_path_names_the_path_and_the_fix() -> None:
    """It said "command not found: npx": not where it was looked for, nor what to do
    (a host such as Claude Desktop gives the gateway a short PATH)."""
    error = await failure({"command": "no-such-mcp-server-x1", "env": {"PATH": "/nowhere/bin"}})
    assert error.startswith("command not found: no-such-mcp-server-x1 is in no folder of the "
                            "PATH it was looked up in (/nowhere/bin); write its absolute path "
                            "in 'command'"), error


async def test_a_typo_of_a_launcher_on_the_path_is_named(tmp_path: Path) -> None:
    """``"command": "npz"`` (a Claude Desktop entry with a typo) was "not in any folder of
    the PATH" only; the launcher meant is on that PATH."""
    launcher = tmp_path / "npx"
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    error = await failure({"command": "npz", "env": {"PATH": str(tmp_path)}})
    assert error.startswith(f"command not found: npz is in no folder of the PATH it was "
                            f"looked up in ({tmp_path}) (did you mean 'npx'?); write its "
                            "absolute path in 'command'"), error
    unlike = await failure({"command": "mcp-server-x3", "env": {"PATH": str(tmp_path)}})
    assert "did you mean" not in unlike, unlike


async def test_a_command_that_cannot_start_says_why(tmp_path: Path) -> None:
    """A missing relative path, a script whose #! interpreter is missing (the OS says "not
    found" of a file that is there), a file that is not executable, a directory."""
    script = tmp_path / "server.sh"
    script.write_text("#!/nonexistent/node\n")
    script.chmod(0o755)
    plain = tmp_path / "server.py"
    plain.write_text("print('hi')\n")
    relative = await failure({"command": "./bin/server", "cwd": str(tmp_path)})
    assert relative.startswith(f"command not found: ./bin/server does not exist (a relative "
                               f"path, taken from 'cwd': {tmp_path / 'bin' / 'server'}); fix "
                               "the path in 'command'"), relative
    # "~" is the shell's: it was taken as a folder named "~" under the working directory.
    tilde = await failure({"command": "~/bin/no-such-mcp-server-x2"})
    assert tilde.startswith("command not found: ~/bin/no-such-mcp-server-x2: '~' is not "
                            f"expanded in 'command' (no shell starts the server); write the "
                            f"absolute path ({os.environ['HOME']}/bin/no-such-mcp-server-x2)"
                            " or start it with ${HOME}"), tilde
    shebang = await failure({"command": str(script)})
    assert shebang.startswith(f"command not found: {script} exists, but the interpreter its "
                              "first line names (/nonexistent/node) does not"), shebang
    not_executable = await failure({"command": str(plain)})
    assert not_executable.startswith(f"permission denied: {plain} is not executable; make it "
                                     f"so (chmod +x {plain})"), not_executable
    directory = await failure({"command": str(tmp_path)})
    assert directory.startswith(f"permission denied: {tmp_path} is a directory"), directory


async def test_a_crash_gives_the_exit_code_and_the_stderr_tail() -> None:
    error = await failure({"command": PY, "args": [
        "-c", "import sys; print('fatal: API_KEY is not set', file=sys.stderr); sys.exit(3)"]})
    assert error.startswith("connect: the server exited with code 3 before answering "
                            "initialize"), error
    assert error.endswith("| stderr: fatal: API_KEY is not set"), error


async def test_junk_on_stdout_is_named_with_its_first_line_and_the_fix() -> None:
    """The process prints a non-JSON line and then waits (idle): the deadline ends the
    attempt, and the message blames stdout, not slowness."""
    script = ("import sys, time\nprint('hello garbage', flush=True)\n"
              "print('more garbage', flush=True)\ntime.sleep(600)\n")
    error = await failure({"command": PY, "args": ["-c", script]}, connect_timeout=1.0)
    assert error.startswith("connect: no answer to initialize in time; it wrote 2 lines on "
                            "stdout that MCP cannot read (the first: not JSON-RPC: "
                            "'hello garbage')"), error
    assert "writes its logs to stderr" in error and "check that 'command' and 'args'" in error
    assert "timeouts.connect" not in error and "idle" not in error


async def test_junk_then_exit_names_both() -> None:
    error = await failure({"command": "sh", "args": ["-c", "echo 'Usage: server [--port N]'; "
                                                            "exit 2"]})
    assert error.startswith("connect: the server exited with code 2 before answering "
                            "initialize; it wrote a line on stdout that MCP cannot read (the "
                            "first: not JSON-RPC: 'Usage: server [--port N]')"), error


async def test_junk_on_stdout_is_redacted_and_bounded() -> None:
    secret = "s3cr3t-value-for-junk-test"
    SECRETS.add([secret])
    error = await failure({"command": "sh", "args": [
        "-c", f"echo 'token={secret} {'x' * 500}'; exit 1"]})
    assert secret not in error and "***" in error
    assert len(error) < 600, error


async def test_a_server_that_dies_while_held_gives_its_exit_code() -> None:
    config = parse_config({"servers": {"up": stdio_entry("well.py")}},
                          source="test").servers["up"]
    upstream = Upstream(config, restart=FAST_RESTART)
    async with anyio.create_task_group() as tg:
        tg.start_soon(upstream.run)
        try:
            with anyio.fail_after(120):  # a guard only
                await upstream.wait_first_attempt()
                assert upstream.state is UpstreamState.READY, upstream.last_error
                with pytest.raises(Exception):  # noqa: B017 - the connection dies mid-call
                    await upstream.call_tool("crash", {"code": 7}, None)
                assert await upstream.wait_until(
                    lambda: "exited with code" in (upstream.last_error or ""), 60)
        finally:
            upstream.stop()
    # Whichever the gateway saw first (the stderr EOF, or the call's closed connection)
    # is followed by the exit code and the stderr tail.
    error = upstream.last_error or ""
    assert error.startswith(("the server process exited with code 7 | stderr: ",
                             "connection closed during tools/call 'crash': the server "
                             "process exited with code 7 | stderr: ")), error
    assert error.endswith("well: crashing on request"), error


# What an mcp 1.x SDK server (e.g. uvx mcp-server-time) answers a request it has no
# model for: server/discover fails validation before any method lookup.  The real 1.x
# server says the same (tests/test_sdk1.py::test_protocol_2026_on_a_1x_server).
_HANDSHAKE_ONLY = """
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if "id" in message:
        error = {"code": -32602, "message": "Invalid request parameters", "data": ""}
        print(json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": error}), flush=True)
"""


async def test_the_2026_era_on_a_handshake_only_server_says_so_and_the_fix() -> None:
    error = await failure({"command": PY, "protocol": "2026-07-28",
                           "args": ["-c", _HANDSHAKE_ONLY]})
    assert "does not speak the 2026-07-28 protocol era" in error
    assert "protocol: auto" in error and "legacy" in error
    assert "server/discover answered -32602" in error  # what the server itself said


async def test_a_server_that_worked_then_went_idle_is_told_its_whole_time() -> None:
    """It was logged as "given more time" while it worked: the failure says how long it
    had in all and that it went idle, not that it had only one window."""
    from fast_mcp_gateway.upstream.processes import ConnectWatch

    marks = iter(range(1_000))
    extended: list[float] = []

    def output() -> int:  # stderr output: grows once (the first window), then stops
        return min(next(marks), 1)

    watch = ConnectWatch(0.2, lambda: None, output)
    scope = anyio.CancelScope()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.run, scope, extended.append)
            with scope:
                await anyio.sleep_forever()  # until the watch fires
    assert watch.fired and not watch.busy and extended
    text = watch.timeout_text("initialize", 0.4)
    assert text.startswith(f"did not finish connecting within {round(watch.elapsed, 1):g}s: "
                           "no answer to initialize; its process was active at first")
    assert ("so its 0.2s window was extended once; then it was idle for 0.2s without "
            "answering") in text
    assert "within 0.2s" not in text  # not the one window it was not limited to


_NEVER_ANSWERS = "import time; time.sleep(1e9)"


async def test_a_server_that_never_answers_initialize_is_told_what_happened_and_the_fix(
        ) -> None:
    """A stdio server that starts and never answers ``initialize``: the message said "the
    server is working, so it is given more time" and then "it worked at first" -- the
    interpreter's start was the only work, and nothing had ever worked.  Now it says what
    was watched (activity, then idle; no answer) and the two fixes, for the first attempt
    and for the next one (a restart: its window doubled)."""
    gateway = make_gateway({"up": {"command": PY, "args": ["-c", _NEVER_ANSWERS],
                                   "timeouts": {"connect": 0.5}}})
    texts = []
    async with Client(gateway.server):  # serving starts after each first attempt
        upstream = gateway.manager.get("up").replicas[0]
        for attempts in (1, 2):  # the first start, and the restart after its timeout
            assert await upstream.wait_until(lambda n=attempts: upstream.attempts >= n,
                                             within=120)
            assert upstream.last_error is not None
            texts.append(upstream.last_error)
    for text, next_window in zip(texts, ("1", "2"), strict=True):
        assert "did not finish connecting within" in text and "no answer to initialize" in text
        assert "without answering: check that 'command' and 'args' start an MCP server" in text
        assert "raise this server's timeouts.connect (e.g. 'timeouts: {connect: 60}'; the " \
               f"next attempt waits {next_window}s)" in text, text
        assert "work" not in text.replace("its process was active", ""), text


async def test_the_one_shot_check_tells_of_no_next_attempt() -> None:
    """``mcp-gateway check`` probes once: "the next attempt waits 1s" told of an attempt
    that never comes (serving keeps it: test above)."""
    text = await failure({"command": PY, "args": ["-c", _NEVER_ANSWERS],
                          "timeouts": {"connect": 0.5}})
    assert "no answer to initialize" in text, text
    assert text.endswith("raise this server's timeouts.connect (e.g. 'timeouts: "
                         "{connect: 60}')"), text
    assert "next attempt" not in text, text


async def test_sse_set_on_a_streamable_http_url_points_at_transport() -> None:
    """``transport: sse`` on a FastMCP streamable HTTP endpoint: its GET is refused with
    400; the path is right, the transport is not, and the message says so."""
    from fastmcp import FastMCP

    from tests.fixtures import serve_http

    app = FastMCP("streamable").http_app(transport="http", path="/mcp")
    async with serve_http(app, startup=False) as base:
        error = await failure({"url": base + "/mcp", "transport": "sse"})
    assert error.startswith(f"HTTP 400 Bad Request at {base}/mcp"), error
    assert "set 'transport: http' for this server" in error, error
