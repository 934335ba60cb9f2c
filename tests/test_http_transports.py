"""The gateway's own HTTP and SSE upstream transports (upstream/http_transports.py):
sessions as fastmcp's transports open them, without ``fastmcp.client``.

Each is driven against a real FastMCP upstream on 127.0.0.1; the client factory seen
by the SDK is recorded to hold the timeouts to fastmcp's rules.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from fastmcp import Client, FastMCP
from mcp import ClientSession

from fast_mcp_gateway.upstream.http_transports import FastHttpTransport, FastSseTransport
from fast_mcp_gateway.upstream.session import RelaySession
from fast_mcp_gateway.upstream.transports import relay_options
from tests.fixtures import alpha_server, make_gateway, serve_http

pytestmark = pytest.mark.anyio


class Factory:
    """An httpx client factory that records what each session's client was made with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> httpx2.AsyncClient:
        self.calls.append(dict(kwargs))
        kwargs.setdefault("timeout", httpx2.Timeout(30.0, read=300.0))
        return httpx2.AsyncClient(**kwargs)


async def test_an_http_session_lists_and_calls_with_the_configured_headers() -> None:
    factory = Factory()
    async with serve_http(alpha_server().http_app(path="/mcp"), startup=False) as base:
        transport = FastHttpTransport(f"{base}/mcp", headers={"X-Team": "a"},
                                      httpx_client_factory=factory,
                                      session_class=RelaySession)
        assert relay_options(transport) is None  # built with RelaySession already
        async with transport.connect_session(read_timeout_seconds=600.0) as session:
            assert isinstance(session, RelaySession)
            await session.initialize()
            assert "add" in {t.name for t in (await session.list_tools()).tools}
            result = await session.call_tool("add", {"a": 2, "b": 3})
            assert result.structured_content == {"result": 5}
        assert transport.tap is None  # only while a session lives
        (made,) = factory.calls
        assert made["headers"] == {"X-Team": "a"} and made["auth"] is None
        # fastmcp's rule: a session's read timeout only ever raises the 300 s default
        assert made["timeout"].read == 600.0 and made["timeout"].connect == 30.0
        async with transport.connect_session(read_timeout_seconds=5.0):
            pass
        assert factory.calls[1]["timeout"].read == 300.0
        async with transport.connect_session():
            pass
        assert "timeout" not in factory.calls[2]  # the factory's own default


async def test_an_sse_session_is_handshake_era_and_gets_sse_timeouts() -> None:
    factory = Factory()
    app = alpha_server().http_app(path="/sse", transport="sse")
    async with serve_http(app, startup=False) as base:
        transport = FastSseTransport(f"{base}/sse", headers={"X-Team": "b"},
                                     httpx_client_factory=factory)
        assert transport.legacy_only
        async with transport.connect_session() as session:
            assert type(session) is ClientSession  # the default session_class
            await session.initialize()
            result = await session.call_tool("add", {"a": 1, "b": 1})
            assert result.structured_content == {"result": 2}
        (made,) = factory.calls
        assert made["headers"] == {"X-Team": "b"}
        assert made["timeout"].read == 300.0  # the SDK's SSE read timeout


async def test_options_a_gateway_transport_cannot_honour_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'ftp://host/mcp' is no http:// or https:// URL"):
        FastHttpTransport("ftp://host/mcp")
    transport = FastHttpTransport("http://127.0.0.1:9/mcp")
    options = SimpleNamespace(session_class=None, forward_incoming_headers=True)
    with pytest.raises(ValueError, match="does not forward a host's headers; fastmcp's"):
        async with transport.connect_session(transport_options=options):
            pass


@pytest.mark.parametrize("protocol", ["legacy", "2026-07-28"])
async def test_a_result_over_one_mib_comes_back_from_an_http_upstream(protocol: str) -> None:
    """A handshake-era streamable-HTTP session read each SSE event with the SDK's 1 MiB
    bound, so a larger result (server-filesystem's read_media_file of a 1.5 MB image,
    behind an HTTP server) ended the session: 'connection closed during tools/call';
    the same result came through a stdio upstream, or the 2026-07-28 side door, whole
    (both bounded by max_message_bytes, 32 MiB by default)."""
    upstream = FastMCP("big")

    @upstream.tool
    def big(size: int) -> str:
        return "x" * size

    async with serve_http(upstream.http_app(path="/mcp"), startup=False) as base:
        gateway = make_gateway({"big": {"url": f"{base}/mcp", "protocol": protocol}})
        async with Client(gateway.server) as client:
            result = await client.call_tool_mcp("big_big", {"size": 1_500_000})
            assert not result.isError, result.content[0].text  # type: ignore[union-attr]
            assert result.structuredContent == {"result": "x" * 1_500_000}


def test_the_sdk_paths_clients_drop_an_idle_connection_before_servers_close_theirs() -> None:
    """httpx keeps an idle connection 5 s, as long as uvicorn, hypercorn and Node keep
    theirs: a request written as the server closed its end failed "closed the
    connection without an answer" (seen under load: a task's polls, the session then
    restarted).  Both clients the SDK's path uses drop one after the tap's own bound."""
    from fast_mcp_gateway.upstream.http_pool import IDLE_SECONDS
    from fast_mcp_gateway.upstream.transports import HttpFacts

    clients = [HttpFacts().client(),
               FastHttpTransport("http://127.0.0.1:9/mcp")._client()]
    for client in clients:
        pool = client._transport._pool   # httpcore's pool: the expiry it applies
        assert pool._keepalive_expiry == IDLE_SECONDS < 5.0, client
