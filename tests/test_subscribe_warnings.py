"""The gateway's own resources/subscribe and resources/unsubscribe to a handshake-era
upstream raise no Python warning.

The MCP SDK marks ``ClientSession.subscribe_resource`` / ``unsubscribe_resource``
deprecated (they do not exist at 2026-07-28); the gateway called them for every
handshake-era upstream, so the first subscription through ``mcp-gateway serve`` put
``MCPDeprecationWarning: resources/subscribe is removed as of 2026-07-28; use
Client.listen() instead.`` and a source line on its stderr (Claude Desktop's
``mcp-server-gateway.log``): advice for the gateway's authors, shown to its users.
The upstream is ``tests/servers/watched.py`` (a stdio subprocess that records what it is
asked); the host is a handshake-era FastMCP client over the gateway's HTTP front.
"""

from __future__ import annotations

import os
import signal
import warnings

import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import WITHIN, make_gateway, serve_http
from tests.test_subscription_lifetimes import SUBSCRIBE, UNSUBSCRIBE, WATCHED, WATCHED_ENTRY, seen

pytestmark = pytest.mark.anyio


async def test_subscribing_unsubscribing_and_replaying_warn_nothing() -> None:
    gateway = make_gateway(WATCHED_ENTRY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MCPDeprecationWarning)
        async with (
            serve_http(gateway.http_app("http")) as base,
            Client(f"{base}/mcp") as ops,
            Client(f"{base}/mcp", mode="legacy") as host,
        ):
            await host.session.subscribe_resource(WATCHED)
            # A new session of the server (its process killed, restarted by the
            # supervisor) is subscribed again: the replay path.
            replica = gateway.manager.services["watched"].replicas[0]
            crashed = replica.pid
            assert crashed is not None
            os.kill(crashed, signal.SIGKILL)
            assert await replica.wait_until(
                lambda: replica.state is UpstreamState.READY and replica.pid != crashed,
                WITHIN)
            assert await seen(ops, 1) == [SUBSCRIBE]
            await host.session.unsubscribe_resource(WATCHED)
            assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
    from_gateway = [w for w in caught if issubclass(w.category, MCPDeprecationWarning)
                    and "fast_mcp_gateway" in w.filename]
    assert not from_gateway, [f"{w.filename}:{w.lineno}: {w.message}" for w in from_gateway]
