"""A server with ``auth: {type: oauth}``: a person signs in once, outside any request
(upstream/sign_in.py, oauth_grant.py, admin/sign_in_tools.py), end to end on
127.0.0.1 against fastmcp's in-memory authorization server (tests/oauth_servers.py).

The "person" follows the sign-in link with an HTTP client (the authorization server
approves at once and redirects to the gateway's loopback callback): no browser.  The
server is ``signed_out`` until then (no connect attempts; every answer says how to sign
in), connects by itself after, keeps its sign-in across a restart (a sealed row in a
real SQLite file that holds no token in clear), refreshes after a 401, and is signed
out with words when its refresh token is refused.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, until
from tests.oauth_servers import person_signs_in, signing_upstream

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway(url: str, db: Path | str, port: int, **settings: Any) -> Gateway:
    config = parse_config({"servers": {"tickets": {"url": url, "auth": {"type": "oauth"}}}},
                          source="test")
    settings = GatewaySettings(connect_timeout=10.0, db=str(db), startup_wait=600.0,
                               call_timeout=60, oauth_callback_port=port, **settings)
    return Gateway(config, settings, restart=FAST_RESTART, transport_factory=default_transport)


@contextlib.asynccontextmanager
async def running(gw: Gateway) -> AsyncIterator[Client[Any]]:
    async with Client(gw.server) as client:
        yield client


def replica(gw: Gateway) -> Any:
    return gw.manager.services["tickets"].replicas[0]


async def state_is(gw: Gateway, state: UpstreamState) -> None:
    await until(lambda: replica(gw).state is state)


async def sign_in(client: Client[Any]) -> str:
    answer = await client.call_tool("gateway_sign_in", {"name": "tickets"})
    data = answer.structured_content
    assert data is not None and data["message"].startswith(
        "Open this link to sign in to 'tickets' (expires in 10 min, at ")
    assert " UTC): http://127.0.0.1:" in data["message"]
    return str(data["url"])


def test_a_links_time_left_is_rounded_up_in_words() -> None:
    from fast_mcp_gateway.upstream.sign_in_page import valid_for

    at = 1_800_000_000.0  # 2027-01-15 08:00 UTC
    assert valid_for(at, at - 599.6) == "expires in 10 min, at 08:00 UTC"
    assert valid_for(at, at - 540.0) == "expires in 9 min, at 08:00 UTC"
    assert valid_for(at, at - 59.0) == "expires in under a minute, at 08:00 UTC"


async def test_a_person_signs_in_once_and_the_sign_in_outlives_a_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, port = tmp_path / "gateway.db", free_port()
    async with signing_upstream() as (provider, url):
        gw = gateway(url, db, port)
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            up = replica(gw)
            assert "needs sign-in (no sign-in yet): call the gateway_sign_in tool with " \
                   "server 'tickets', or run 'mcp-gateway login tickets'" in str(up.last_error)
            attempts = up._sup._stats.attempts
            link = await sign_in(client)
            assert await sign_in(client) == link  # one pending sign-in per server
            state = parse_qs(urlsplit(link).query)["state"][0]
            assert up._sup._stats.attempts == attempts  # no attempts while signed out
            page = await person_signs_in(link)
            assert page.status_code == 200 and "Signed in to &#x27;tickets&#x27;" in page.text
            await state_is(gw, UpstreamState.READY)
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 3})).data == 5
            assert up._sup.tap is not None  # the side door carries the bearer too
        held = [*provider.access_tokens, *provider.refresh_tokens]
        assert held
        files = [p for p in tmp_path.iterdir() if p.is_file()]  # noqa: ASYNC240 (epilogue)
        data = b"".join([await anyio.Path(p).read_bytes() for p in files])
        assert b"upstream_credentials" in data or files
        for token in held:
            assert token.encode() not in data  # sealed
            assert token not in caplog.text
        assert "state=" not in caplog.text and "code_challenge" not in caplog.text
        assert state not in caplog.text and state.encode() not in data  # the link: nowhere
        # A restart on the same store: ready without anyone signing in.
        again = gateway(url, db, port)
        async with running(again) as client:
            await state_is(again, UpstreamState.READY)
            assert (await client.call_tool("tickets_add", {"a": 1, "b": 1})).data == 2


async def test_a_refused_token_is_refreshed_and_a_refused_refresh_signs_out(
        tmp_path: Path) -> None:
    async with signing_upstream() as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            first = set(provider.access_tokens)
            provider.access_tokens.clear()  # 'expired' at the server: the next call is a 401
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 2})).data == 4
            assert set(provider.access_tokens) - first  # a new token, by the refresh
            assert replica(gw).state is UpstreamState.READY
            provider.access_tokens.clear()
            provider.refresh_tokens.clear()  # revoked: the refresh is refused
            with pytest.raises(ToolError):
                await client.call_tool("tickets_add", {"a": 1, "b": 1})
            await state_is(gw, UpstreamState.SIGNED_OUT)
            error = str(replica(gw).last_error)
            assert "needs sign-in (its refresh was refused by http://127.0.0.1:" in error
            assert "(invalid_grant)" in error and "mcp-gateway login tickets" in error
            with pytest.raises(ToolError, match="gateway_sign_in") as caught:
                await client.call_tool("tickets_add", {"a": 1, "b": 1})
            assert "mcp-gateway login tickets" in str(caught.value)
            # Signing in again brings it back.
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            assert (await client.call_tool("tickets_add", {"a": 3, "b": 3})).data == 6


async def test_a_callback_with_a_wrong_state_is_refused_in_words(tmp_path: Path) -> None:
    port = free_port()
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", port)
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await sign_in(client)  # the callback listens while a sign-in is pending
            async with httpx2.AsyncClient() as http:
                page = await http.get(f"http://127.0.0.1:{port}/oauth/callback",
                                      params={"code": "x", "state": "forged"})
            assert page.status_code == 400
            assert "This sign-in link is unknown, expired or already used" in page.text
            assert replica(gw).state is UpstreamState.SIGNED_OUT


async def test_sign_out_forgets_the_sign_in(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    async with signing_upstream() as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            out = await client.call_tool("gateway_sign_out", {"name": "tickets"})
            assert out.structured_content is not None
            assert out.structured_content["signed_out"] is True
            await state_is(gw, UpstreamState.SIGNED_OUT)
            # Revoked at the authorization server's revocation endpoint, best effort (the
            # SDK's wants a client_secret field even of a public client: it answers 400,
            # said with its OAuth error, without values).
            assert "/revoke was refused (HTTP 400, invalid_request" in caplog.text
            for token in provider.refresh_tokens:
                assert token not in caplog.text
            store = gw.store
            assert store is not None and await store.credentials() == []
            # Signed in again, then removed: its sign-in goes with it.
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            assert [c.server for c in await store.credentials()] == ["tickets"]
            await client.call_tool("gateway_remove_server", {"name": "tickets"})
            assert await store.credentials() == []


async def test_the_callback_port_taken_is_said_in_words(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        async with signing_upstream() as (_provider, url):
            gw = gateway(url, tmp_path / "gateway.db", port)
            async with running(gw) as client:
                await state_is(gw, UpstreamState.SIGNED_OUT)
                with pytest.raises(ToolError, match=f"the sign-in callback port 127.0.0.1:"
                                                    f"{port} cannot be opened"):
                    await client.call_tool("gateway_sign_in", {"name": "tickets"})


async def test_a_sign_in_sealed_with_another_key_is_no_sign_in_and_says_so(
        tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, db, free_port(), credential_keys="a" * 40)
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
        assert not (tmp_path / "credential.keys").exists()  # the setting's key, no file
        other = gateway(url, db, free_port(), credential_keys="b" * 40)
        async with running(other):
            await state_is(other, UpstreamState.SIGNED_OUT)
            assert "needs sign-in (its stored sign-in was sealed with a key this gateway " \
                   "does not have; or restore that key)" in str(replica(other).last_error)


async def test_on_postgresql_the_keys_are_required_and_a_sign_in_is_shared(
        pg_url: str) -> None:
    async with signing_upstream() as (_provider, url):
        keyless = gateway(url, pg_url, free_port())
        async with running(keyless):
            up = replica(keyless)
            await until(lambda: up.last_error is not None
                        and "CREDENTIAL_KEYS" in str(up.last_error))
            assert "servers sign in with auth: and the store is shared: set " \
                   "MCP_GATEWAY_CREDENTIAL_KEYS (the same on every gateway" in str(up.last_error)
        keyed = gateway(url, pg_url, free_port(), credential_keys="p" * 40)
        async with running(keyed) as client:
            await state_is(keyed, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(keyed, UpstreamState.READY)
        again = gateway(url, pg_url, free_port(), credential_keys="p" * 40)
        async with running(again) as client:  # another gateway on the database
            await state_is(again, UpstreamState.READY)
            assert (await client.call_tool("tickets_add", {"a": 5, "b": 5})).data == 10
