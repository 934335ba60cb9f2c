"""``MCP_GATEWAY_HTTP_MAX_BODY_BYTES`` sets the MCP endpoint's body limit, raised or
lowered, on the HTTP express lane and the full path alike, declared or chunked: the
SDK's own check enforces it (FastMCP's ``http_app`` passes none, so it was a fixed
4 MiB), and its 413 names the limit and the setting.  SSE keeps the SDK's 4 MiB, and a
setting saying otherwise is refused before serving.

Real HTTP on 127.0.0.1; the body is padded with JSON whitespace, so only its size
differs from a small call's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from pydantic import ValidationError

from fast_mcp_gateway.config.settings import SDK_MAX_BODY, GatewaySettings, settings_problem
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.http.lane import HttpLane
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_http_lane import TOKENS, body_of, headers_of

pytestmark = pytest.mark.anyio
KIB, MIB = 1 << 10, 1 << 20


@contextlib.asynccontextmanager
async def serving(limit: int, lane: bool) -> AsyncIterator[tuple[httpx2.AsyncClient, HttpLane]]:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options={"auth": {"tokens": TOKENS}}, http_express_lane=lane,
                           http_max_body_bytes=limit)
    app = gateway.http_app("http")
    entry = getattr(app.mcp_entry, "app", None)
    assert isinstance(entry, HttpLane) and entry.enabled is lane
    async with serve_http(app) as base, \
            httpx2.AsyncClient(base_url=base, timeout=120) as http:
        yield http, entry


def padded(size: int) -> bytes:
    """A 2026-07-28 ``alpha_add`` call of ``size`` bytes (whitespace after the object)."""
    call = json.dumps(body_of("alpha_add", {"a": 1, "b": 2})).encode()
    return call + b" " * (size - len(call))


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(body), MIB):
        yield body[at:at + MIB]


async def added(http: httpx2.AsyncClient, body: Any) -> httpx2.Response:
    return await http.post("/mcp", content=body, headers=headers_of("alpha_add"))


def refused(answer: httpx2.Response, size: str, limit: int) -> None:
    assert answer.status_code == 413, (answer.status_code, answer.text[:300])
    assert answer.text.startswith(
        f"the request body is over {size} ({limit} bytes), the most the MCP endpoint reads "
        "for one JSON-RPC message (MCP_GATEWAY_HTTP_MAX_BODY_BYTES, which the gateway's "
        "operator may raise up to 64 MiB)"), answer.text


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full"])
async def test_a_lowered_limit_refuses_what_the_default_took(lane: bool) -> None:
    async with serving(64 * KIB, lane) as (http, entry):
        small = await added(http, padded(60 * KIB))
        assert small.status_code == 200 and small.json()["result"]["structuredContent"] == {
            "result": 3}, small.text
        for body in (padded(100 * KIB), chunked(padded(2 * MIB))):
            refused(await added(http, body), "64 KiB", 64 * KIB)
        assert entry.served == (1 if lane else 0)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full"])
async def test_a_raised_limit_takes_what_the_default_refused(lane: bool) -> None:
    async with serving(8 * MIB, lane) as (http, entry):
        for body in (padded(6 * MIB), chunked(padded(6 * MIB))):
            answer = await added(http, body)
            assert answer.status_code == 200, answer.text[:300]
            assert answer.json()["result"]["structuredContent"] == {"result": 3}
        for body in (padded(9 * MIB), chunked(padded(9 * MIB))):
            refused(await added(http, body), "8 MiB", 8 * MIB)
        assert entry.served == (2 if lane else 0)


def test_the_default_is_the_sdks_and_sse_keeps_it() -> None:
    assert SDK_MAX_BODY == DEFAULT_MAX_REQUEST_BODY_SIZE
    assert GatewaySettings().http_max_body_bytes == SDK_MAX_BODY
    with pytest.raises(ValidationError) as bounds:
        GatewaySettings(http_max_body_bytes=100 * MIB)
    assert settings_problem(bounds.value).startswith(
        "MCP_GATEWAY_HTTP_MAX_BODY_BYTES: must be a whole number at least 4096 and at most "
        "67108864")
    with pytest.raises(ValidationError) as sse:
        GatewaySettings(transport="sse", http_max_body_bytes=8 * MIB)
    assert settings_problem(sse.value).startswith(
        "MCP_GATEWAY_HTTP_MAX_BODY_BYTES: the SSE transport reads at most 4 MiB per message, "
        "a limit of the MCP SDK that FastMCP gives no way to change; leave "
        "MCP_GATEWAY_HTTP_MAX_BODY_BYTES unset with --transport sse, or serve streamable "
        "HTTP (--transport http), which honours it")
    gateway = make_gateway({}, http_max_body_bytes=8 * MIB)  # a library's http_app("sse")
    with pytest.raises(ConfigError, match="the SSE transport reads at most 4 MiB"):
        gateway.http_app("sse")
