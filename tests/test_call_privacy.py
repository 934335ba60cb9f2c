"""One caller's calls are not another's to read: call records, live call events and
per-client sessions are shown to a token without scope ``admin`` for its own calls only
(``Principal.own_records``), on every surface (REST, the dashboard's pages and live
stream); an admin sees every caller's.  Real HTTP on 127.0.0.1, a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client

from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_ui import _login

pytestmark = pytest.mark.anyio

OPS = "mgw_privacy-ops-7c1e0b9d52"
ALICE = "mgw_privacy-alice-3f8a61c4"
BOB = "mgw_privacy-bob-9d2e47a0"
AUTH = {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "alice", "token": ALICE, "scopes": ["tools"]},
    {"name": "bob", "token": BOB, "scopes": ["tools"]},
]}
ALICE_MARK = "alice-private-text-71f3"  # what alice sent, and her error quoting it
BOB_MARK = "bob-private-text-29c4"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _calls(http: httpx2.AsyncClient, base: str, token: str,
                 **params: Any) -> dict[str, Any]:
    response = await http.get(f"{base}/api/v1/logs/invocations", headers=_bearer(token),
                              params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def _fail(base: str, token: str, mark: str) -> None:
    async with Client(f"{base}/mcp", auth=token) as client:
        await client.call_tool("alpha_fail", {"message": mark}, raise_on_error=False)


async def test_a_tools_token_reads_its_own_call_records_only(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options={"auth": AUTH}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http, \
            httpx2.AsyncClient(timeout=30) as bob_ui, \
            httpx2.AsyncClient(timeout=30) as ops_ui:
        await _fail(base, ALICE, ALICE_MARK)
        await _fail(base, BOB, BOB_MARK)

        # REST: each tools token its own records (arguments and error texts), paged as
        # its own; the admin every caller's.
        alice = await _calls(http, base, ALICE)
        assert [c["client"] for c in alice["calls"]] == ["alice"]
        assert ALICE_MARK in json.dumps(alice) and BOB_MARK not in json.dumps(alice)
        bob = await _calls(http, base, BOB, limit=1)
        assert [c["client"] for c in bob["calls"]] == ["bob"] and bob["next_cursor"] is None
        assert ALICE_MARK not in json.dumps(bob)
        ops = await _calls(http, base, OPS)
        assert [c["client"] for c in ops["calls"]] == ["bob", "alice"]
        async with Client(f"{base}/mcp", auth=OPS) as admin:  # the admin tool: the same
            listed = (await admin.call_tool("gateway_calls", {})).structured_content
            assert listed is not None
            assert [c["client"] for c in listed["calls"]] == ["bob", "alice"]

        # The dashboard: the logs page, a server's page and a call record's page.
        await _login(bob_ui, base, BOB)
        await _login(ops_ui, base, OPS)
        for path in ("/ui/logs", "/ui/servers/alpha"):
            page = (await bob_ui.get(base + path)).text
            assert BOB_MARK in page and ALICE_MARK not in page, path
            assert ALICE_MARK in (await ops_ui.get(base + path)).text, path
        hers = alice["calls"][0]
        at = {"at": hers["started_at"]}
        record = await bob_ui.get(f"{base}/ui/calls/{hers['id']}", params=at)
        assert record.status_code == 404 and ALICE_MARK not in record.text
        record = await bob_ui.get(f"{base}/ui/calls/{hers['id']}")  # looked for by id
        assert record.status_code == 404 and ALICE_MARK not in record.text
        seen = await ops_ui.get(f"{base}/ui/calls/{hers['id']}", params=at)
        assert seen.status_code == 200 and ALICE_MARK in seen.text


async def _next_call(lines: Any) -> dict[str, Any]:
    """The next ``call`` event of a live stream."""
    async for line in lines:
        if line == "event: call":
            data = await anext(lines)
            event: dict[str, Any] = json.loads(data.removeprefix("data: "))
            return event
    raise AssertionError("the stream ended")


async def test_the_live_stream_sends_a_tools_token_its_own_calls_only(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options={"auth": AUTH}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as bob_ui, \
            httpx2.AsyncClient(timeout=30) as ops_ui:
        await _login(bob_ui, base, BOB)
        await _login(ops_ui, base, OPS)
        async with bob_ui.stream("GET", base + "/ui/events") as bob_stream, \
                ops_ui.stream("GET", base + "/ui/events") as ops_stream:
            bob_lines, ops_lines = bob_stream.aiter_lines(), ops_stream.aiter_lines()
            assert await anext(bob_lines) == ": connected"  # subscribed by now
            assert await anext(ops_lines) == ": connected"
            await _fail(base, ALICE, ALICE_MARK)  # first: bob's stream must skip it
            await _fail(base, BOB, BOB_MARK)
            mine = await _next_call(bob_lines)
            assert (mine["client"], mine["name"]) == ("bob", "alpha_fail")
            everyone = [await _next_call(ops_lines), await _next_call(ops_lines)]
            assert [e["client"] for e in everyone] == ["alice", "bob"]


async def test_a_tools_token_is_shown_its_own_per_client_sessions_only(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha", isolation="per_client")},
                           {"alpha": alpha_server()}, options={"auth": AUTH},
                           db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http, \
            Client(f"{base}/mcp", auth=ALICE) as alice, Client(f"{base}/mcp", auth=BOB) as bob:
        await alice.call_tool("alpha_add", {"a": 1, "b": 2})
        await bob.call_tool("alpha_add", {"a": 1, "b": 2})

        async def owners(token: str) -> tuple[list[Any], list[Any]]:
            one = (await http.get(f"{base}/api/v1/servers/alpha", headers=_bearer(token))).json()
            listed = (await http.get(f"{base}/api/v1/servers", headers=_bearer(token))).json()
            return ([s["owner"] for s in one["client_sessions"]["sessions"]],
                    [s["owner"] for s in listed["servers"][0]["client_sessions"]["sessions"]])

        assert await owners(BOB) == (["bob"], ["bob"])
        assert await owners(ALICE) == (["alice"], ["alice"])
        both = await owners(OPS)
        assert sorted(both[0]) == sorted(both[1]) == ["alice", "bob"]
        one = (await http.get(f"{base}/api/v1/servers/alpha", headers=_bearer(BOB))).json()
        assert one["client_sessions"]["active"] == 2  # the counts stay the server's
        for path in ("/health/servers/alpha", "/health/servers"):  # the same status
            health = (await http.get(base + path, headers=_bearer(BOB))).json()
            status = health if path.endswith("alpha") else health["servers"][0]
            assert [s["owner"] for s in status["client_sessions"]["sessions"]] == ["bob"]
        health = (await http.get(f"{base}/health/servers/alpha", headers=_bearer(OPS))).json()
        assert len(health["client_sessions"]["sessions"]) == 2
