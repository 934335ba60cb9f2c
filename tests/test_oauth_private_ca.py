"""A server with ``auth: {type: oauth}`` behind a private CA (its ``tls: {ca_file}``):
the sign-in's probe of its URL, the discovery, registration and token exchange at its
authorization server on the same host, and the refresh after, all trust that CA
(``token_grants.origin_client``) as the MCP session does, and so does the revocation
at the sign-out -- before, they used the
default trust and the sign-in failed ("cannot reach").  Real loopback authorization
server and protected MCP server served over https with a certificate of a CA made here
(tests/test_upstream_tls.py's ``Authority``).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_cli_login import cli
from tests.test_oauth_sign_in import free_port, replica, running, state_is
from tests.test_upstream_tls import Authority

pytestmark = pytest.mark.anyio


async def test_a_sign_in_and_its_refresh_trust_the_servers_private_ca(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # only tls: trusts the CA
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ca = Authority(tmp_path / "ca", "Private CA")
    async with signing_upstream(tls=ca.issue("upstream", server=True)) as (provider, url):
        config = parse_config({"servers": {"tickets": {
            "url": url, "auth": {"type": "oauth"}, "tls": {"ca_file": str(ca.ca)}}}},
            source="test")
        gw = Gateway(config, GatewaySettings(
            connect_timeout=10.0, db=str(tmp_path / "gateway.db"), startup_wait=600.0,
            call_timeout=60, oauth_callback_port=free_port()),
            restart=FAST_RESTART, transport_factory=default_transport)
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            answer = await client.call_tool("gateway_sign_in", {"name": "tickets"})
            link = str(answer.structured_content["url"])  # type: ignore[index]
            assert link.startswith(url.removesuffix("/mcp") + "/authorize?")
            page = await person_signs_in(link, ssl.create_default_context(cafile=ca.ca))
            assert page.status_code == 200, page.text
            await state_is(gw, UpstreamState.READY)
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 3})).data == 5
            first = set(provider.access_tokens)
            provider.access_tokens.clear()  # 'expired': the next call refreshes
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 2})).data == 4
            assert set(provider.access_tokens) - first  # refreshed through the CA
            assert replica(gw).state is UpstreamState.READY
            await client.call_tool("gateway_sign_out", {"name": "tickets"})
            # The revocation reached the server through the CA (the SDK's refuses to
            # revoke for a public client: 400), not "cannot revoke (ConnectError)".
            assert "/revoke was refused (HTTP 400" in caplog.text, caplog.text
            assert "cannot revoke" not in caplog.text


async def test_logout_from_a_terminal_revokes_through_the_servers_private_ca(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``mcp-gateway logout`` runs no server: it reads the server's ``tls:`` from the
    file (review30: it revoked under the default trust, "cannot revoke")."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
    ca, db = Authority(tmp_path / "ca", "Private CA"), tmp_path / "gateway.db"
    async with signing_upstream(tls=ca.issue("upstream", server=True)) as (_provider, url):
        entry = {"url": url, "auth": {"type": "oauth"}, "tls": {"ca_file": str(ca.ca)}}
        file = tmp_path / "servers.yaml"
        await anyio.Path(file).write_text(
            f"servers:\n  tickets: {{url: '{url}', auth: {{type: oauth}}, "
            f"tls: {{ca_file: '{ca.ca}'}}}}\n")
        gw = Gateway(parse_config({"servers": {"tickets": entry}}, source="test"),
                     GatewaySettings(connect_timeout=10.0, db=str(db), startup_wait=600.0,
                                     call_timeout=60, oauth_callback_port=free_port()),
                     restart=FAST_RESTART, transport_factory=default_transport)
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            answer = await client.call_tool("gateway_sign_in", {"name": "tickets"})
            link = str(answer.structured_content["url"])  # type: ignore[index]
            await person_signs_in(link, ssl.create_default_context(cafile=ca.ca))
            await state_is(gw, UpstreamState.READY)
        out = await anyio.run_process(cli("logout", "tickets", "--config", str(file),
                                          "--db", str(db)), env=env)
        said = out.stderr.decode()
        assert "'tickets' is signed out" in said, said
        # Reached through the CA (the SDK's server refuses to revoke for a public
        # client: 400), not "cannot revoke (ConnectError)".
        assert "/revoke was refused (HTTP 400" in said, said
        assert "cannot revoke" not in said
