"""A removed server's history over REST, as over MCP: its records stay readable while the
store keeps them (``GET /stats/servers/{name}`` and every ``?server=`` filter answered 404
for any server not running); a name with no records is 404 "no server named", and a
token restricted to some servers is told only of its own.  Real HTTP on 127.0.0.1,
in-process upstreams, a SQLite store in a tmp dir."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client

from tests.fixtures import (
    alpha_server,
    beta_server,
    make_gateway,
    memory_entry,
    replica_server,
    serve_http,
)
from tests.test_rest import Api, assert_error

pytestmark = pytest.mark.anyio

OPS = "mgw_ops-history-5e0c2b7d9a41"
CAROL = "mgw_carol-alpha-beta-ghost-3f8a"  # admin of alpha, beta (removed), ghost (never was)
DAVE = "mgw_dave-alpha-only-71c4e2"  # tools, alpha only
ERIN = "mgw_erin-admin-alpha-only-6b0d93"  # admin, alpha only
AUTH = {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "carol", "token": CAROL, "scopes": ["admin"], "servers": ["alpha", "beta", "ghost"]},
    {"name": "dave", "token": DAVE, "scopes": ["tools"], "servers": ["alpha"]},
    {"name": "erin", "token": ERIN, "scopes": ["admin"], "servers": ["alpha"]},
]}


@contextlib.asynccontextmanager
async def beta_removed(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    """alpha and gamma running; beta called once, inspected once, then removed."""
    gateway = make_gateway(
        {"alpha": memory_entry("alpha"), "beta": memory_entry("beta"),
         "gamma": memory_entry("gamma")},
        {"alpha": alpha_server(), "beta": beta_server(), "gamma": replica_server("g")},
        options={"auth": AUTH}, db=tmp_path / "gateway.db")
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        api = Api(http, base)
        async with Client(f"{base}/mcp", auth=OPS) as ops:
            await ops.call_tool("beta_echo", {"text": "hi"})
            await ops.call_tool("gateway_inspect_call_tool", {
                "name": "beta", "tool": "echo", "arguments": {"text": "x"}})
        assert (await api("DELETE", "/servers/beta", OPS)).status_code == 200
        yield api, base


def unknown(response: httpx2.Response, name: str, known: str) -> None:
    message = assert_error(response, 404, "not_found")["message"]
    assert message == f"no server named '{name}' (known: {known})", message


async def test_a_removed_servers_history_is_readable_over_rest(tmp_path: Path) -> None:
    async with beta_removed(tmp_path) as (api, _base):
        for token in (OPS, CAROL):
            stats = await api("GET", "/stats/servers/beta", token)
            assert stats.status_code == 200, stats.text
            assert [(g["key"], g["count"]) for g in stats.json()["groups"]] == [("beta_echo", 1)]
            calls = (await api("GET", "/logs/invocations?server=beta", token)).json()["calls"]
            assert [c["exposed"] for c in calls] == ["beta_echo"]
            health = (await api("GET", "/logs/health?server=beta", token)).json()["records"]
            assert health and {r["server"] for r in health} == {"beta"}
            inspected = (await api("GET", "/debug/history?server=beta", token)).json()
            assert [e["server"] for e in inspected["entries"]] == ["beta"]
        # No records, no server: the unknown-server error, with the caller's servers.
        unknown(await api("GET", "/stats/servers/alpah", OPS), "alpah", "alpha, gamma")
        for path in ("/logs/invocations", "/logs/health", "/debug/history"):
            unknown(await api("GET", f"{path}?server=alpah", OPS), "alpah", "alpha, gamma")
            unknown(await api("GET", f"{path}?server=ghost", CAROL), "ghost", "alpha")
        unknown(await api("GET", "/stats/servers/ghost", CAROL), "ghost", "alpha")
        # Records of a server outside a restricted token's list: unknown to it.
        unknown(await api("GET", "/stats/servers/beta", DAVE), "beta", "alpha")
        unknown(await api("GET", "/logs/invocations?server=beta", DAVE), "beta", "alpha")
        unknown(await api("GET", "/stats/servers/gamma", DAVE), "gamma", "alpha")


async def test_mcp_names_only_a_restricted_callers_servers_as_known(tmp_path: Path) -> None:
    """The same over MCP: a name on the token's list that no server has and the store
    keeps nothing of was answered "known: alpha, gamma" -- another token's server."""
    async with beta_removed(tmp_path) as (_api, base), Client(f"{base}/mcp", auth=CAROL) as carol:
        for tool, key in (("gateway_calls", "server"), ("gateway_stats", "server"),
                          ("gateway_health_history", "name"),
                          ("gateway_inspector_history", "name"), ("gateway_server_detail", "name")):
            result = await carol.call_tool(tool, {key: "ghost"}, raise_on_error=False)
            assert result.is_error
            text: Any = result.content[0]
            assert text.text == "no server named 'ghost' (known: alpha)", (tool, text.text)
            if tool != "gateway_server_detail":
                assert not (await carol.call_tool(tool, {key: "beta"})).is_error


async def test_stats_without_a_server_for_a_restricted_admin_are_its_servers_total(
        tmp_path: Path) -> None:
    """``gateway_stats`` (``group_by: none``, no ``server``) for an admin restricted to
    several servers answered no groups at all (the one total, of every server, was left
    out as no server of its own); now the total over its servers, as REST's overview
    of that token adds up to."""
    async with beta_removed(tmp_path) as (api, base):
        async with Client(f"{base}/mcp", auth=OPS) as ops:
            await ops.call_tool("alpha_add", {"a": 1, "b": 2})
            await ops.call_tool("gamma_whoami", {})
            total = (await ops.call_tool("gateway_stats", {})).structured_content["groups"]
            assert [g["count"] for g in total] == [3]  # alpha, beta, gamma
        for token, servers in ((CAROL, {"alpha", "beta"}), (ERIN, {"alpha"})):
            overview = (await api("GET", "/stats/overview", token)).json()["groups"]
            assert {g["key"] for g in overview} == servers
            async with Client(f"{base}/mcp", auth=token) as caller:
                mine = (await caller.call_tool("gateway_stats", {})).structured_content
            assert [g["count"] for g in mine["groups"]] == [sum(g["count"] for g in overview)]
            assert set(mine["inflight"]) <= servers
