"""The HTTP side door carries the bearer of a server with ``auth:``
(upstream/http_tap_bearer.py), end to end on 127.0.0.1: a real authorization server
and an MCP server that accepts only its tokens (tests/oauth_servers.py), a gateway
served over HTTP whose express lane sends each ``tools/call`` through ``HttpTap``
(its ``served`` counter tells the tap, not the SDK's client, answered).

The tap sends the token the SDK's path sends (one per server), renews it before it
expires, renews it once after a 401 and sends the call again; a second 401 ends the
session with the SDK path's words; a 403 ``insufficient_scope`` names the scope to
grant on both paths; and no token reaches a log at DEBUG.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.upstream.http_pool import tap_applies
from fast_mcp_gateway.upstream.http_tap import HttpTap
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import serve_http, until
from tests.oauth_servers import Issuer, person_signs_in, protected_server, signing_upstream
from tests.test_client_credentials import cc, gateway
from tests.test_http_lane import body_of, headers_of
from tests.test_oauth_sign_in import free_port, sign_in
from tests.test_oauth_sign_in import gateway as oauth_gateway

pytestmark = pytest.mark.anyio

ADMIN_SCOPE = "tickets:admin"


def scope_guard(app: Any) -> Any:
    """``app``, except that a ``tools/call`` of ``hold`` is refused 403
    ``insufficient_scope`` asking for ``ADMIN_SCOPE`` (as a server checking a tool's
    scope does), before the call runs."""
    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if b'"method":"tools/call"' in body.replace(b" ", b"") \
                and b'"name":"hold"' in body.replace(b" ", b""):
            await send({"type": "http.response.start", "status": 403, "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", f'Bearer error="insufficient_scope", scope="{ADMIN_SCOPE}'
                                      f'", error_description="needs admin"'.encode())]})
            await send({"type": "http.response.body", "body": b'{"error":"insufficient_scope"}'})
            return None
        replay = iter(messages)

        async def received() -> Any:
            return next(replay, None) or await receive()

        return await app(scope, received, send)

    return guarded


@dataclass
class Lane:
    gateway: Gateway
    http: httpx2.AsyncClient
    issuer: Issuer
    posts: list[str]  # the methods the tap POSTed itself (answered or refused)

    @property
    def tap(self) -> HttpTap:
        tap = self.gateway.manager.services["tickets"].replicas[0]._sup.tap
        assert isinstance(tap, HttpTap)
        return tap

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One ``tools/call`` on the express lane; its JSON-RPC answer."""
        got = await self.http.post("/mcp", content=json.dumps(body_of(name, arguments)),
                                   headers=headers_of(name, token=None))
        assert got.status_code == 200, got.text
        answer: dict[str, Any] = got.json()
        return answer

    async def served(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """``call``, answered by the tap (not the SDK's client)."""
        before = self.tap.served
        answer = await self.call(name, arguments)
        assert self.tap.served == before + 1, answer
        return answer

    async def refused(self, name: str, arguments: dict[str, Any], posts: int = 1) -> str:
        """``call``'s error words, the tap having sent it (``posts`` times: a resend)."""
        tap, before = self.tap, len(self.posts)
        served = tap.served
        answer = await self.call(name, arguments)
        assert len(self.posts) == before + posts and tap.served == served, answer
        return words(answer)


@contextlib.asynccontextmanager
async def lane(issuer: Issuer, monkeypatch: pytest.MonkeyPatch, protocol: str = "auto",
               **auth: Any) -> AsyncIterator[Lane]:
    """The issuer, a protected upstream (``scope_guard``ed) and a gateway in front of it
    (client credentials, ``protocol``) served over HTTP, the tap in place."""
    posts: list[str] = []
    post = HttpTap._post

    async def counted(self: HttpTap, method: str, *args: Any) -> Any:
        posts.append(method)
        return await post(self, method, *args)

    monkeypatch.setattr(HttpTap, "_post", counted)
    upstream = scope_guard(protected_server(issuer).http_app(path="/mcp"))
    async with serve_http(issuer.app(), startup=False) as as_base, \
            serve_http(upstream, startup=False) as up_base:
        issuer.base = as_base
        gw = gateway({"tickets": {**cc(f"{up_base}/mcp", issuer=as_base, **auth),
                                  "protocol": protocol}})
        async with serve_http(gw.http_app("http")) as base, \
                httpx2.AsyncClient(base_url=base, timeout=60) as http:
            up = gw.manager.services["tickets"].replicas[0]
            await until(lambda: up.state is UpstreamState.READY and up._sup.tap is not None)
            yield Lane(gw, http, issuer, posts)


def result(answer: dict[str, Any]) -> Any:
    return answer["result"]["structuredContent"]["result"]


def words(answer: dict[str, Any]) -> str:
    if "error" in answer:
        return str(answer["error"]["message"])
    assert answer["result"]["isError"], answer
    return " ".join(c["text"] for c in answer["result"]["content"])


def no_token_logged(issuer: Issuer, caplog: pytest.LogCaptureFixture) -> None:
    assert issuer.issued
    for token in issuer.issued:
        assert token not in caplog.text
        assert token[:20] not in caplog.text  # (nor its start: a cut line)


async def test_calls_on_the_tap_carry_the_bearer_and_renew_it_before_expiry(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = Issuer()
    async with lane(issuer, monkeypatch) as fast:
        assert tap_applies(str(fast.tap.pool.url), fast.tap.bearer.auth)  # type: ignore[union-attr]
        for n in range(5):
            assert result(await fast.served("tickets_add", {"a": n, "b": 1})) == n + 1
        assert len(issuer.requests) == 1  # one token, for the session and the tap
        first = issuer.issued[0]
        assert set(issuer.presented) == {first}
        # Before it expires (an injected clock past its renewal time), one renewal.
        slot = fast.tap.bearer.slot  # type: ignore[union-attr]
        ahead = [3400.0]
        slot._clock = lambda: time.time() + ahead[0]
        seen = len(issuer.presented)
        assert result(await fast.served("tickets_add", {"a": 2, "b": 2})) == 4
        assert len(issuer.requests) == 2 and slot.renewals == 2
        second = issuer.issued[1]
        assert issuer.presented[seen:] == [second]  # the tap sent the new one at once
        ahead[0] = 0.0
        for n in range(3):
            assert result(await fast.served("tickets_add", {"a": n, "b": 0})) == n
        assert len(issuer.requests) == 2 and first not in issuer.presented[seen:]
    no_token_logged(issuer, caplog)


async def test_a_401_on_the_tap_is_renewed_once_and_the_call_sent_again(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = Issuer()
    async with lane(issuer, monkeypatch) as fast:
        assert result(await fast.served("tickets_add", {"a": 1, "b": 1})) == 2
        issuer.valid.clear()  # the server forgets the token (revoked, expired)
        seen = len(issuer.presented)
        async with anyio.create_task_group() as tg:  # two calls meet the 401: one renewal
            for n in range(2):
                tg.start_soon(fast.call, "tickets_add", {"a": n, "b": 1})
        assert fast.tap.served == 3 and fast.posts.count("tools/call") >= 4  # resent
        assert len(issuer.requests) == 2  # single-flight
        assert issuer.issued[1] in issuer.presented[seen:]
        assert result(await fast.served("tickets_add", {"a": 5, "b": 5})) == 10
        assert len(issuer.requests) == 2
        assert fast.gateway.manager.services["tickets"].replicas[0].state \
            is UpstreamState.READY
    no_token_logged(issuer, caplog)


async def test_a_handshake_era_session_on_the_tap_carries_the_bearer_too(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = Issuer()
    async with lane(issuer, monkeypatch, protocol="legacy") as fast:
        assert fast.tap.end is not None and fast.tap.end.session_id  # (with its id)
        assert result(await fast.served("tickets_add", {"a": 1, "b": 1})) == 2
        issuer.valid.clear()
        assert result(await fast.served("tickets_add", {"a": 2, "b": 3})) == 5
        assert len(issuer.requests) == 2 and fast.posts.count("tools/call") == 3
    no_token_logged(issuer, caplog)


async def test_a_second_401_ends_the_session_with_the_sdk_paths_words(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = Issuer()
    async with lane(issuer, monkeypatch) as fast:
        assert result(await fast.served("tickets_add", {"a": 1, "b": 1})) == 2
        tap = fast.tap
        issuer.accepted = False  # its next tokens are refused too
        issuer.valid.clear()
        said = await fast.refused("tickets_add", {"a": 2, "b": 2}, posts=2)  # resent once
        assert tap.closed  # the session ended
        assert "the server refused the gateway's token (HTTP 401; the call was not run) " \
               "and is restarting (the server refused a token just granted (HTTP 401 at " \
               "http://127.0.0.1:" in said, said
        assert len(issuer.requests) >= 2  # renewed once before the resend
        up = fast.gateway.manager.services["tickets"].replicas[0]
        # The reconnect renews first, and says why it cannot serve (as on the SDK path).
        await until(lambda: up.last_error is not None and "token just granted" in str(
            up.last_error) and up.state is not UpstreamState.READY)
    no_token_logged(issuer, caplog)


async def test_a_403_insufficient_scope_names_the_scope_on_both_paths(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = Issuer()
    async with lane(issuer, monkeypatch, scopes=["mcp:tools"]) as fast:
        want = (f"the server refused the call for want of a scope the gateway's token lacks "
                f"(HTTP 403 insufficient_scope; it asks for scope '{ADMIN_SCOPE}'): add it "
                "to auth.scopes of server 'tickets' in the config, then reload the config "
                "(the gateway then asks for a token with them)")
        said = await fast.refused("tickets_hold", {"n": 1})
        assert want in said, said
        assert "needs admin" not in said  # the server's own description: not relayed
        async with Client(fast.gateway.server) as client:  # the SDK's client path
            before = fast.tap.served
            with pytest.raises(ToolError) as caught:
                await client.call_tool("tickets_hold", {"n": 1})
            assert fast.tap.served == before
        assert want in str(caught.value), str(caught.value)
        # The server stays ready: other tools are within the token's scopes.
        assert result(await fast.served("tickets_add", {"a": 1, "b": 2})) == 3
        assert len(issuer.requests) == 1
    no_token_logged(issuer, caplog)


async def test_a_persons_sign_in_on_the_tap_refreshed_then_signed_out(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``auth: {type: oauth}``: a 401 on the tap is refreshed (the call answered); a
    refused refresh signs the server out, as on the SDK's path."""
    caplog.set_level(logging.DEBUG)
    posts: list[str] = []
    post = HttpTap._post

    async def counted(self: HttpTap, method: str, *args: Any) -> Any:
        posts.append(method)
        return await post(self, method, *args)

    monkeypatch.setattr(HttpTap, "_post", counted)
    async with signing_upstream() as (provider, url):
        gw = oauth_gateway(url, tmp_path / "gateway.db", free_port())
        up = gw.manager.services["tickets"].replicas[0]
        async with Client(gw.server) as client, serve_http(gw.http_app("http")) as base, \
                httpx2.AsyncClient(base_url=base, timeout=60) as http:
            await until(lambda: up.state is UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await until(lambda: up.state is UpstreamState.READY and up._sup.tap is not None)
            fast = Lane(gw, http, Issuer(), posts)
            assert result(await fast.served("tickets_add", {"a": 1, "b": 2})) == 3
            first = set(provider.access_tokens)
            provider.access_tokens.clear()  # 'expired' at the server: a 401, refreshed
            assert result(await fast.served("tickets_add", {"a": 2, "b": 2})) == 4
            assert set(provider.access_tokens) - first
            held = [*provider.access_tokens, *provider.refresh_tokens]
            provider.access_tokens.clear()
            provider.refresh_tokens.clear()  # revoked: the refresh is refused
            said = await fast.refused("tickets_add", {"a": 1, "b": 1})
            # Signed out, not restarting: calls in flight finish (test_oauth_sign_out).
            assert "the call was not run: the server refused the gateway's token (HTTP " \
                   "401): needs sign-in (its refresh was refused by http://127.0.0.1:" \
                   in said, said
            await until(lambda: up.state is UpstreamState.SIGNED_OUT)
            error = str(up.last_error)
            assert "(invalid_grant)" in error and "mcp-gateway login tickets" in error
    for token in held:
        assert token not in caplog.text
