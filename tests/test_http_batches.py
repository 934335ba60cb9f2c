"""A JSON-RPC batch POSTed to the MCP endpoint (streamable HTTP, SSE's /messages/) is told
that batches are not supported and what to send instead, as the stdio front tells it;
it was answered with the SDK's pydantic dump ("Validation error: 4 validation errors for
union[JSONRPCRequest, ...]", links to pydantic's site) or "Could not parse message"."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import mcp_types as types
import pytest

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.http.batches import BATCH
from tests.fixtures import alpha_server, memory_entry, memory_transports, serve_http

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "batcher", "version": "1"}}}


def _gateway() -> Gateway:
    config = parse_config({"servers": {"alpha": memory_entry("alpha")}})
    return Gateway(config, GatewaySettings(),
                   transport_factory=memory_transports({"alpha": alpha_server()}))


def _refused(answer: httpx2.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"jsonrpc": "2.0", "id": None, "error": {
        "code": types.INVALID_REQUEST, "message": f"Invalid request: {BATCH}"}}


async def test_streamable_http_refuses_a_batch_in_words() -> None:
    async with serve_http(_gateway().http_app("http")) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        batch = json.dumps([PING, {**PING, "id": 2}])
        _refused(await http.post("/mcp", content=batch, headers=ACCEPT))
        _refused(await http.post("/mcp", content=" \r\n[]", headers=ACCEPT))
        # In a handshake session, and on the 2026-07-28 entry, alike.
        opened = await http.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        session = {**ACCEPT, "mcp-session-id": opened.headers["mcp-session-id"],
                   "mcp-protocol-version": "2025-11-25"}
        _refused(await http.post("/mcp", content=batch, headers=session))
        modern = {**ACCEPT, "mcp-protocol-version": "2026-07-28", "mcp-method": "ping"}
        _refused(await http.post("/mcp", content=batch, headers=modern))
        # Not a batch: the SDK's own answer, untouched.
        other = await http.post("/mcp", content='{"jsonrpc": "2.0"', headers=ACCEPT)
        assert other.status_code == 400
        assert other.json()["error"]["code"] == types.PARSE_ERROR
        # The session still works after the refusals.
        pong = await http.post("/mcp", json={**PING, "id": 9}, headers=session)
        assert pong.status_code == 200 and '"id":9' in pong.text


async def test_sse_refuses_a_batch_in_words() -> None:
    async with serve_http(_gateway().http_app("sse")) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http, \
            http.stream("GET", "/sse") as stream:
        endpoint = await _endpoint(stream)
        answer = await http.post(endpoint, content=json.dumps([PING]),
                                 headers={"Content-Type": "application/json"})
        assert answer.status_code == 400
        assert answer.text == BATCH
        one = await http.post(endpoint, json=INITIALIZE)
        assert one.status_code == 202, one.text


async def _endpoint(stream: Any) -> str:
    """The message path the SSE stream's first event names."""
    async for line in stream.aiter_lines():
        if line.startswith("data: /messages/"):
            return str(line.removeprefix("data: ").strip())
    raise AssertionError("the SSE stream named no endpoint")
