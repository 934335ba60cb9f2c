"""Route rules: the pure table, and rules and aliases on the call path."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from fast_mcp_gateway.routing.rules import Route, RouteTable
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry


@pytest.mark.parametrize(("name", "expected"), [
    ("alpha_add", 3),          # exact beats the prefix rule by priority
    ("alpha_wipe", 2),         # prefix
    ("beta_echo", 1),          # wildcard
    ("gamma_x", None),         # no rule: the default route
])
def test_rule_order_and_matching(name: str, expected: int | None) -> None:
    table = RouteTable([
        Route(1, "*_echo", "wildcard", "x", priority=0),
        Route(2, "alpha_", "prefix", "x", priority=1),
        Route(3, "alpha_add", "exact", "x", priority=5),
        Route(4, "alpha_add", "exact", "x", priority=5),   # same priority: the older wins
    ])
    rule = table.rule_for(name)
    assert (rule.id if rule else None) == expected


@pytest.mark.anyio
async def test_routes_and_aliases_on_the_call_path(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    memory = {"alpha": alpha_server(), "beta": beta_server()}
    servers = {"alpha": memory_entry("alpha"), "beta": memory_entry("beta")}
    gateway = make_gateway(servers, memory, db=db)
    async with Client(gateway.server) as client:
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 1})).data == 2
        route = (await client.call_tool("gateway_add_route", {
            "pattern": "alpha_add", "target": "beta"})).structured_content
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 1})).data == 1002
        calls = (await client.call_tool("gateway_calls", {"tool": "alpha_add"})).data.calls
        assert calls[0].server == "beta"
        assert calls[0].rule == f"#{route['id']} exact 'alpha_add' -> beta"
        # Seed-style aliases reach a server's tool by its original name.
        assert (await client.call_tool("beta:echo", {"text": "hi"})).data == "hi"
        bad = await client.call_tool_mcp("gateway_add_route", {"pattern": "alpha_*",
                                                                "target": "nope"})
        assert bad.is_error and "no server named 'nope'" in bad.content[0].text
        # A wildcard under the default 'exact' was stored and matched nothing, silently.
        starred = await client.call_tool_mcp("gateway_add_route", {"pattern": "alpha_*",
                                                                    "target": "beta"})
        assert starred.is_error, starred.content
        assert starred.content[0].text == (
            "the pattern 'alpha_*' holds a wildcard ('*' or '?'), but 'match' is 'exact' "
            "(the default), which compares names as written: set 'match' to 'wildcard' "
            "(or to 'prefix' with the pattern 'alpha_')")
        assert (await client.call_tool("gateway_list_routes", {})).structured_content[
            "routes"][0]["pattern"] == "alpha_add"  # nothing was stored
        await client.call_tool("gateway_add_route", {"pattern": "alpha_w", "match": "prefix",
                                                     "target": "beta", "priority": 9})
        missing = await client.call_tool_mcp("alpha_wipe", {})
        assert missing.is_error
        assert "sends 'alpha_wipe' to server 'beta', which has no tool 'wipe'" in \
            missing.content[0].text
        listed = (await client.call_tool("gateway_list_routes", {})).structured_content
        assert [r["pattern"] for r in listed["routes"]] == ["alpha_w", "alpha_add"]
    gateway = make_gateway(servers, {"alpha": alpha_server(), "beta": beta_server()}, db=db)
    async with Client(gateway.server) as client:  # rules persist
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 1})).data == 1002
        await client.call_tool("gateway_delete_route", {"route_id": route["id"]})
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 1})).data == 2
        audit = (await client.call_tool("gateway_audit", {})).structured_content["entries"]
        assert audit[0]["action"] == "delete_route"
