"""Search exposure and the gateway's own tools: the gateway_* admin tools are behind
search too (found by callers with scope admin, called through call_tool, listed only if
pinned); the meta-tools answer only where the caller's mode offers them; cards keep
their first sentence whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.admin.lean import lean_output_schema, lean_schema
from fast_mcp_gateway.admin.mcp_tools import ADMIN_TOOLS, admin_kind
from fast_mcp_gateway.routing.search import first_sentence
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry
from tests.test_lane import raw_host, write_config
from tests.test_mcp_auth import ALICE, OPS, TOKENS, ready, serving

pytestmark = pytest.mark.anyio

META = ["search_tools", "call_tool", "call_tools"]


@pytest.mark.parametrize(("text", "sentence"), [
    ("The current time in an IANA time zone, e.g. Europe/Paris. Returns an ISO string.",
     "The current time in an IANA time zone, e.g. Europe/Paris."),
    ("Read files, i.e. text. Binary is refused.", "Read files, i.e. text."),
    ("Compare a vs. b, then report. More.", "Compare a vs. b, then report."),
    ("Greets J. Smith politely. Twice.", "Greets J. Smith politely."),
    ("Version 1.2 is out. Next.", "Version 1.2 is out."),
    ("One. Two.", "One."),
    ("Stop! Now.", "Stop!"),
    ("line one\nLine two", "line one"),
    ("Drop every session and\n    connect again. Returns the status.",
     "Drop every session and connect again."),
    ("No end mark", "No end mark"),
])
def test_first_sentence_is_not_cut_at_abbreviations(text: str, sentence: str) -> None:
    assert first_sentence(text) == sentence


def test_lean_schema_says_the_same_in_fewer_bytes() -> None:
    schema = {"type": "object", "required": ["e"], "properties": {
        "a": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None,
              "description": "maybe text"},
        "b": {"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]},
        "c": {"anyOf": [{"type": "string", "enum": ["x"]}, {"type": "null"}],
              "default": None},
        "d": {"type": "integer", "default": 5},
        "e": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}
    assert lean_schema(schema) == {"type": "object", "required": ["e"], "properties": {
        "a": {"type": "string", "description": "maybe text"},  # absent means null
        "b": {"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]},   # no default: stays
        "c": {"type": "string", "enum": ["x"]},
        "d": {"type": "integer", "default": 5},
        "e": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}   # required: null kept
    # Results: a field that may be null says so in the portable form.
    assert lean_output_schema(schema)["properties"]["a"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}], "description": "maybe text"}


def _no_type_arrays(schema: Any, path: str = "") -> list[str]:
    if isinstance(schema, list):
        return [p for i, item in enumerate(schema) for p in _no_type_arrays(item, f"{path}[{i}]")]
    if not isinstance(schema, dict):
        return []
    here = [path] if isinstance(schema.get("type"), list) else []
    return here + [p for k, v in schema.items() for p in _no_type_arrays(v, f"{path}.{k}")]


async def test_admin_tool_schemas_keep_one_type_per_property() -> None:
    """The MCP Inspector's strict check warned about every ``type: [X, "null"]``."""
    gateway = _two("all")
    async with Client(gateway.server) as client:
        tools = [t for t in await client.list_tools() if t.name.startswith("gateway_")]
    assert len(tools) > 20
    found = [f"{t.name}{p}" for t in tools
             for p in _no_type_arrays(t.inputSchema, ".in") + _no_type_arrays(
                 t.outputSchema, ".out")]
    assert found == []


def _two(mode: str, **options: Any) -> Any:
    return make_gateway({"alpha": memory_entry("alpha"), "beta": memory_entry("beta")},
                        {"alpha": alpha_server(), "beta": beta_server()},
                        options={"exposure": mode, **options})


async def test_admin_tools_are_behind_search_unless_pinned() -> None:
    gateway = _two("search", search={"pinned": ["beta_echo", "gateway_health"]})
    async with Client(gateway.server) as client:
        names = [t.name for t in await client.list_tools()]
        assert sorted(names) == sorted([*META, "beta_echo", "gateway_health"])
        found = (await client.call_tool("search_tools", {
            "query": "list the upstream servers", "server": "gateway"})).structured_content
        cards = {c["name"]: c for c in found["tools"]}
        assert "gateway_list_servers" in cards
        assert {c["server"] for c in found["tools"]} == {"gateway"}
        assert cards["gateway_list_servers"]["inputSchema"]["type"] == "object"
        # Without a server filter the admin tools rank among the upstream ones.
        mixed = (await client.call_tool("search_tools", {"query": "add two numbers",
                                                         "k": 20})).structured_content
        assert mixed["tools"][0]["name"] == "alpha_add"
        listed = (await client.call_tool("call_tool", {"name": "gateway_list_servers"})
                  ).structured_content
        assert {s["name"] for s in listed["servers"]} == {"alpha", "beta"}
        batch = (await client.call_tool("call_tools", {"calls": [
            {"name": "gateway_server_detail", "arguments": {"name": "alpha"}},
            {"name": "gateway_server_detail", "arguments": {"name": "nope"}},
            {"name": "gateway_server_detail", "arguments": {"stderr_lines": "x"}},
            {"name": "alpha_add", "arguments": {"a": 1, "b": 2}},
        ]})).structured_content["results"]
        assert [r["isError"] for r in batch] == [False, True, True, False]
        assert batch[0]["structuredContent"]["name"] == "alpha"
        assert "nope" in batch[1]["error"]
        assert "invalid arguments for 'gateway_server_detail'" in batch[2]["error"]
        # A host that remembers an admin tool's name still calls it directly.
        assert (await client.call_tool("gateway_list_servers", {})).structured_content
    async with Client(_two("all").server) as client:  # all: every admin tool listed
        names = {t.name for t in await client.list_tools()}
    assert {t.name for t in ADMIN_TOOLS} <= names and not set(META) & names


async def test_read_only_admin_finds_and_calls_only_the_read_only_tools() -> None:
    gateway = _two("search", admin="read_only")
    mutating = {t.name for t in ADMIN_TOOLS if admin_kind(t) == "mutate"}
    async with Client(gateway.server) as client:
        found = (await client.call_tool("search_tools", {
            "query": "add register remove update server route config", "server": "gateway",
            "k": 20})).structured_content["tools"]
        assert found and not {c["name"] for c in found} & mutating
        # Not found, yet called by name: the mode's refusal, as on a direct call.
        with pytest.raises(ToolError, match=r"'gateway_add_server' is turned off by "
                                            r"'gateway.admin: read_only'"):
            await client.call_tool("call_tool", {"name": "gateway_add_server", "arguments": {
                "name": "x", "config": {"command": "true"}}})
        assert (await client.call_tool("call_tool", {"name": "gateway_health"})
                ).structured_content is not None
    async with Client(_two("search", admin="off").server) as client:
        found = (await client.call_tool("search_tools", {
            "query": "health servers", "server": "gateway"})).structured_content["tools"]
        assert found == []
        assert [t.name for t in await client.list_tools()] == META


def _http(base: str) -> Any:
    return make_gateway(
        {"alpha": memory_entry("alpha"), "notes": memory_entry("notes")},
        {"alpha": alpha_server(), "notes": beta_server()},
        options={"auth": {"tokens": TOKENS}, "profiles": {"finder": {"exposure": "search"}},
                 "search": {"pinned": ["gateway_health"]}}, public_url=base)


async def test_over_http_only_admins_find_and_call_admin_tools_and_meta_tools_follow_the_mode(
        ) -> None:
    async with serving(_http) as (gateway, base):
        await ready(gateway, "alpha", "notes")
        query = {"query": "list servers health", "server": "gateway", "k": 20}
        async with Client(f"{base}/mcp/p/finder", auth=OPS) as ops:
            names = [t.name for t in await ops.list_tools()]
            assert sorted(names) == sorted([*META, "gateway_health"])
            cards = (await ops.call_tool("search_tools", query)).structured_content["tools"]
            assert "gateway_list_servers" in {c["name"] for c in cards}
            listed = (await ops.call_tool("call_tool", {"name": "gateway_list_servers"})
                      ).structured_content
            assert {s["name"] for s in listed["servers"]} == {"alpha", "notes"}
        async with Client(f"{base}/mcp/p/finder", auth=ALICE) as alice:
            assert sorted(t.name for t in await alice.list_tools()) == sorted(META)
            cards = (await alice.call_tool("search_tools", query)).structured_content["tools"]
            assert cards == []
            mine = (await alice.call_tool("search_tools", {"query": "echo text"})
                    ).structured_content["tools"]
            assert {c["server"] for c in mine} == {"notes"}
            with pytest.raises(ToolError, match="requires scope 'admin'"):
                await alice.call_tool("call_tool", {"name": "gateway_list_servers"})
        # /mcp is exposure all: no meta-tool answers there, although a profile has them.
        async with Client(f"{base}/mcp", auth=OPS) as everything:
            names = [t.name for t in await everything.list_tools()]
            assert "gateway_list_servers" in names and not set(META) & set(names)
            for name in META:
                with pytest.raises(ToolError, match=f"Unknown tool: '{name}'"):
                    await everything.call_tool(name, {"query": "x", "name": "alpha_add",
                                                      "calls": []})


@pytest.mark.parametrize("lane", [True, False])
async def test_stdio_meta_tools_only_in_search_mode_and_admin_behind_search(
        tmp_path: Path, lane: bool) -> None:
    base = write_config(tmp_path).read_text()
    every = tmp_path / "all.yaml"
    every.write_text("gateway:\n  profiles: {finder: {exposure: search}}\n" + base)
    async with raw_host(every, "legacy", lane=lane) as host:
        for name in META:
            reply = await host.request("tools/call", {"name": name, "arguments": {
                "query": "echo", "name": "up_echo", "calls": []}})
            assert f"Unknown tool: '{name}'" in json.dumps(reply), reply
    searching = tmp_path / "search.yaml"
    searching.write_text("gateway:\n  exposure: search\n  search: {pinned: [up_whoami]}\n"
                         + base)
    async with raw_host(searching, "legacy", lane=lane) as host:
        tools = [t["name"] for t in (await host.request("tools/list"))["result"]["tools"]]
        assert tools == [*META, "up_whoami"]
        found = await host.call("search_tools", {"query": "gateway health of servers",
                                                 "server": "gateway"})
        cards = json.loads(found["content"][0]["text"])["tools"]
        assert "gateway_health" in {c["name"] for c in cards}
        health = await host.call("call_tool", {"name": "gateway_health"})
        assert health["isError"] is False
        assert "up" in json.dumps(health["structuredContent"])


def test_the_benchmark_catalog_is_real_and_search_finds_its_tools() -> None:
    """The recorded catalog (benchmarks/data/real_catalog.json) is as large as the issue
    asks, its queries name tools it has, and BM25 alone (no gateway) meets the target."""
    from benchmarks import catalog

    from fast_mcp_gateway.routing.search import SearchDoc, SearchIndex

    data = json.loads(catalog.DATA.read_text())
    servers = data["servers"]
    assert len(servers) >= catalog.MIN_SERVERS
    assert sum(len(s["tools"]) for s in servers) >= catalog.MIN_TOOLS
    assert all(s["package"] and s["version"] and s["tools"] for s in servers)
    catalog.check_queries(catalog.DATA)
    index = SearchIndex(SearchDoc(f"{s['name']}_{t['name']}", s["name"], t.get("title"),
                                  t.get("description"), t["inputSchema"])
                        for s in servers for t in s["tools"])
    found = [any(d.name in relevant for d, _ in index.search(query, 5))
             for query, relevant in catalog.QUERIES]
    assert sum(found) / len(found) >= 0.9
