"""A server with ``auth: {type: client_credentials}`` (upstream/bearer.py,
upstream/token_grants.py), end to end on 127.0.0.1: a real authorization server
(tests/oauth_servers.py) and an MCP server that accepts only its tokens.

The gateway gets one token for many calls (found from the issuer's RFC 8414 metadata),
sends it as a bearer with no lock per request, gets a new one once after a 401, and
says in words what is wrong when the authorization server refuses, is not one or is
not there -- while its other servers keep serving.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, alpha_server, serve_http, until
from tests.oauth_servers import CLIENT_ID, CLIENT_SECRET, Gate, Issuer, issuer_and_upstream

pytestmark = pytest.mark.anyio


def gateway(servers: dict[str, dict[str, Any]]) -> Gateway:
    config = parse_config({"servers": servers}, source="test",
                          environ={"CC_SECRET": CLIENT_SECRET})
    settings = GatewaySettings(connect_timeout=10.0, db=None, startup_wait=600.0,
                               call_timeout=60)
    return Gateway(config, settings, restart=FAST_RESTART, transport_factory=default_transport)


def cc(url: str, **auth: Any) -> dict[str, Any]:
    return {"url": url, "auth": {"type": "client_credentials", "client_id": CLIENT_ID,
                                 "client_secret": "${CC_SECRET}", **auth}}


@contextlib.asynccontextmanager
async def running(gw: Gateway) -> AsyncIterator[Client[Any]]:
    async with Client(gw.server) as client:
        yield client


def replica(gw: Gateway, name: str) -> Any:
    return gw.manager.services[name].replicas[0]


async def test_one_token_from_the_issuers_metadata_serves_many_calls() -> None:
    issuer = Issuer()
    async with issuer_and_upstream(issuer) as (as_base, url):
        gw = gateway({"tickets": cc(url, issuer=as_base, scopes=["mcp:tools", "read"])})
        async with running(gw) as client:
            for n in range(5):
                result = await client.call_tool("tickets_add", {"a": n, "b": 1})
                assert result.structured_content == {"result": n + 1}
            assert len(issuer.requests) == 1  # one token for every call
            (form,) = issuer.requests
            assert form == {"grant_type": "client_credentials", "resource": url,
                            "scope": "mcp:tools read"}  # the secret went as HTTP Basic
            # The side door carries the bearer too (tests/test_http_tap_bearer.py).
            assert replica(gw, "tickets")._sup.tap is not None
            shown = gw.manager.services["tickets"].config.redacted()
            assert shown["auth"]["client_secret"] == "***"


async def test_a_refused_token_is_renewed_once_and_the_call_goes_through() -> None:
    issuer = Issuer()
    async with issuer_and_upstream(issuer) as (_as_base, url):
        gw = gateway({"tickets": cc(url, token_url=f"{issuer.base}/token",
                                    token_endpoint_auth_method="client_secret_post")})
        async with running(gw) as client:
            assert (await client.call_tool("tickets_add", {"a": 1, "b": 1})).data == 2
            issuer.valid.clear()  # the server forgets the token (revoked, expired)
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 2})).data == 4
            assert len(issuer.requests) == 2
            assert issuer.requests[0]["client_secret"] == CLIENT_SECRET  # the post method
            assert replica(gw, "tickets").state is UpstreamState.READY


async def test_calls_in_flight_are_not_serialised_by_the_bearer() -> None:
    """Two calls on one session both reach the upstream before either is answered (the
    SDK's OAuthClientProvider would hold the second until the first's answer: design
    1.2's measurement)."""
    issuer, gate = Issuer(), Gate()
    async with issuer_and_upstream(issuer, gate) as (as_base, url):
        gw = gateway({"tickets": {**cc(url, issuer=as_base), "protocol": "legacy"}})
        async with running(gw) as client, anyio.create_task_group() as tg:
            for n in range(2):
                tg.start_soon(client.call_tool, "tickets_hold", {"n": n})
            await gate.arrived[0].wait()
            await gate.arrived[1].wait()  # both in flight at the upstream at once
            gate.release.set()
        assert len(issuer.requests) == 1


async def refused(gw: Gateway, name: str) -> str:
    up = replica(gw, name)
    await until(lambda: up.last_error is not None and up.state is not UpstreamState.READY)
    return str(up.last_error)


async def test_an_authorization_server_refusing_the_client_is_said_in_words() -> None:
    issuer = Issuer()
    async with issuer_and_upstream(issuer) as (as_base, url), \
            serve_http(alpha_server().http_app(path="/mcp"), startup=False) as plain:
        gw = gateway({"tickets": {**cc(url, issuer=as_base),
                                  "auth": {"type": "client_credentials",
                                           "client_id": CLIENT_ID,
                                           "client_secret": "wrong-secret-value-123",
                                           "issuer": as_base}},
                      "alpha": {"url": f"{plain}/mcp"}})
        async with running(gw) as client:
            error = await refused(gw, "tickets")
            assert f"refused the client '{CLIENT_ID}'" in error
            assert "check auth.client_id and auth.client_secret" in error
            assert "wrong-secret-value-123" not in error and "bad secret" not in error
            # Every other server keeps serving.
            assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
            with pytest.raises(Exception, match="refused the client") as caught:
                await client.call_tool("tickets_add", {"a": 1, "b": 1})
            assert "wrong-secret-value-123" not in str(caught.value)


async def test_a_token_url_that_is_no_token_endpoint_is_said_in_words() -> None:
    issuer = Issuer()
    async with issuer_and_upstream(issuer) as (as_base, url):
        gw = gateway({"tickets": cc(url, token_url=f"{as_base}/nothing-here")})
        async with running(gw):
            error = await refused(gw, "tickets")
            assert f"{as_base}/nothing-here answered HTTP 404 to a token request" in error
            assert "check that auth.token_url" in error


async def test_an_issuer_without_metadata_is_said_in_words() -> None:
    issuer = Issuer()
    async with issuer_and_upstream(issuer) as (as_base, url):
        gw = gateway({"tickets": cc(url, issuer=f"{as_base}/realms/none")})
        async with running(gw):
            error = await refused(gw, "tickets")
            assert "found no authorization-server metadata for auth.issuer" in error
            assert f"{as_base}/.well-known/oauth-authorization-server/realms/none" in error


async def test_an_authorization_server_not_there_is_retried_not_parked() -> None:
    issuer = Issuer()
    async with issuer_and_upstream(issuer) as (_as_base, url):
        async with serve_http(issuer.app(), startup=False) as gone:
            pass  # its port is free again: nothing listens there
        gw = gateway({"tickets": cc(url, token_url=f"{gone}/token")})
        async with running(gw):
            up = replica(gw, "tickets")
            await until(lambda: up._sup._stats.attempts >= 6)  # past the crash limit
            assert up.state is UpstreamState.RECONNECTING  # never parked as failed
            assert f"cannot reach the authorization server at {gone}/token" in str(
                up.last_error)


async def test_an_upstream_refusing_the_issuers_tokens_is_said_in_words() -> None:
    issuer = Issuer()
    issuer.accepted = False  # another authorization server's tokens, or too few scopes
    async with issuer_and_upstream(issuer) as (as_base, url):
        gw = gateway({"tickets": cc(url, issuer=as_base)})
        async with running(gw):
            error = await refused(gw, "tickets")
            assert "with a token just granted: the server refuses its authorization " \
                   "server's tokens for the gateway; check auth.scopes" in error
            assert not any(token in error for token in issuer.issued)


async def test_a_secret_sent_back_as_shown_is_refused_not_sent_as_the_secret(
        tmp_path: Any) -> None:
    """Read a server's settings, change one, send them all back: ``client_secret``
    comes back as the listing's ``***``, and is refused in words (sec29: it was stored
    and sent to the authorization server as the secret, the server signed out)."""
    issuer = Issuer()
    async with issuer_and_upstream(issuer) as (as_base, url):
        config = parse_config({"servers": {"tickets": cc(url, issuer=as_base)}},
                              source="test", environ={"CC_SECRET": CLIENT_SECRET})
        gw = Gateway(config, GatewaySettings(connect_timeout=10.0, db=str(tmp_path / "g.db"),
                                             startup_wait=600.0, call_timeout=60),
                     restart=FAST_RESTART, transport_factory=default_transport)
        async with running(gw) as client:
            detail: Any = (await client.call_tool("gateway_server_detail",
                                                  {"name": "tickets"})).structured_content
            shown = {k: v for k, v in detail["config"].items() if k != "name"}
            assert shown["auth"]["client_secret"] == "***"
            answer = await client.call_tool("gateway_update_server", {
                "name": "tickets", "config": {**shown, "description": "changed"}},
                raise_on_error=False)
            text = answer.content[0].text  # type: ignore[union-attr]
            assert answer.is_error and "field 'auth': client_secret: '***' is how a listing " \
                "shows the secret, not the secret; give it again (as ${VAR})" in text, text
            issuer.valid.clear()  # the next call asks for a token: with the real secret
            assert (await client.call_tool("tickets_add", {"a": 1, "b": 2})).data == 3
