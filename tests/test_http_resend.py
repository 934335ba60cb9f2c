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

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from mcp_types import CONNECTION_CLOSED

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream import http_pool
from fast_mcp_gateway.upstream.http_idle import REPEATABLE
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import HttpFacts, default_transport
from tests.fixtures import FAST_RESTART, alpha_server, serve_http
from tests.tcp_relay import TcpRelay
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
            # (answered for the SDK as a proxy would: that request's error, the session
            # intact; raised, it left the SDK's task group and ended the session)
            response = await client.post(f"http://127.0.0.1:{server.port}/mcp", json={
                "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {}})
            assert response.status_code == 502
            error = response.json()
            assert error["id"] == 7 and error["error"]["code"] == CONNECTION_CLOSED, error
            said = error["error"]["message"]
            assert said.startswith(f"http://127.0.0.1:{server.port}/mcp closed the connection "
                                   "without an answer: a kept-alive connection"), said
            assert "not sent again" in said
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


class Reuses(TcpRelay):
    """A relay that, once ``arm``-ed, closes the connection of the next request written
    into a connection that already carried one (never forwarded): a server's idle close
    crossing it.  Until then nothing is closed (the test decides, not the clock)."""

    def __init__(self, target: int) -> None:
        super().__init__(target)
        self.used: set[int] = set()
        self.armed = False
        self.done = asyncio.Event()

    def arm(self) -> None:
        self.armed = True

    def cuts(self, peer: int) -> bool:
        if self.armed and peer in self.used:
            self.armed = False
            self.done.set()
            return True
        self.used.add(peer)
        return False


@contextlib.asynccontextmanager
async def aside(monkeypatch: pytest.MonkeyPatch, runs: dict[str, int]
                ) -> AsyncIterator[tuple[Reuses, Gateway, Client[Any]]]:
    """A gateway whose tap steps aside (a URL with credentials: the SDK's client sends
    everything) in front of a relay to an upstream with an ``append`` tool counting its
    runs; idle connections are kept as long as the test runs (no clock decides).  A
    2026-07-28 session: its JSON answers leave their connections pooled (a handshake-era
    answer's SSE stream, left unread past the answer, never pools its connection)."""
    monkeypatch.setattr(http_pool, "kept_alive",
                        lambda seconds=0.0: httpx2.Limits(keepalive_expiry=None))
    mcp = alpha_server()

    @mcp.tool
    def append(key: str) -> str:
        runs["append"] = runs.get("append", 0) + 1
        return f"appended {key}"

    async with serve_http(mcp.http_app(path="/mcp"), keep_alive=3600) as base, \
            Reuses(int(base.rsplit(":", 1)[1])).serving() as relay:
        config = parse_config({"servers": {"alpha": {
            "url": f"http://user:pw@127.0.0.1:{relay.port}/mcp", "protocol": "2026-07-28"}}},
            source="test")
        gw = Gateway(config, GatewaySettings(connect_timeout=10.0, db=None,
                                             startup_wait=600.0, call_timeout=60),
                     restart=FAST_RESTART, transport_factory=default_transport)
        async with Client(gw.server) as client:
            yield relay, gw, client


async def test_through_the_gateway_a_read_is_answered_and_a_call_fails_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``resources/read`` and a ``prompts/get`` met by an idle close failed, and
    the session restarted; now they are answered on another connection.  A ``tools/call``
    is not sent again (its tool ran never), fails in the clear words, and the session
    stays (it was ended: every request in flight with it)."""
    runs: dict[str, int] = {}
    async with aside(monkeypatch, runs) as (relay, gw, client):
        replica = gw.manager.services["alpha"].replicas[0]
        session = replica._sup.session
        assert replica._sup.tap is None  # (stepped aside: the SDK's client sends it)
        for _ in range(2):
            await client.read_resource("data://alpha/config")  # (connections pooled)
        relay.arm()
        got = await client.read_resource("data://alpha/config")
        assert relay.done.is_set()
        assert json.loads(got[0].text)  # type: ignore[union-attr]
        relay.done.clear()
        relay.arm()
        prompt = await client.get_prompt("alpha_greet", {"name": "Ada"})
        assert relay.done.is_set() and "Ada" in str(prompt.messages[0].content)
        assert replica._sup.session is session and replica.state is UpstreamState.READY

        relay.done.clear()
        relay.arm()
        failed = await client.call_tool("alpha_append", {"key": "k"}, raise_on_error=False)
        assert relay.done.is_set()
        assert failed.is_error, failed
        said = failed.content[0].text  # type: ignore[union-attr]
        assert "closed the connection without an answer: a kept-alive connection" in said
        assert "not sent again" in said and "pw" not in said, said
        assert "append" not in runs  # never ran, not sent again
        assert replica._sup.session is session and replica.state is UpstreamState.READY
        await client.call_tool("alpha_append", {"key": "k"})  # (and the next is served)
        assert runs == {"append": 1}
