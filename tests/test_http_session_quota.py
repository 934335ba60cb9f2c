"""Handshake-era MCP sessions are bounded per caller (``http/session_quota.py``): the
SDK's session manager answers every new session 503 once ``max_sessions`` are open, so
one token of any scope that opened that many and left them (half an hour each) locked
every other host out.  Past its share the caller's next ``initialize`` is a 429 saying
why; another caller still opens sessions, and one ended gives its place back."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest

from fast_mcp_gateway.http.session_quota import session_manager_of
from tests.fixtures import make_gateway, serve_http, until

pytestmark = pytest.mark.anyio

OPS = "mgw_quota-ops-4c9e1a7b2d"
BOB = "mgw_quota-bob-8f3d6b0e5a"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                   {"name": "bob", "token": BOB, "scopes": ["tools"]}]}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "quota-test", "version": "1"}}}


def _headers(token: str, session: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    if session is not None:
        headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    return headers


async def test_one_caller_holds_a_bounded_share_of_the_sessions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gateway = make_gateway({}, options={"auth": AUTH}, db=tmp_path / "gw.db")
    app = gateway.http_app()
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http:
        manager = session_manager_of(app.mcp_app, "/mcp")()
        manager.max_sessions = 16  # an eighth of them: 2 per caller

        async def initialize(token: str) -> httpx2.Response:
            return await http.post(f"{base}/mcp", json=INITIALIZE, headers=_headers(token))

        opened = [await initialize(BOB) for _ in range(2)]
        assert [r.status_code for r in opened] == [200, 200]
        with caplog.at_level(logging.WARNING, "fast_mcp_gateway.http.session_quota"):
            refused = await initialize(BOB)
            assert (await initialize(BOB)).status_code == 429  # logged once a minute
        assert refused.status_code == 429, refused.text
        lines = [r.getMessage() for r in caplog.records if "refused a session" in r.message]
        assert lines == ["MCP endpoint: refused a session of 'bob' (429): it holds 2 open "
                         "already, the most one caller may hold (repeats for this caller "
                         "are not logged for 60 s)"], lines
        error = refused.json()["error"]
        assert error["message"].startswith("Too many open sessions: 'bob' holds 2 MCP "
                                           "sessions of this gateway already"), error
        assert "mcp-session-id" not in refused.headers
        assert (await initialize(OPS)).status_code == 200  # another caller
        assert len(manager._server_instances) == 3
        ended = await http.delete(f"{base}/mcp", headers=_headers(
            BOB, opened[0].headers["mcp-session-id"]))
        assert ended.status_code == 200, ended.text
        await until(lambda: len(manager._server_instances) == 2)
        assert (await initialize(BOB)).status_code == 200  # its place was given back
        assert (await initialize(BOB)).status_code == 429
        # A request without a valid token is FastMCP's 401, as before.
        assert (await http.post(f"{base}/mcp", json=INITIALIZE,
                                headers=_headers("mgw_nobody"))).status_code == 401


async def test_without_auth_the_one_caller_is_not_held_to_a_share(tmp_path: Path) -> None:
    """Without ``auth`` every host is the anonymous caller: a share of the sessions would
    protect no other caller (there is none) and only cut every host on the machine, all
    together, to an eighth of the SDK's bound (a host opening sessions it never ends,
    a dashboard, an IDE and a script alongside: 429 at 1,250 instead of 10,000)."""
    gateway = make_gateway({}, db=tmp_path / "gw.db")
    app = gateway.http_app()
    plain = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http:
        manager = session_manager_of(app.mcp_app, "/mcp")()
        manager.max_sessions = 16  # an eighth would be 2
        opened = [await http.post(f"{base}/mcp", json=INITIALIZE, headers=plain)
                  for _ in range(3)]
        assert [r.status_code for r in opened] == [200, 200, 200], opened[-1].text
        assert len(manager._server_instances) == 3


async def test_with_one_token_its_hosts_are_held_to_no_share(tmp_path: Path) -> None:
    """One token and no JWT: every host shares that one caller, whom a share would only
    cut, as the anonymous caller without ``auth``."""
    gateway = make_gateway({}, options={"auth": {"tokens": AUTH["tokens"][1:]}},
                           db=tmp_path / "gw.db")
    app = gateway.http_app()
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30) as http:
        manager = session_manager_of(app.mcp_app, "/mcp")()
        manager.max_sessions = 16  # an eighth would be 2
        opened = [await http.post(f"{base}/mcp", json=INITIALIZE, headers=_headers(BOB))
                  for _ in range(3)]
        assert [r.status_code for r in opened] == [200, 200, 200], opened[-1].text
