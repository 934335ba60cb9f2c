"""HTTP on 127.0.0.1: streamable-HTTP and SSE upstreams, and the gateway's own HTTP mode."""

from __future__ import annotations

import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway, GatewaySettings, parse_config
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry, serve_http

pytestmark = pytest.mark.anyio


async def test_streamable_http_and_sse_upstreams() -> None:
    alpha_app = alpha_server().http_app(path="/mcp")
    beta_app = beta_server().http_app(path="/sse", transport="sse")
    async with serve_http(alpha_app) as alpha_url, serve_http(beta_app) as beta_url:
        gateway = make_gateway({
            "alpha": {"url": f"{alpha_url}/mcp", "protocol": "2026-07-28"},
            "beta": {"url": f"{beta_url}/sse"},
        })
        async with Client(gateway.server) as client:
            assert (await client.call_tool("alpha_add", {"a": 2, "b": 3})).data == 5
            assert (await client.call_tool("beta_add", {"a": 2, "b": 3})).data == 1005
            (item,) = await client.read_resource("data://alpha/items/9")
            assert item.text == "item-9"
        alpha = gateway.manager.get("alpha").replicas[0]
        beta = gateway.manager.get("beta").replicas[0]
        assert alpha.config.kind == "http" and alpha.protocol_version == "2026-07-28"
        assert beta.config.kind == "sse" and beta.protocol_version == "2025-11-25"


async def test_the_gateway_serves_streamable_http_with_rebinding_protection() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    app = gateway.http_app("http")
    async with serve_http(app) as base:
        async with Client(f"{base}/mcp") as modern:
            assert (await modern.call_tool("alpha_add", {"a": 1, "b": 1})).data == 2
        # The guard remembers what it let through (http/app.py RememberedGuard) ...
        assert len(app.mcp_entry.passed) == 1
        async with Client(f"{base}/mcp", mode="legacy") as legacy:
            assert legacy.protocol_version == "2025-11-25"
            assert (await legacy.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        async with httpx2.AsyncClient() as http:
            evil = await http.post(f"{base}/mcp", json=body,
                                   headers={"Host": "evil.example.com",
                                            "Accept": "application/json, text/event-stream"})
            assert evil.status_code == 421
            # Named, with the fix (FastMCP's own said only "Misdirected Request").
            assert "Host 'evil.example.com'" in evil.json()["error"]["message"]
            assert "--allowed-host evil.example.com" in evil.json()["error"]["message"]
            origin = await http.post(f"{base}/mcp", json=body,
                                     headers={"Origin": "http://evil.example.com",
                                              "Accept": "application/json, text/event-stream"})
            assert origin.status_code == 403
            assert "MCP_GATEWAY_ALLOWED_ORIGINS=http://evil.example.com" in origin.text
            # ... never a refusal: the same ones are refused again, and nothing was added.
            again = await http.post(f"{base}/mcp", json=body,
                                    headers={"Origin": "http://evil.example.com",
                                             "Accept": "application/json, text/event-stream"})
            assert again.status_code == 403 and len(app.mcp_entry.passed) == 1


async def test_the_gateway_serves_sse() -> None:
    config = parse_config({"servers": {"alpha": memory_entry("alpha")}})
    from tests.fixtures import memory_transports

    gateway = Gateway(config, GatewaySettings(),
                      transport_factory=memory_transports({"alpha": alpha_server()}))
    async with serve_http(gateway.http_app("sse")) as base, Client(f"{base}/sse") as client:
        assert (await client.call_tool("alpha_add", {"a": 4, "b": 4})).data == 8


async def test_every_refusal_of_fastmcps_routes_is_explained() -> None:
    """SSE's stream and posts, and streamable HTTP's paths other than the exact endpoint
    (the lane's entry), were refused by FastMCP's guard in bare text."""
    config = parse_config({"servers": {"alpha": memory_entry("alpha")}})
    from tests.fixtures import memory_transports

    evil_host = {"Host": "evil.example.com"}
    evil_origin = {"Origin": "http://evil.example.com"}
    for transport, paths in (("sse", ("/sse", "/messages/?session_id=x")),
                             ("http", ("/mcp/", "/.well-known/oauth-protected-resource/mcp"))):
        gateway = Gateway(config, GatewaySettings(),
                          transport_factory=memory_transports({"alpha": alpha_server()}))
        async with serve_http(gateway.http_app(transport)) as base, \
                httpx2.AsyncClient(base_url=base) as http:
            for path in paths:
                method = http.get if path == "/sse" else http.post
                host = await method(path, headers=evil_host)
                assert host.status_code == 421, (transport, path, host.text)
                assert "--allowed-host evil.example.com" in host.json()["error"]["message"]
                origin = await method(path, headers=evil_origin)
                assert origin.status_code == 403, (transport, path, origin.text)
                assert origin.json()["error"]["code"] == "forbidden_origin"
            if transport == "sse":  # and what it lets through still works
                async with Client(f"{base}/sse") as client:
                    assert (await client.call_tool("alpha_add", {"a": 1, "b": 4})).data == 5
