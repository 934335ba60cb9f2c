"""A changed ``auth.client_secret`` (the config edited, then reloaded): the same client
with a new secret.  A person's sign-in is not lost for it -- it is refreshed with the
new secret (upstream/oauth_grant.py) -- and a machine account (client credentials)
uses the new secret at its next token.  Real loopback authorization servers and
protected MCP servers (tests/oauth_servers.py), a real SQLite file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART
from tests.oauth_servers import (
    CLIENT_ID,
    Issuer,
    issuer_and_upstream,
    person_signs_in,
    signing_upstream,
)
from tests.test_oauth_sign_in import free_port, replica, sign_in, state_is

pytestmark = pytest.mark.anyio

OLD, NEW = "first-secret-of-the-client-0123", "second-secret-of-the-client-4567"


def from_file(config: Path, db: Path | None, port: int) -> Gateway:
    settings = GatewaySettings(connect_timeout=10.0, db=str(db) if db else None,
                               startup_wait=600.0, call_timeout=60, config=config,
                               oauth_callback_port=port)
    return Gateway(load_config(config), settings, restart=FAST_RESTART,
                   transport_factory=default_transport)


async def test_a_new_client_secret_keeps_the_sign_in_and_refreshes_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp.shared.auth import OAuthClientInformationFull

    port = free_port()
    monkeypatch.setenv("TICKETS_SECRET", OLD)
    async with signing_upstream() as (provider, url):
        base = url.removesuffix("/mcp")
        await provider.register_client(OAuthClientInformationFull(
            client_id="gw-client", client_secret=OLD, scope="read",
            redirect_uris=[f"http://127.0.0.1:{port}/oauth/callback"],  # type: ignore[list-item]
            token_endpoint_auth_method="client_secret_post"))
        config = tmp_path / "servers.yaml"
        config.write_text(
            f"servers:\n  tickets:\n    url: '{url}'\n    auth: {{type: oauth, client_id: "
            f"gw-client, client_secret: '${{TICKETS_SECRET}}', issuer: '{base}/'}}\n")
        gw = from_file(config, tmp_path / "gateway.db", port)
        async with Client(gw.server) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            # The client's secret is rotated at the authorization server and in the config.
            registered = provider.clients["gw-client"]
            provider.clients["gw-client"] = registered.model_copy(update={"client_secret": NEW})
            monkeypatch.setenv("TICKETS_SECRET", NEW)
            await gw.reload_config()
            provider.access_tokens.clear()  # 'expired': the next call refreshes
            try:
                assert (await client.call_tool("tickets_add", {"a": 2, "b": 2})).data == 4
            except ToolError as exc:
                raise AssertionError(f"{exc}; {replica(gw).last_error}") from None
            assert replica(gw).state is UpstreamState.READY  # still signed in
        data = b"".join([await anyio.Path(p).read_bytes() for p in tmp_path.iterdir()  # noqa: ASYNC240 (epilogue)
                         if p.is_file()])
        assert NEW.encode() not in data and OLD.encode() not in data  # sealed


async def test_a_new_client_secret_is_used_at_the_next_client_credentials_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = Issuer()
    issuer.secret = OLD
    monkeypatch.setenv("CC_SECRET", OLD)
    async with issuer_and_upstream(issuer) as (as_base, url):
        config = tmp_path / "servers.yaml"
        config.write_text(
            f"servers:\n  tickets:\n    url: '{url}'\n    auth: {{type: client_credentials, "
            f"client_id: {CLIENT_ID}, client_secret: '${{CC_SECRET}}', issuer: '{as_base}'}}\n")
        gw = from_file(config, None, free_port())
        async with Client(gw.server) as client:
            assert (await client.call_tool("tickets_add", {"a": 1, "b": 1})).data == 2
            assert issuer.secrets == [OLD]
            issuer.secret = NEW
            monkeypatch.setenv("CC_SECRET", NEW)
            await gw.reload_config()
            issuer.valid.clear()  # the old token ends: the next call needs a new one
            answer: Any = await client.call_tool("tickets_add", {"a": 2, "b": 2})
            assert answer.data == 4
            assert issuer.secrets[-1] == NEW and OLD not in issuer.secrets[1:]
