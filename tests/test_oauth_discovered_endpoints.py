"""The endpoints an authorization server's metadata names (RFC 8414, found through the
server's RFC 9728 metadata: not configured, so not checked at load) must be https://
off loopback, as a configured ``token_url`` (upstream/sign_in_page.py
``discovered_problem``): a sign-in whose authorization server publishes an http://
token, authorization, registration or revocation endpoint on another host is refused in
words naming it, before anything is sent there (no registration, no link).  Loopback
http:// stays allowed (every other oauth test signs in over it).  Real loopback
authorization server and protected MCP server (tests/oauth_servers.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.oauth_servers import TokenFault, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, running, state_is

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("field", ["token_endpoint", "authorization_endpoint",
                                   "registration_endpoint", "revocation_endpoint"])
async def test_a_discovered_http_endpoint_off_loopback_is_refused(
        tmp_path: Path, field: str) -> None:
    fault = TokenFault()
    fault.published = {field: f"http://auth.example.invalid/{field}"}
    async with signing_upstream(fault=fault) as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            with pytest.raises(ToolError) as caught:
                await client.call_tool("gateway_sign_in", {"name": "tickets"})
            error = str(caught.value)
            assert f"names a {field.replace('_', ' ')} ({field}) that is not https: " \
                   f"'http://auth.example.invalid/{field}' must be https://" in error, error
            assert "have the authorization server publish https:// endpoints" in error
            assert not provider.clients  # refused before the registration


async def test_an_http_authorization_server_off_loopback_is_not_even_asked(
        tmp_path: Path) -> None:
    """The first hop: the protected resource's metadata names an http:// authorization
    server on another host; its metadata is not fetched (review30: only endpoints
    already discovered were checked)."""
    fault = TokenFault()
    fault.resource = {"authorization_servers": ["http://auth.example.invalid/"]}
    async with signing_upstream(fault=fault) as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            with pytest.raises(ToolError) as caught:
                await client.call_tool("gateway_sign_in", {"name": "tickets"})
            error = str(caught.value)
            assert "would ask http://auth.example.invalid/.well-known/" in error, error
            assert "that is not https: " in error and "nothing was sent there" in error
            assert not provider.clients
