"""How long the gateway's resource subscriptions upstream last: as long as a host holds
them, however the host leaves.

A real upstream (``tests/servers/watched.py``, a stdio subprocess) records the
subscribe and unsubscribe requests it gets; hosts reach the gateway over real HTTP on
127.0.0.1.  Each test failed on the code it was written against.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway.gateway import Gateway
from tests.fixtures import WITHIN, make_gateway, serve_http, stdio_entry, until

pytestmark = pytest.mark.anyio
WATCHED = "watch://watched/counter"   # as hosts name it; the upstream's own is:
SUBSCRIBE, UNSUBSCRIBE = "subscribe watch://counter", "unsubscribe watch://counter"


def watched_gateway(**settings: Any) -> Gateway:
    return make_gateway({"watched": stdio_entry("watched.py", protocol="legacy")}, **settings)


async def seen(host: Client[Any], count: int = 0) -> list[str]:
    """The upstream's subscribe and unsubscribe requests, once there are ``count``."""
    with anyio.fail_after(WITHIN):
        result = await host.call_tool("watched_seen", {"count": count})
    return list(result.data)


async def test_the_last_host_leaving_without_unsubscribing_lets_go_upstream() -> None:
    """A handshake-era host that ended its session (DELETE) while subscribed left the
    gateway subscribed upstream for good: the hub held its connection weakly and nothing
    let go when it went.  Now the last one leaving unsubscribes upstream; one leaving
    while another still holds the URI does not."""
    gateway = watched_gateway()
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops:
        async with Client(f"{base}/mcp", mode="legacy") as staying:
            async with Client(f"{base}/mcp", mode="legacy") as leaving:
                await leaving.session.subscribe_resource(WATCHED)
                await staying.session.subscribe_resource(WATCHED)
            # ``leaving`` ended its session (the client's DELETE): one host holds it now.
            await until(lambda: len(gateway.hub._subscribers.get(WATCHED, {})) == 1)
            assert await seen(ops) == [SUBSCRIBE, SUBSCRIBE]
        assert await seen(ops, 3) == [SUBSCRIBE, SUBSCRIBE, UNSUBSCRIBE]
        assert WATCHED not in gateway.hub._subscribers


async def test_a_session_that_expires_after_its_connection_dropped_lets_go_upstream() -> None:
    """The same for a host whose connection dropped, never to come back: its session
    expires (``session_idle_timeout``), and with it the upstream's subscription."""
    gateway = watched_gateway(session_idle_timeout=1.0)
    headers = {"Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops:
        assert ops.protocol_version == "2026-07-28"   # sessionless: it never expires
        async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=WITHIN) as host:
            opened = await host.post("/mcp", json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "dropped", "version": "1"}}})
            assert opened.status_code == 200, opened.text
            host.headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await host.post("/mcp", json=initialized)).status_code == 202
            subscribed = await host.post("/mcp", json={
                "jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
                "params": {"uri": WATCHED}})
            assert subscribed.status_code == 200, subscribed.text
            answer = json.loads(subscribed.text.split("data: ", 1)[1].splitlines()[0])
            assert answer.get("result") == {}, answer
        # The host's connection is gone, and it sends nothing more.
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
