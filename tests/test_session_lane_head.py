"""The session lane's SSE answer leaves with its head in one write (``session_reply.
HEAD_WITHIN``, ``slow_clients.hold_head``), under the protocol ``serve`` runs.

The SDK writes a session POST's head at once and the answer when it comes: two system
calls, and on loopback two wake-ups of the host, per call.  The lane holds the head
until the first event (most often the answer), ``HEAD_WITHIN`` at most; the bytes are
the same (``test_session_lane.py`` compares them with the full path's).
"""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import FastMCP

from fast_mcp_gateway.http import session_lane
from fast_mcp_gateway.http.slow_clients import HeaderTimeoutHttpToolsProtocol, protocol_with_timeout
from tests.fixtures import WITHIN, make_gateway, memory_entry, serve_http
from tests.test_session_lane import call, headers, open_session, session_lane_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(HeaderTimeoutHttpToolsProtocol is None, reason="httptools not installed"),
]


def held_server(events: dict[str, anyio.Event]) -> FastMCP[Any]:
    mcp = FastMCP("held")

    @mcp.tool
    async def held() -> str:
        """Answer once the test lets it."""
        events["started"].set()
        await events["release"].wait()
        return "released"

    return mcp


async def _read_some(sock: socket.socket) -> bytes:
    await anyio.wait_readable(sock)
    return sock.recv(65536)


async def test_the_head_waits_for_the_answer_and_leaves_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_lane, "HEAD_WITHIN", 600.0, raising=False)  # answer first
    events = {"started": anyio.Event(), "release": anyio.Event()}
    gateway = make_gateway({"held": memory_entry("held")}, {"held": held_server(events)},
                           call_timeout=60)
    app = gateway.http_app("http")
    async with serve_http(app, http=protocol_with_timeout(30.0)) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        session = await open_session(SimpleNamespace(http=http), None)  # type: ignore[arg-type]
        body = json.dumps(call("held_held", {})).encode()
        head = {**headers(None, session), "content-length": str(len(body))}
        request = (b"POST /mcp HTTP/1.1\r\nhost: " + base.removeprefix("http://").encode()
                   + b"\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in head.items())
                   + b"\r\n" + body)
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.setblocking(False)
            sock.sendall(request)
            with anyio.fail_after(WITHIN):
                await events["started"].wait()
            # The lane started its answer before the call went upstream (the SDK's head
            # would be here by now, written as the lane's task next yielded): held.
            with pytest.raises(BlockingIOError):
                sock.recv(1, socket.MSG_PEEK)
            assert session_lane_of(app).served == 1
            events["release"].set()
            with anyio.fail_after(WITHIN):
                first = await _read_some(sock)
                answer = first
                while not answer.endswith(b"0\r\n\r\n"):
                    answer += await _read_some(sock)
    # Head, the answer's event and the end of the body: one write, one read.
    assert first == answer
    status, rest = answer.split(b"\r\n", 1)
    assert status == b"HTTP/1.1 200 OK"
    assert b"\r\ncontent-type: text/event-stream\r\n" in rest
    assert b"\r\ntransfer-encoding: chunked\r\n" in rest
    data = rest.split(b"data: ", 1)[1].split(b"\r\n", 1)[0]
    message = json.loads(data)
    assert message["id"] == 7
    assert message["result"]["content"][0]["text"] == "released"
