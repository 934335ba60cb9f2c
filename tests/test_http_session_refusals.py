"""The MCP SDK's session refusals on the MCP endpoint say what is wrong and what to do.

Over real HTTP on 127.0.0.1, a handshake-era request without ``Mcp-Session-Id`` was
answered 400 "Bad Request: Missing session ID" (with the id of a session the SDK had
just discarded), and one naming a session the gateway does not hold 404 "Session not
found": neither said why or what to do.  Both keep the SDK's status (hosts
re-``initialize`` on the 404), JSON-RPC shape and code, and now say the causes (with
``session_idle_timeout``'s value) and the fix (``http/session_refusals.py``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx2
import pytest

from tests.fixtures import make_gateway, serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_session-refusals-ops-5a1c9e3f"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}
POST = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "raw", "version": "1"}}}
MISSING = ("Bad Request: Missing session ID: this request is of the handshake era (it has "
           "no 'MCP-Protocol-Version: 2026-07-28'), whose requests belong to a session: "
           "send 'initialize' first (a POST without Mcp-Session-Id) and then the "
           "Mcp-Session-Id header its answer carries on every request; or send it "
           "sessionless in protocol 2026-07-28 (header 'MCP-Protocol-Version: 2026-07-28', "
           "and the protocol version, client info and capabilities in the request's "
           "params._meta)")


UNKNOWN = ("Session not found: this gateway holds no session with the Mcp-Session-Id "
           "sent: the host ended it (DELETE), or it expired after 90 s without a request "
           "(session_idle_timeout, MCP_GATEWAY_SESSION_IDLE_TIMEOUT), or the gateway "
           "restarted since it was opened, or another gateway instance holds it (behind "
           "a load balancer, send a session's requests to one instance); send "
           "'initialize' again (without Mcp-Session-Id) to open a new session")
"""With tokens, a session nobody holds and one another credential opened are told the
same words (``OTHERS``): different answers told any token holder whether a session id
it holds is live."""
OTHERS = ("Session not found: this gateway holds no session of this credential with the "
          "Mcp-Session-Id sent: the host ended it (DELETE), or it expired after 90 s "
          "without a request (session_idle_timeout, MCP_GATEWAY_SESSION_IDLE_TIMEOUT), or "
          "the gateway restarted since it was opened, or another gateway instance holds it "
          "(behind a load balancer, send a session's requests to one instance), or it was "
          "opened with another credential (a session answers only the token or JWT that "
          "opened it: send its requests with that one); send 'initialize' again (without "
          "Mcp-Session-Id) to open a new session")


def _error(reply: httpx2.Response, status: int) -> str:
    """The JSON-RPC error message of ``reply``, checked to be the SDK's shape."""
    assert reply.status_code == status, (reply.status_code, reply.text[:300])
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.content)
    body: dict[str, Any] = reply.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None, body
    assert body["error"]["code"] == -32600, body
    assert set(body) == {"jsonrpc", "id", "error"} and set(body["error"]) == {"code", "message"}
    message: str = body["error"]["message"]
    return message


def _rpc(method: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": 2, "method": method})


@pytest.mark.parametrize("auth", [False, True])
async def test_a_missing_or_unknown_session_is_told_why_and_what_to_do(auth: bool) -> None:
    gateway = make_gateway({}, options={"auth": AUTH} if auth else None,
                           session_idle_timeout=90.0)
    headers = {**POST, **({"Authorization": f"Bearer {OPS}"} if auth else {})}
    async with serve_http(gateway.http_app("http"), startup=False) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        url = f"{base}/mcp"
        for method in ("ping", "tools/list"):
            for extra in ({}, {"MCP-Protocol-Version": "2025-06-18"}):
                reply = await http.post(url, content=_rpc(method), headers={**headers, **extra})
                assert _error(reply, 400) == MISSING
                # The SDK discarded the session it opened for the request: not named.
                assert "mcp-session-id" not in reply.headers
                reply = await http.post(url, content=_rpc(method),
                                         headers={**headers, **extra, "Mcp-Session-Id": "nope"})
                assert _error(reply, 404) == (OTHERS if auth else UNKNOWN)
        stream = await http.get(url, headers={**headers, "Accept": "text/event-stream"})
        assert _error(stream, 400).startswith(
            "Bad Request: Missing session ID: a GET opens the event stream of a session")
        ended = await http.delete(url, headers={**headers, "Mcp-Session-Id": "nope"})
        assert _error(ended, 404) == (OTHERS if auth else UNKNOWN)
        # A session opened with initialize is served as before, its id kept.
        opened = await http.post(url, content=json.dumps(INIT), headers=headers)
        assert opened.status_code == 200, opened.text
        session = {**headers, "Mcp-Session-Id": opened.headers["mcp-session-id"],
                   "MCP-Protocol-Version": "2025-06-18"}
        pong = await http.post(url, content=_rpc("ping"), headers=session)
        assert pong.status_code == 200 and '"result":{}' in pong.text, pong.text
        # ... and once the host ends it, its id is unknown, in the same words.
        assert (await http.delete(url, headers=session)).status_code == 200
        gone = await http.post(url, content=_rpc("ping"), headers=session)
        assert _error(gone, 404) == (OTHERS if auth else UNKNOWN)


async def test_a_session_used_with_another_credential_is_answered_as_one_nobody_holds(
        caplog: pytest.LogCaptureFixture) -> None:
    """The SDK answered its generic 404, whose words listed causes that were not the
    host's, and logged a WARNING naming the session id on every such request."""
    caplog.set_level(logging.INFO)
    bob = "mgw_session-refusals-bob-77d0b2e4"
    gateway = make_gateway({}, options={"auth": {"tokens": [
        *AUTH["tokens"], {"name": "bob", "token": bob, "scopes": ["tools"]}]}},
        session_idle_timeout=90.0)
    async with serve_http(gateway.http_app("http"), startup=False) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        url = f"{base}/mcp"
        opened = await http.post(url, content=json.dumps(INIT),
                                 headers={**POST, "Authorization": f"Bearer {OPS}"})
        assert opened.status_code == 200, opened.text
        sid = opened.headers["mcp-session-id"]
        borrowed = {**POST, "Authorization": f"Bearer {bob}", "Mcp-Session-Id": sid,
                    "MCP-Protocol-Version": "2025-06-18"}
        for _ in range(3):
            said = _error(await http.post(url, content=_rpc("ping"), headers=borrowed), 404)
            assert said == OTHERS and "ops" not in said
        stream = await http.get(url, headers={**borrowed, "Accept": "text/event-stream"})
        assert _error(stream, 404) == OTHERS
        assert _error(await http.delete(url, headers=borrowed), 404) == OTHERS
        # Not ended by it: its owner goes on; a session nobody holds keeps its words.
        own = {**borrowed, "Authorization": f"Bearer {OPS}"}
        pong = await http.post(url, content=_rpc("ping"), headers=own)
        assert pong.status_code == 200 and '"result":{}' in pong.text, pong.text
        # No session-id oracle: a live session of another credential and one nobody
        # holds get the same answer, byte for byte (status, headers, body).
        gone = await http.post(url, content=_rpc("ping"),
                               headers={**borrowed, "Mcp-Session-Id": "nope"})
        live = await http.post(url, content=_rpc("ping"), headers=borrowed)
        assert _error(gone, 404) == OTHERS and live.content == gone.content
        assert sorted(k for k in live.headers if k != "date") == sorted(
            k for k in gone.headers if k != "date")
        unauthenticated = {k: v for k, v in borrowed.items() if k != "Authorization"}
        assert (await http.post(url, content=_rpc("ping"),
                                headers=unauthenticated)).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    mine = [line for line in lines if "another credential" in line]
    assert len(mine) == 1 and "token 'bob'" in mine[0], lines
    assert not any(sid in line or sid[:16] in line for line in lines), lines
