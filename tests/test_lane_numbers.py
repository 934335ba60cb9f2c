"""A number beyond a float's range in a call's arguments (``1e400``): Python's parser
and the SDK's read it as infinity, and the full path's SDK session sends it on as null;
both HTTP express lanes passed infinity on to the upstream (``Infinity``, which no JSON
parser must read).  Now neither takes such a body (``json_text.finite_float``): the full
path's answer on both.  Over real HTTP on 127.0.0.1, to a real stdio upstream
(``tests/servers/raw_stdio.py``, whose ``echo`` says what it got), lanes on and off.
The stdio express lane (``front/lane.py``) passed NaN and Infinity on as well (the HTTP
2026-07-28 lane stopped taking NaN in 12506c1): ``mcp-gateway serve`` on stdio, its
lane on and off (``tests.test_lane``'s raw host)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from fast_mcp_gateway.config.json_text import finite_float
from fast_mcp_gateway.http.session_lane import SessionLane
from tests.fixtures import make_gateway, serve_http, stdio_entry
from tests.test_http_lane import body_of, headers_of
from tests.test_lane import both_paths, raw_host, write_config
from tests.test_session_lane import ANN, TOKENS, call, headers, session_lane_of

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def _gateway(lane: bool) -> AsyncIterator[tuple[httpx2.AsyncClient, SessionLane]]:
    gateway = make_gateway({"raw": stdio_entry("raw_stdio.py")}, None,
                           options={"auth": {"tokens": TOKENS}}, http_express_lane=lane,
                           call_timeout=60)
    app = gateway.http_app("http")
    async with serve_http(app) as base, httpx2.AsyncClient(base_url=base, timeout=60) as http:
        yield http, session_lane_of(app)


def _with(body: dict[str, object], number: bytes) -> bytes:
    return json.dumps(body).encode().replace(b'"NUMBER"', number)


async def _echoed(http: httpx2.AsyncClient, number: bytes) -> list[str]:
    """What ``raw_echo`` got as its ``text``: on a handshake-era session, then sessionless
    at 2026-07-28."""
    opened = await http.post("/mcp", headers=headers(ANN), json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}})
    session = opened.headers["mcp-session-id"]
    await http.post("/mcp", headers=headers(ANN, session),
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    said = []
    got = await http.post("/mcp", headers=headers(ANN, session),
                          content=_with(call("raw_echo", {"text": "NUMBER"}, 3), number))
    said.append(json.loads(got.text.split("data: ", 1)[1])["result"]["content"][0]["text"])
    got = await http.post("/mcp", headers=headers_of("raw_echo", ANN),
                          content=_with(body_of("raw_echo", {"text": "NUMBER"}, None, 4), number))
    said.append(got.json()["result"]["content"][0]["text"])
    return said


@pytest.mark.parametrize("lane", [True, False])
async def test_a_number_beyond_a_floats_range_reaches_the_upstream_as_null(lane: bool) -> None:
    async with _gateway(lane) as (http, sessions):
        assert await _echoed(http, b"1e400") == ["None", "None"]
        assert await _echoed(http, b"-1E999") == ["None", "None"]
        assert sessions.served == 0
        # A float in range, and a long integer (both parsers read it whole): the lanes'.
        assert await _echoed(http, b"1e300") == ["1e+300", "1e+300"]
        assert await _echoed(http, b"123456789012345678901234567890") == [
            "123456789012345678901234567890"] * 2
        assert sessions.served == (2 if lane else 0)


def test_finite_float_refuses_infinity_only() -> None:
    assert finite_float("1.5e3") == 1500.0 and finite_float("-0.0") == 0.0
    assert finite_float("1e-400") == 0.0  # underflow: zero, as both parsers read it
    for text in ("1e400", "-1E999"):
        with pytest.raises(ValueError, match="beyond a 64-bit float's range"):
            finite_float(text)


async def test_the_stdio_lane_leaves_nan_and_infinity_to_the_full_path(tmp_path: Path) -> None:
    """``up_echo(text: str)`` given NaN, ``1e400``, ``-Infinity``: the upstream's
    validation error names what it got (None on the full path; nan, inf on the lane)."""
    config = write_config(tmp_path)
    numbers = [b"NaN", b"1e400", b"-Infinity", b"2.5"]

    async def each(lane: bool, env: dict[str, str]) -> list[Any]:
        answers = []
        async with raw_host(config, "legacy", lane=lane, env=env) as host:
            assert host.process.stdin is not None
            for n, number in enumerate(numbers, start=100):
                send, receive = anyio.create_memory_object_stream[dict[str, Any]](1)
                host._waiting[n] = send
                await host.process.stdin.send(
                    b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":'
                    b'"up_echo","arguments":{"text":%b}}}\n' % (n, number))
                with anyio.fail_after(30), receive:
                    answers.append((await receive.receive())["result"]["content"][0]["text"])
        return answers

    got = await both_paths(tmp_path, each)
    assert got[True] == got[False], got
    assert ["input_value=None" in text for text in got[True]] == [True, True, True, False]
