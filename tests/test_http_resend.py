"""The SDK's HTTP client resends a request a server's idle close met unread.

Where the gateway's tap steps aside (``auth:``, a proxy) and for every request the SDK's
session sends itself (probes, ``resources/read``, ``prompts/get``), httpx failed a
request written into a pooled connection the server closed as it arrived ("Server
disconnected without sending a response"), and a POST's failure ended the session.  Now
one safe to repeat (any but a ``tools/call`` not known to be idempotent: the tap's
rule) is sent once more on a new connection.  A raw server closes a reused
connection as the request arrives (read, never answered): deterministic, no waiting.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from fast_mcp_gateway.upstream.http_idle import REPEATABLE
from fast_mcp_gateway.upstream.model import describe_error
from fast_mcp_gateway.upstream.transports import HttpFacts
from tests.test_http_idle import _KeepAliveServer

pytestmark = pytest.mark.anyio


async def _post(client: httpx2.AsyncClient, port: int, method: str) -> Any:
    response = await client.post(f"http://127.0.0.1:{port}/mcp", json={
        "jsonrpc": "2.0", "id": 1, "method": method, "params": {}})
    return response.json()["result"]


@pytest.mark.parametrize("method", ["resources/read", "prompts/get", "server/discover"])
async def test_a_safe_request_on_a_connection_closed_unread_is_sent_again(method: str) -> None:
    server = _KeepAliveServer(b"")
    try:
        async with HttpFacts().client() as client:
            assert await _post(client, server.port, method) == {"n": 1}
            server.expired.set()  # the reused connection is closed as the request arrives
            assert await _post(client, server.port, method) == {"n": 2}
            assert server.accepted == 2  # (on a new connection)
    finally:
        server.close()


async def test_a_tools_call_is_not_sent_again_unless_its_tool_is_repeatable() -> None:
    server = _KeepAliveServer(b"")
    try:
        async with HttpFacts().client() as client:
            assert await _post(client, server.port, "tools/call") == {"n": 1}
            server.expired.set()
            with pytest.raises(httpx2.TransportError) as failed:
                await _post(client, server.port, "tools/call")
            assert "closed the connection without an answer" in describe_error(failed.value)
            assert server.answered == 1 and server.accepted == 1  # never reached it twice

            repeatable = REPEATABLE.set(True)  # (a read-only or idempotent tool's call)
            try:
                assert await _post(client, server.port, "tools/call") == {"n": 2}
                assert await _post(client, server.port, "tools/call") == {"n": 3}
            finally:
                REPEATABLE.reset(repeatable)
            assert server.accepted == 3  # (the first on a new connection anyway)
    finally:
        server.close()
