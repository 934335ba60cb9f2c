"""Long-lived streams on the MCP endpoint are bounded per caller (``http/stream_quota.py``):
a session's event stream (GET), a 2026-07-28 ``subscriptions/listen`` stream, and SSE's
``/sse``.  One token could open them without bound, taking every listen stream the SDK
serves (1,024, all callers together) or the gateway's file descriptors from every other
host.  Past its share a caller's next stream is a 429 in the endpoint's JSON-RPC shape
saying why and what to do; another caller still opens its own, and one closed gives its
place back.  Without ``auth`` the one anonymous caller is held to no share, nor is the
one token every host shares.  Real
uvicorn on 127.0.0.1, real clients (httpx streams, the SDK's listen)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.http import stream_quota
from fast_mcp_gateway.http.stream_quota import StreamQuota
from tests import npm_tools
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http, until

pytestmark = pytest.mark.anyio

OPS = "mgw_streams-ops-5d1c7e9a3b"
BOB = "mgw_streams-bob-2a8f4c6e0d"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                   {"name": "bob", "token": BOB, "scopes": ["tools"]}]}
HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
LIMIT = 2


@pytest.fixture(scope="module")
def tools() -> Path:
    folder = npm_tools.ensure()
    if folder is None:
        pytest.skip("npm is not installed: cannot fetch the pinned Inspector")
    return folder


@pytest.fixture(autouse=True)
def _small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real share is 128 of each kind; 2 makes the bound reachable in a few requests.
    monkeypatch.setattr(stream_quota, "STREAMS_PER_CALLER", LIMIT)


def _quota(app: Any, path: str) -> StreamQuota:
    """The ``StreamQuota`` in front of FastMCP's route ``path``."""
    route = next(r for r in app.mcp_app.routes if getattr(r, "path", None) == path)
    found = route.app
    while not isinstance(found, StreamQuota):
        found = found.app
    return found


def _headers(token: str | None, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", **extra}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def _session(http: httpx2.AsyncClient, base: str, token: str | None) -> str:
    """A handshake-era session opened (initialize, initialized); its id."""
    opened = await http.post(f"{base}/mcp", headers=_headers(token), json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": HANDSHAKE, "capabilities": {},
            "clientInfo": {"name": "streams-test", "version": "1"}}})
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    done = await http.post(f"{base}/mcp", headers=_headers(
        token, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}),
        json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202, done.text
    return session


@contextlib.asynccontextmanager
async def _get_stream(http: httpx2.AsyncClient, url: str, headers: dict[str, str]
                      ) -> AsyncIterator[httpx2.Response]:
    """A GET stream opened (its head read), closed on exit."""
    async with http.stream("GET", url, headers=headers) as response:
        yield response


async def test_a_caller_holds_a_bounded_share_of_session_event_streams(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gateway = make_gateway({}, options={"auth": AUTH}, db=tmp_path / "gw.db")
    app = gateway.http_app()
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            contextlib.AsyncExitStack() as streams:
        sessions = [await _session(http, base, BOB) for _ in range(LIMIT + 1)]

        def get(token: str, session: str) -> Any:
            return _get_stream(http, f"{base}/mcp", _headers(token, **{
                "Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}))

        held = [await streams.enter_async_context(get(BOB, s)) for s in sessions[:LIMIT]]
        assert [r.status_code for r in held] == [200] * LIMIT
        assert all(r.headers["content-type"].startswith("text/event-stream") for r in held)
        with caplog.at_level(logging.WARNING, "fast_mcp_gateway.http.stream_quota"):
            for _ in range(2):  # refused twice, logged once
                async with get(BOB, sessions[LIMIT]) as refused:
                    # The transport's "no stream here", which hosts go on without.
                    assert refused.status_code == 405
                    assert refused.headers["allow"] == "POST, DELETE"
                    answer = json.loads(await refused.aread())
        assert answer["jsonrpc"] == "2.0" and answer["id"] is None, answer
        message = answer["error"]["message"]
        assert message.startswith(f"Too many open streams: 'bob' holds {LIMIT} event streams "
                                  "of MCP sessions (a GET with Mcp-Session-Id, one per "
                                  "session) of this gateway open already"), message
        assert "close the ones it no longer reads" in message, message
        assert message.endswith("this session's requests work without it, but what the "
                                "gateway sends between them (list changes, logs) does not "
                                "reach its host"), message
        lines = [r.getMessage() for r in caplog.records if "refused a stream" in r.message]
        assert len(lines) == 1 and "'bob' (405): it holds 2 event streams" in lines[0], lines
        # Another caller opens its own.
        ops = await _session(http, base, OPS)
        other = await streams.enter_async_context(get(OPS, ops))
        assert other.status_code == 200
        # A stream closed gives its place back.
        await held[0].aclose()
        quota = _quota(app, "/mcp")
        await until(lambda: quota.open[("session", ("token", "bob"))] < LIMIT)
        async with get(BOB, sessions[LIMIT]) as again:
            assert again.status_code == 200


async def test_a_host_whose_event_stream_is_refused_goes_on_without_it(
        tmp_path: Path, tools: Path) -> None:
    """The Inspector (its CLI, on the TypeScript SDK's client v2) took the 429 for a
    failed transport: it marked its connection failed and printed ``{"tools": []}``,
    exit 0, for a gateway of six tools.  A 405 it takes as "no stream here"."""
    inspector = npm_tools.package_path(tools, "@modelcontextprotocol/inspector")
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options={"auth": AUTH}, db=tmp_path / "gw.db")
    app = gateway.http_app()
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            contextlib.AsyncExitStack() as streams:
        for _ in range(LIMIT):  # bob's share of event streams, held
            session = await _session(http, base, BOB)
            held = await streams.enter_async_context(_get_stream(http, f"{base}/mcp", _headers(
                BOB, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE})))
            assert held.status_code == 200
        done = await anyio.run_process(
            [str(npm_tools.node(tools)), str(inspector / "clients/launcher/build/index.js"),
             "--cli", "--protocol-era", "legacy", f"{base}/mcp", "--transport", "http",
             "--header", f"Authorization: Bearer {BOB}", "--method", "tools/list"],
            check=False)
        assert _quota(app, "/mcp").open[("session", ("token", "bob"))] == LIMIT
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    listed = {t["name"] for t in json.loads(done.stdout)["tools"]}
    assert {"alpha_add", "alpha_wipe"} <= listed, done.stdout.decode()[-2000:]


async def test_a_caller_holds_a_bounded_share_of_listen_streams(tmp_path: Path) -> None:
    """The SDK's own client: the refused listen is an ``MCPError`` in the gateway's words
    (the SDK takes a JSON-RPC error from a non-2xx JSON answer)."""
    gateway = make_gateway({}, options={"auth": AUTH}, db=tmp_path / "gw.db")
    app = gateway.http_app()
    async with serve_http(app) as base, Client(f"{base}/mcp", auth=BOB) as bob, \
            Client(f"{base}/mcp", auth=OPS) as ops, contextlib.AsyncExitStack() as streams:
        assert bob.protocol_version == MODERN
        for _ in range(LIMIT):
            await streams.enter_async_context(listen(bob.session, tools_list_changed=True))
        with pytest.raises(MCPError) as refused:
            async with listen(bob.session, tools_list_changed=True):
                pass
        assert str(refused.value).startswith(
            f"Too many open streams: 'bob' holds {LIMIT} subscriptions/listen streams of "
            "this gateway open already"), refused.value
        async with listen(ops.session, tools_list_changed=True):  # another caller
            pass
        await streams.aclose()  # bob's streams closed: their places are given back
        quota = _quota(app, "/mcp")
        await until(lambda: not quota.open)
        async with listen(bob.session, tools_list_changed=True):
            pass


async def test_a_refused_listen_request_is_answered_under_its_id(tmp_path: Path) -> None:
    gateway = make_gateway({}, options={"auth": AUTH}, db=tmp_path / "gw.db")
    app = gateway.http_app()

    def body(request_id: int) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "method": "subscriptions/listen",
                "params": {"notifications": {"toolsListChanged": True}, "_meta": {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": {}}}}

    headers = _headers(BOB, **{"MCP-Protocol-Version": MODERN,
                               "Mcp-Method": "subscriptions/listen"})
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            contextlib.AsyncExitStack() as streams:
        readers = []  # kept: a line iterator collected closes its stream (httpx)
        for n in range(LIMIT):
            opened = await streams.enter_async_context(http.stream(
                "POST", f"{base}/mcp", headers=headers, json=body(n)))
            assert opened.status_code == 200
            readers.append(opened.aiter_lines())
            while "notifications/subscriptions/acknowledged" not in await anext(readers[-1]):
                pass
        refused = await http.post(f"{base}/mcp", headers=headers, json=body(77))
        assert refused.status_code == 429 and refused.json()["id"] == 77, refused.text
        assert refused.headers["content-type"] == "application/json"


async def test_without_auth_the_one_caller_is_held_to_no_share(tmp_path: Path) -> None:
    """Every host is the anonymous caller: a share would protect nobody and cut every
    host of the machine, all together, to it (``session_quota``'s rule)."""
    gateway = make_gateway({}, db=tmp_path / "gw.db")
    app = gateway.http_app()
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            contextlib.AsyncExitStack() as streams:
        for _ in range(LIMIT + 1):
            session = await _session(http, base, None)
            opened = await streams.enter_async_context(_get_stream(
                http, f"{base}/mcp", _headers(None, **{
                    "Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE})))
            assert opened.status_code == 200


async def test_with_one_token_its_hosts_are_held_to_no_share(tmp_path: Path) -> None:
    """One token and no JWT: every host shares that one caller, as without ``auth``."""
    gateway = make_gateway({}, options={"auth": {"tokens": AUTH["tokens"][1:]}},
                           db=tmp_path / "gw.db")
    app = gateway.http_app()
    async with serve_http(app) as base, Client(f"{base}/mcp", auth=BOB) as bob, \
            contextlib.AsyncExitStack() as streams:
        for _ in range(LIMIT + 1):
            await streams.enter_async_context(listen(bob.session, tools_list_changed=True))
        assert _quota(app, "/mcp").open[("listen", ("token", "bob"))] == LIMIT + 1


async def test_sse_streams_are_bounded_per_caller(tmp_path: Path) -> None:
    gateway = make_gateway({}, options={"auth": AUTH}, db=tmp_path / "gw.db")
    app = gateway.http_app("sse")
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            contextlib.AsyncExitStack() as streams:
        sse = {"Accept": "text/event-stream"}
        held = []
        for _ in range(LIMIT):
            opened = await streams.enter_async_context(_get_stream(
                http, f"{base}/sse", {**sse, "Authorization": f"Bearer {BOB}"}))
            assert opened.status_code == 200
            held.append(opened)
        async with _get_stream(http, f"{base}/sse",
                               {**sse, "Authorization": f"Bearer {BOB}"}) as refused:
            assert refused.status_code == 429
            error = json.loads(await refused.aread())["error"]
        assert error["message"].startswith(f"Too many open streams: 'bob' holds {LIMIT} SSE "
                                           "streams (GET /sse, a session each)"), error
        async with _get_stream(http, f"{base}/sse",
                               {**sse, "Authorization": f"Bearer {OPS}"}) as other:
            assert other.status_code == 200
        await held[0].aclose()
        quota = _quota(app, "/sse")
        await until(lambda: quota.open[("sse", ("token", "bob"))] < LIMIT)
        with anyio.fail_after(30):
            async with _get_stream(http, f"{base}/sse",
                                   {**sse, "Authorization": f"Bearer {BOB}"}) as again:
                assert again.status_code == 200


async def test_jwt_callers_are_told_apart_by_their_subject(tmp_path: Path) -> None:
    """Two clients of one identity provider (client-credentials tokens name the client
    in 'sub', RFC 9068 2.2) hold a share each; a new token of the same subject is the
    same caller; a token naming no subject is refused (401 naming the claim) rather than
    counted as one nameless caller every such token would share."""
    pair, issuer = RSAKeyPair.generate(), "https://idp.test/"
    gateway = make_gateway({}, db=tmp_path / "gw.db", options={"auth": {"jwt": {
        "public_key": pair.public_key, "issuer": issuer, "audience": "mcp-gateway"}}})

    def jwt(**claims: Any) -> str:
        return pair.create_token(issuer=issuer, audience="mcp-gateway", scopes=["tools"],
                                 **claims)

    svc_a, svc_b = jwt(subject="svc-a@clients"), jwt(subject="svc-b@clients")
    svc_a_again = jwt(subject="svc-a@clients", expires_in_seconds=1800)
    nameless = jwt(additional_claims={"sub": None, "client_id": "svc-c"})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http, \
            contextlib.AsyncExitStack() as streams:
        async def stream(token: str) -> int:
            session = await _session(http, base, token)
            opened = await streams.enter_async_context(_get_stream(http, f"{base}/mcp", _headers(
                token, **{"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE})))
            return opened.status_code

        assert [await stream(svc_a) for _ in range(LIMIT)] == [200] * LIMIT
        assert await stream(svc_a_again) == 405  # the same caller, another token
        assert await stream(svc_b) == 200  # another client of the same provider
        refused = await http.post(f"{base}/mcp", headers=_headers(nameless), json={
            "jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401
        assert "it has no 'sub' claim naming its caller" in \
            refused.json()["error_description"], refused.text
