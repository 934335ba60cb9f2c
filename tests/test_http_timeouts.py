"""HTTP mode frees what idle clients hold: a connection that never finishes its request
head is closed after ``header_timeout``, an MCP session left idle expires after
``session_idle_timeout`` (a real ``mcp-gateway serve`` process on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from fast_mcp_gateway.config.settings import GatewaySettings
from tests.test_rest_cli import REPO, _free_port, _wait_for_api

HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.0
WITHIN = 60.0  # generous bound for anything on a loaded machine


def test_the_defaults_are_sane() -> None:
    settings = GatewaySettings()
    assert settings.session_idle_timeout == 1800
    assert settings.header_timeout == 30


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[int]:
    with _served(tmp_path, HEADER_TIMEOUT) as port:
        yield port


@contextmanager
def _served(tmp_path: Path, header_timeout: float) -> Iterator[int]:
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  clock:\n    command: ${GATEWAY_PYTHON}\n"
                      '    args: ["-m", "fast_mcp_gateway.demo.clock"]\n')
    port = _free_port()
    env = {**os.environ, "MCP_GATEWAY_HEADER_TIMEOUT": str(header_timeout),
           "MCP_GATEWAY_SESSION_IDLE_TIMEOUT": str(IDLE_TIMEOUT)}
    with (tmp_path / "gateway.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
             "--transport", "http", "--port", str(port), "--no-db"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        try:
            _wait_for_api(f"http://127.0.0.1:{port}/api/v1/openapi.json", proc)
            yield port
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=WITHIN)


def _closed_by_server(sock: socket.socket) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset), read without sleeping."""
    started = time.monotonic()
    sock.settimeout(WITHIN)
    try:
        while sock.recv(4096):
            pass  # a 400 or similar before the close is fine; the close is what counts
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {WITHIN}s") from None
    return time.monotonic() - started


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sent", [b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slo",
                                  b"POST /api/v1/ser", b""],
                         ids=["partial-headers", "partial-request-line", "nothing"])
def test_a_slow_header_connection_is_closed(gateway: int, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", gateway), timeout=WITHIN) as sock:
        if sent:
            sock.sendall(sent)
        waited = _closed_by_server(sock)
    assert waited >= HEADER_TIMEOUT * 0.9  # closed by the timer, not refused at once
    # The gateway is fine: a normal request on a new connection is answered.
    assert httpx2.get(f"http://127.0.0.1:{gateway}/api/v1/servers",
                      timeout=WITHIN).status_code == 200


KEPT_ALIVE = 7.0  # longer than uvicorn's own keep-alive (5 s) and httpx's pool expiry (5 s)


@pytest.mark.timeout(180)
def test_a_kept_alive_connection_stays_open_for_the_header_timeout(tmp_path: Path) -> None:
    """The idle limit between requests is ``header_timeout``, as documented, not
    uvicorn's 5 s: with both at 5 s a host's pool (httpx keeps connections 5 s) sent
    its next request into a connection the gateway was closing, and the call failed
    with a read error.  The server closes an idle connection no earlier than that."""
    with _served(tmp_path, KEPT_ALIVE) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=WITHIN) as sock:
        sock.sendall(b"GET /api/v1/servers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += sock.recv(65536)
        waited = _closed_by_server(sock)
    assert waited >= KEPT_ALIVE * 0.9, f"an idle kept-alive connection closed after {waited:.1f}s"


def _post(port: int, body: dict[str, object], session: str | None = None) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json", "MCP-Protocol-Version": "2025-11-25"}
    if session is not None:
        headers["Mcp-Session-Id"] = session
    return httpx2.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers,
                       timeout=WITHIN)


@pytest.mark.timeout(180)
def test_an_idle_session_expires(gateway: int) -> None:
    opened = _post(gateway, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "idle", "version": "1"}}})
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert _post(gateway, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                 session).status_code == 202
    # Every request restarts the idle countdown, so look only after a quiet period
    # longer than the timeout; a loaded machine may fire the timer late: look again,
    # waiting longer each time (bounded).
    quiet = IDLE_TIMEOUT * 1.5
    deadline = time.monotonic() + WITHIN
    while True:
        time.sleep(quiet)  # the quiet period *is* the condition being tested
        reply = _post(gateway, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, session)
        if reply.status_code == 404:
            break
        assert reply.status_code == 200, reply.text
        assert time.monotonic() < deadline, "the idle session never expired"
        quiet *= 1.5
    # The host is told why, with the setting and its value, and what to do.
    said = reply.json()["error"]["message"]
    assert said.startswith("Session not found: ") and "it expired after 1 s without a " \
        "request (session_idle_timeout, MCP_GATEWAY_SESSION_IDLE_TIMEOUT)" in said \
        and said.endswith("send 'initialize' again (without Mcp-Session-Id) to open a new "
                          "session"), said
    # A new session is unaffected.
    again = _post(gateway, {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "idle", "version": "1"}}})
    assert again.status_code == 200
