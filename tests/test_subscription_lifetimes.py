"""How long the gateway's resource subscriptions upstream last: as long as a host holds
them, however the host leaves.

A real upstream (``tests/servers/watched.py``, a stdio subprocess) records the
subscribe and unsubscribe requests it gets; hosts reach the gateway over real HTTP on
127.0.0.1.  Each test failed on the code it was written against.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from mcp.client.subscriptions import Subscription, listen

from fast_mcp_gateway._compat import open_http_sessions
from fast_mcp_gateway.gateway import Gateway
from fast_mcp_gateway.http.session_quota import session_manager_of
from tests.fixtures import WITHIN, make_gateway, serve_http, stdio_entry, until
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_mcp_auth import ISSUER

pytestmark = pytest.mark.anyio
WATCHED = "watch://watched/counter"   # as hosts name it; the upstream's own is:
SUBSCRIBE, UNSUBSCRIBE = "subscribe watch://counter", "unsubscribe watch://counter"
WATCHED_ENTRY = {"watched": stdio_entry("watched.py", protocol="legacy")}


def watched_gateway(**settings: Any) -> Gateway:
    return make_gateway(WATCHED_ENTRY, **settings)


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
    expires (``session_idle_timeout``), and with it the upstream's subscription.

    The SDK ends a session whose ``idle_scope`` deadline passes, set to the timeout
    from when its last request ended: the test moves that deadline to now instead of
    waiting for it.  (A timeout of 1 s, waited for, was also the longest the host's
    three POSTs could be apart: a loaded machine could expire the session before its
    subscription.)"""
    gateway = watched_gateway(session_idle_timeout=3600.0)
    app = gateway.http_app("http")
    headers = {"Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    async with serve_http(app) as base, Client(f"{base}/mcp") as ops:
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
        # The host's connection is gone, and it sends nothing more: once its session's
        # countdown started (no request in flight), the timeout runs out now.
        sessions = open_http_sessions(session_manager_of(app.mcp_app, "/mcp")())
        session = opened.headers["mcp-session-id"]
        idle = sessions[session].idle_scope
        await until(lambda: idle.deadline < math.inf)
        idle.deadline = anyio.current_time()
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
        await until(lambda: session not in sessions)


async def test_an_upstream_refusing_the_unsubscribe_of_a_host_that_left_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    """The upstream's refusal is logged as a warning naming the server, the URI and what
    it said; nothing is raised into the closing session's cleanup."""
    caplog.set_level(logging.WARNING, logger="fast_mcp_gateway.front.host_requests")
    gateway = make_gateway({"watched": stdio_entry("watched.py", "--refuse-unsubscribe",
                                                   protocol="legacy")})
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops:
        async with Client(f"{base}/mcp", mode="legacy") as leaving:
            await leaving.session.subscribe_resource(WATCHED)
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
        await until(lambda: "could not unsubscribe" in caplog.text)
    assert (f"could not unsubscribe upstream 'watched' from {WATCHED} after the last host "
            "subscribed to it left: unsubscribe refused on purpose") in caplog.text


MINE = "mgw_listening-token-7e2c91d4"   # a token of scope tools
OPS = "mgw_ops-token-3f8a61b2c9d0e4f5"


def with_tokens(config: Path, *tokens: str) -> dict[str, Any]:
    """``config`` as a servers.yaml of the watched server whose ``gateway.auth`` has the
    admin token ``OPS`` and ``tokens`` (scope tools); the auth section written."""
    auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                       *({"name": f"mo{n}", "token": token, "scopes": ["tools"]}
                         for n, token in enumerate(tokens))]}
    config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": WATCHED_ENTRY}))
    return auth


async def ended(stream: Subscription) -> list[Any]:
    """The events ``stream`` delivers until the server ends it gracefully (a drop raises
    ``SubscriptionLost``), at most ``WITHIN`` seconds."""
    with anyio.fail_after(WITHIN):
        return [event async for event in stream]


async def test_a_listen_stream_whose_token_a_reload_removed_is_closed(tmp_path: Path) -> None:
    """A 2026-07-28 listen stream whose token a reload removed from ``gateway.auth`` stayed
    open delivering nothing (its caller may use no server now), holding its slot and the
    upstream's subscription until the host left.  It is ended at the reload, gracefully
    (the stream's result), its slot freed and the upstream unsubscribed; a new request
    with the token is refused, as before."""
    config = tmp_path / "servers.yaml"
    gateway = make_gateway(WATCHED_ENTRY, options={"auth": with_tokens(config, MINE)},
                           config=config)
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=OPS) as ops,
        Client(f"{base}/mcp", auth=MINE) as mo,
    ):
        assert mo.protocol_version == "2026-07-28"
        async with listen(mo.session, resource_subscriptions=[WATCHED]) as stream:
            assert stream.honored.resource_subscriptions == [WATCHED]
            assert gateway.hub.streams == 1
            with_tokens(config)   # the token is removed
            assert (await gateway.reload_config()).error is None
            assert await ended(stream) == []
        assert gateway.hub.streams == 0
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
        async with httpx2.AsyncClient(timeout=WITHIN) as http:
            refused = await http.post(f"{base}/mcp", json={
                "jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={
                "Authorization": f"Bearer {MINE}",
                "Accept": "application/json, text/event-stream"})
        assert refused.status_code == 401, refused.text


async def test_a_listen_stream_is_closed_when_its_jwt_expires(
        jwks: tuple[RSAKeyPair, str]) -> None:  # noqa: F811
    """The same for a JWT that expires while its stream is open: closed at its expiry
    by the gateway's clock.  The gateway's clock is moved past it, and the wait for it
    (``FrontHub.expiry``) held until then: no test waits an hour, or on a timer."""
    pair, jwks_uri = jwks
    auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}],
            "jwt": {"jwks_uri": jwks_uri, "issuer": ISSUER, "audience": "mcp-gateway"}}
    jwt = pair.create_token(subject="ci@idp", issuer=ISSUER, audience="mcp-gateway",
                            kid="k1", scopes=["tools"], expires_in_seconds=3600)
    gateway = make_gateway(WATCHED_ENTRY, options={"auth": auth})
    app = gateway.http_app("http")
    now = [time.time()]
    assert app.access.verifier is not None
    app.access.verifier._clock = lambda: now[0]
    asked: list[float] = []
    waiting, over = anyio.Event(), anyio.Event()

    async def until_over(rest: float) -> None:
        asked.append(rest)
        waiting.set()
        await over.wait()

    gateway.hub.expiry = until_over
    async with (
        serve_http(app) as base,
        Client(f"{base}/mcp", auth=OPS) as ops,
        Client(f"{base}/mcp", auth=jwt) as ci,
    ):
        async with listen(ci.session, resource_subscriptions=[WATCHED]) as stream:
            assert stream.honored.resource_subscriptions == [WATCHED]
            with anyio.fail_after(WITHIN):
                await waiting.wait()
            assert 3000 < asked[0] <= 3600, asked
            now[0] += 3601   # the JWT has expired
            over.set()
            assert await ended(stream) == []
        assert gateway.hub.streams == 0
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
