"""The MCP SDK's own refusals on the MCP endpoint say what is wrong and what to do.

Over real HTTP on 127.0.0.1, a new user met three answers naming no fix: a body over
the SDK's 4 MiB limit was "Request body too large" (413), a POST not sent as JSON
"Invalid Content-Type header" (400, SSE's ``/messages/`` too), and OAuth discovery
(``/.well-known/oauth-authorization-server``...) FastMCP's bare "Not Found", read as a
broken OAuth setup.  Now the first two keep their status and say the limit (and the
setting that sets it, ``tests/test_http_body_limit.py``) or the type sent and the one to send
(``http/transport_refusals.py``); discovery answers 404 saying how this gateway
authenticates (``http/discovery.py``).  The HTTP express lane took a 2026-07-28 call
over the limit the full path refuses (reading any body whole before checking the
token); it now passes such a body on, to the same 413.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from fast_mcp_gateway.http.transport_refusals import MAX_MESSAGE
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_http_lane import body_of, front, headers_of

pytestmark = pytest.mark.anyio

OPS = "mgw_transport-refusals-ops-8e2b4c6d"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}
ISSUER = "https://idp.example/"
ACCEPT = {"Accept": "application/json, text/event-stream"}
INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "raw", "version": "1"}}})
TOO_LARGE = {
    "http": ("the request body is over 4 MiB (4194304 bytes), the most the MCP endpoint "
             "reads for one JSON-RPC message (MCP_GATEWAY_HTTP_MAX_BODY_BYTES, which the "
             "gateway's operator may raise up to 64 MiB): send less in one message"),
    "sse": ("the request body is over 4 MiB (4194304 bytes), the most the MCP endpoint "
            "reads for one JSON-RPC message (the MCP SDK's limit for SSE, which no setting "
            "changes; streamable HTTP's is MCP_GATEWAY_HTTP_MAX_BODY_BYTES): send less in "
            "one message")}


def _text(reply: httpx2.Response, status: int) -> str:
    assert reply.status_code == status, (reply.status_code, reply.text[:300])
    assert reply.headers["content-type"] == "text/plain; charset=utf-8", reply.headers
    return reply.text


async def _chunks(total: int) -> AsyncIterator[bytes]:
    """A body of ``total`` bytes sent chunked (no Content-Length)."""
    yield b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "'
    sent = 60
    while sent < total:
        yield b"x" * (1 << 20)
        sent += 1 << 20
    yield b'"}}'


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_a_body_too_large_or_not_json_is_told_what_to_send(transport: str) -> None:
    gateway = make_gateway({}, options={"auth": AUTH})
    token = {"Authorization": f"Bearer {OPS}", **ACCEPT}
    async with serve_http(gateway.http_app(transport), startup=False) as base, \
            httpx2.AsyncClient(timeout=60) as http, contextlib.AsyncExitStack() as stack:
        url = f"{base}/mcp"
        if transport == "sse":  # a session's message endpoint, from the stream's first event
            stream = await stack.enter_async_context(
                http.stream("GET", f"{base}/sse", headers=token))
            lines = stream.aiter_lines()  # kept: collected, it would close the stream
            async for line in lines:
                if line.startswith("data: "):
                    url = base + line.removeprefix("data: ").strip()
                    break
        json_type = {**token, "Content-Type": "application/json"}
        big = b"{" + b" " * MAX_MESSAGE + b"}"
        assert _text(await http.post(url, content=big, headers=json_type), 413).startswith(
            TOO_LARGE[transport])
        assert _text(await http.post(url, content=_chunks(MAX_MESSAGE + 10),
                                     headers=json_type), 413).startswith(TOO_LARGE[transport])
        for sent, said in [("text/plain", "is sent as 'text/plain'"),
                           ("application/x-www-form-urlencoded; charset=utf-8",
                            "is sent as 'application/x-www-form-urlencoded; charset=utf-8'"),
                           ("text/" + "x" * 200, "is sent as 'text/" + "x" * 95 + "...'"),
                           (None, "has no Content-Type")]:
            headers = token if sent is None else {**token, "Content-Type": sent}
            text = _text(await http.post(url, content=INIT, headers=headers), 400)
            assert text == (f"the request body {said}: the MCP endpoint reads JSON-RPC "
                            "messages sent with 'Content-Type: application/json'; send the "
                            "request with that header"), text
        # Without the token the refusal is still the 401, as before.
        refused = await http.post(url, content=INIT, headers={"Content-Type": "text/plain"})
        assert refused.status_code == 401
        # A JSON POST is served as before.
        served = await http.post(url, content=INIT, headers=json_type)
        assert served.status_code in (200, 202), served.text


async def test_the_express_lane_passes_a_body_over_the_limit_on_to_its_413() -> None:
    async with front(True) as lane:
        assert lane.lane is not None
        name = "alpha_fail"
        small = await lane.http.post("/mcp", content=json.dumps(body_of(
            name, {"message": "x"})), headers=headers_of(name))
        assert small.status_code == 200 and lane.served == 1, small.text
        huge = json.dumps(body_of(name, {"message": "x" * MAX_MESSAGE}))
        answer = await lane.http.post("/mcp", content=huge, headers=headers_of(name))
        assert _text(answer, 413).startswith(TOO_LARGE["http"])
        chunked = await lane.http.post("/mcp", content=_chunks(3 * MAX_MESSAGE),
                                       headers=headers_of(name))
        assert _text(chunked, 413).startswith(TOO_LARGE["http"])
        assert lane.served == 1  # neither was the lane's


def _oauth(options: dict[str, Any] | None) -> Any:
    return make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                        options=options)


DISCOVERY = ["/.well-known/oauth-authorization-server",
             "/.well-known/oauth-authorization-server/mcp", "/.well-known/openid-configuration",
             "/.well-known/openid-configuration/mcp", "/mcp/.well-known/openid-configuration"]


async def test_oauth_discovery_says_how_this_gateway_authenticates() -> None:
    public_key = RSAKeyPair.generate().public_key
    jwt = {**AUTH, "jwt": {"public_key": public_key, "issuer": ISSUER,
                           "audience": "mcp-gateway"}}
    for options, kind, says in [
            (None, "none", "this gateway has no OAuth discovery and needs none: without "
                           "gateway.auth its MCP endpoint takes requests without a token"),
            ({"auth": AUTH}, "bearer", "this gateway does not use OAuth, so there is nothing "
                                       "to discover: its MCP endpoint takes a bearer token "
                                       "from gateway.auth.tokens; give the MCP client the "
                                       "header 'Authorization: Bearer <token>'"),
            ({"auth": jwt}, "jwt", "this gateway is not an OAuth authorization server: it "
                                   f"takes JWTs from the issuer in gateway.auth.jwt ({ISSUER})")]:
        gateway = _oauth(options)
        async with serve_http(gateway.http_app(), startup=False) as base, \
                httpx2.AsyncClient(timeout=30) as http:
            paths = DISCOVERY + (["/.well-known/oauth-protected-resource",
                                  "/.well-known/oauth-protected-resource/mcp"]
                                 if kind != "jwt" else [])
            for path in paths:
                reply = await http.get(base + path)
                assert reply.status_code == 404, (kind, path, reply.text)
                error = reply.json()["error"]
                assert error["code"] == "not_found"
                assert error["message"] == f"GET {path}: {says}" or error["message"].startswith(
                    f"GET {path}: {says}"), (kind, error)
                assert error["details"]["auth"] == kind and error["details"]["path"] == path
            if kind == "jwt":  # the metadata it names is served, and names the issuer
                named = error["details"]["resource_metadata"]
                assert named.endswith("/.well-known/oauth-protected-resource/mcp"), named
                assert f"metadata at {named}: discover the authorization server" in \
                    error["message"]
                served = await http.get(base + "/.well-known/oauth-protected-resource/mcp")
                assert served.status_code == 200
                assert served.json()["authorization_servers"] == [ISSUER]
            # Any other well-known path is an unknown path, in the gateway's shape.
            other = await http.get(base + "/.well-known/security.txt")
            assert other.status_code == 404 and other.json()["error"]["message"].startswith(
                "GET /.well-known/security.txt: no such path"), other.text
