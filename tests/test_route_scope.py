"""A route rule sending a tool to a server outside a token's ``servers``: that token's
tool list and its calls agree.

Found walking HTTP mode with two tokens: a rule ``clock_*`` -> ``clock2`` left
``clock_now`` in the list of a token limited to ``servers: [clock]``, and calling it
answered a bare "Unknown tool: 'clock_now'" -- a tool offered, then denied to exist.
Now such a tool is left out of that token's lists and search results, its open sessions
are told ``tools/list_changed`` when a rule is added, changed or deleted, and a call
from a host with an older list is refused saying why (never naming the rule or its
server), with the same words on the full path and the HTTP express lane.  Hosts reach
the gateway over real HTTP on 127.0.0.1, the demo clocks run as stdio subprocesses,
the rules live in a real SQLite store.  Each test failed on the code before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from tests.fixtures import WITHIN, make_gateway, serve_http
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_jwt_claims import CLAIM, ISSUER, _jwt
from tests.test_rest import BOB, OPS, Api, demo, serving
from tests.test_startup import Changes

pytestmark = pytest.mark.anyio

ALICE = "mgw_alice-clock-only-7d2e41"  # scope tools, servers [clock]
AUTH = {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "alice", "token": ALICE, "scopes": ["tools"], "servers": ["clock"]},
    {"name": "bob", "token": BOB, "scopes": ["tools"]},
]}
CLOCKS = {"clock": demo("clock"), "clock2": demo("clock")}
REFUSED = ("tool 'clock_now' is not available to this credential: the gateway routes it "
           "to a server outside the token's `servers`; ask the gateway's operator to add "
           "that server to the token or change the route")


async def _names(host: Client[Any]) -> set[str]:
    return {tool.name for tool in await host.list_tools()}


def _text(result: Any) -> str:
    return str(result.content[0].text)


async def test_a_tool_routed_outside_a_tokens_servers_leaves_its_list(tmp_path: Path) -> None:
    async with serving(tmp_path, CLOCKS, auth=False, options={"auth": AUTH}) as (api, base):
        added = Changes()
        async with Client(f"{base}/mcp", auth=ALICE, mode="legacy",
                          message_handler=added) as alice:
            assert "clock_now" in await _names(alice)
            made = await api("POST", "/routes", OPS, json={
                "pattern": "clock_*", "match": "wildcard", "target": "clock2"})
            assert made.status_code == 201, made.text
            with anyio.fail_after(WITHIN):
                await added.seen["tools"].wait()   # its open session is told
            listed = await _names(alice)
            assert not {n for n in listed if n.startswith("clock_")}, listed
            # A host keeping its old list still calls it: told why, on both paths.
            for mode in ("auto", "2026-07-28"):  # the full path, and the HTTP express lane
                async with Client(StreamableHttpTransport(f"{base}/mcp", auth=ALICE),
                                  mode=mode) as old:
                    got = await old.call_tool("clock_now", {}, raise_on_error=False)
                    assert got.is_error and _text(got) == REFUSED, (mode, got.content)
                    assert "clock2" not in _text(got) and "#" not in _text(got)
            # Nor is it suggested for a name it may have meant.
            got = await alice.call_tool("now", {}, raise_on_error=False)
            assert got.is_error and "clock_now" not in _text(got), got.content
        # A token that may use both servers still lists and calls it, routed.
        async with Client(f"{base}/mcp", auth=BOB) as bob:
            assert "clock_now" in await _names(bob)
            assert not (await bob.call_tool("clock_now", {})).is_error
        rule = made.json()["id"]
        deleted = Changes()
        async with Client(f"{base}/mcp", auth=ALICE, mode="legacy",
                          message_handler=deleted) as alice:
            await _names(alice)   # a host that lists is told of changes
            assert (await api("DELETE", f"/routes/{rule}", OPS)).status_code == 200
            with anyio.fail_after(WITHIN):
                await deleted.seen["tools"].wait()
            assert "clock_now" in await _names(alice)
            assert not (await alice.call_tool("clock_now", {})).is_error


async def test_search_shows_a_token_no_tool_routed_outside_its_servers(
        tmp_path: Path) -> None:
    async with serving(tmp_path, CLOCKS, auth=False,
                       options={"auth": AUTH, "exposure": "search"}) as (api, base):
        made = await api("POST", "/routes", OPS, json={
            "pattern": "clock_now", "match": "exact", "target": "clock2"})
        assert made.status_code == 201, made.text
        query = {"query": "current time now timezone", "k": 20}
        async with Client(f"{base}/mcp", auth=ALICE) as alice:
            found = (await alice.call_tool("search_tools", query)).structured_content
            names = {card["name"] for card in (found or {})["tools"]}
            assert "clock_now" not in names, names
            got = await alice.call_tool("call_tool", {"name": "clock_now", "arguments": {}},
                                        raise_on_error=False)
            assert got.is_error and REFUSED in _text(got), got.content
        async with Client(f"{base}/mcp", auth=BOB) as bob:
            found = (await bob.call_tool("search_tools", query)).structured_content
            assert "clock_now" in {card["name"] for card in (found or {})["tools"]}


async def test_a_rule_another_gateway_adds_reaches_this_ones_restricted_hosts(
        pg_url: str) -> None:
    """Two gateways on one PostgreSQL store: a rule added through A's REST API takes
    ``clock_now`` out of alice's list on B (told ``list_changed``), and B refuses her
    call saying why."""
    gateways = [make_gateway(CLOCKS, options={"auth": AUTH}, db=pg_url, instance_id=name)
                for name in ("A", "B")]
    async with serve_http(gateways[0].http_app()) as base_a, \
            serve_http(gateways[1].http_app()) as base_b, \
            httpx2.AsyncClient(timeout=30) as http:
        changes = Changes()
        async with Client(f"{base_b}/mcp", auth=ALICE, mode="legacy",
                          message_handler=changes) as alice:
            assert "clock_now" in await _names(alice)
            made = await Api(http, base_a)("POST", "/routes", OPS, json={
                "pattern": "clock_now", "match": "exact", "target": "clock2"})
            assert made.status_code == 201, made.text
            with anyio.fail_after(WITHIN):
                await changes.seen["tools"].wait()
            assert "clock_now" not in await _names(alice)
            got = await alice.call_tool("clock_now", {}, raise_on_error=False)
            assert got.is_error and _text(got) == REFUSED, got.content


async def test_a_jwt_is_told_of_its_servers_claim(
        jwks: tuple[RSAKeyPair, str], tmp_path: Path) -> None:  # noqa: F811
    """A JWT has no ``servers`` list: its refusal names the claim that grants servers."""
    pair, uri = jwks
    user, root = (_jwt(pair, scope="tools", **{CLAIM: ["clock"]}),
                  _jwt(pair, "root", scope="admin", **{CLAIM: "*"}))
    gateway = make_gateway(CLOCKS, db=tmp_path / "g.db", options={"auth": {"jwt": {
        "jwks_uri": uri, "issuer": ISSUER, "audience": "mcp-gateway",
        "servers_claim": CLAIM}}})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        changes = Changes()
        async with Client(f"{base}/mcp", auth=user, mode="legacy",
                          message_handler=changes) as dana:
            assert "clock_now" in await _names(dana)
            made = await Api(http, base)("POST", "/routes", root, json={
                "pattern": "clock_now", "target": "clock2"})
            assert made.status_code == 201, made.text
            with anyio.fail_after(WITHIN):
                await changes.seen["tools"].wait()
            assert "clock_now" not in await _names(dana)
            got = await dana.call_tool("clock_now", {}, raise_on_error=False)
            assert got.is_error and _text(got) == (
                "tool 'clock_now' is not available to this credential: the gateway routes "
                "it to a server outside those the JWT's servers claim grants "
                "(gateway.auth.jwt.servers_claim); ask for that server in the claim, or ask "
                "the gateway's operator to change the route"), got.content
