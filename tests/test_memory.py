"""What the gateway keeps in memory, and what it makes only on demand.

* The FastMCP component of an upstream tool (a pydantic model, ~2 KB) is made when
  FastMCP needs one: a lookup (a call, ``call_tool`` in search mode) keeps it, a list
  through FastMCP makes them for that list only.  Lists, calls and aliases answer
  exactly as before.
* FastMCP's session-state store (``key_value`` + ``beartype``: ~4.6 MB) is made on its
  first write; reads before that (every list reads the session's visibility rules)
  answer "nothing stored", and state and session visibility still work.
* Equal upstream schemas and ``_meta`` (and equal parts of them) are one object
  (``SchemaPool``).
"""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
from fastmcp import Client, Context, FastMCP

from fast_mcp_gateway import Gateway, _compat
from fast_mcp_gateway.front.components import GatewayTool
from fast_mcp_gateway.upstream.sharing import SchemaPool
from tests.fixtures import alpha_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio


def components_alive(gateway: Gateway) -> list[str]:
    """The names of ``gateway``'s tool components that are still alive."""
    gc.collect()
    pipeline = gateway.provider.pipeline
    return sorted(o.name for o in gc.get_objects()
                  if isinstance(o, GatewayTool) and o._upstream_tool.pipeline is pipeline)


async def test_tool_components_are_made_when_fastmcp_needs_one() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with Client(gateway.server) as client:
        listed = {t.name: t for t in await client.list_tools()}
        assert {"alpha_add", "alpha_wipe", "alpha_fail"} <= set(listed)
        # The list's components were made for it, not kept.
        assert components_alive(gateway) == []
        # What the list says is the upstream's item under its exposed name.
        add = listed["alpha_add"]
        assert add.title == "Add numbers" and (add.meta or {}).get("team") == "a"
        assert add.annotations is not None and add.annotations.read_only_hint is True
        assert (await client.call_tool("alpha_add", {"a": 2, "b": 3})).data == 5
        assert components_alive(gateway) == ["alpha_add"]   # a lookup keeps its component
        # The seed-style alias reaches the same tool (and its kept component).
        assert (await client.call_tool("alpha:add", {"a": 1, "b": 1})).data == 2
        assert components_alive(gateway) == ["alpha_add"]
        # A second list is the same list (a looked-up component is reused in it).
        again = {t.name: t for t in await client.list_tools()}
        assert again == listed
        assert components_alive(gateway) == ["alpha_add"]


async def test_search_mode_calls_and_pins_without_components() -> None:
    gateway = make_gateway(
        {"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
        options={"exposure": "search", "search": {"pinned": ["alpha_wipe"]}})
    async with Client(gateway.server) as client:
        names = {t.name for t in await client.list_tools()}
        assert "alpha_wipe" in names and "alpha_add" not in names
        assert {"search_tools", "call_tool"} <= names
        found = await client.call_tool("search_tools", {"query": "add two ints"})
        assert "alpha_add" in str(found.structured_content)
        result = await client.call_tool("call_tool", {"name": "alpha_add",
                                                      "arguments": {"a": 4, "b": 5}})
        assert "9" in str(result.content[0])
        assert components_alive(gateway) == ["alpha_add"]


async def test_state_store_is_made_on_the_first_write() -> None:
    server = _compat.PreferredToolServer("x")

    @server.tool
    def ping() -> str:
        return "pong"

    @server.tool
    async def remember(ctx: Context, value: str) -> str:
        await ctx.set_state("k", value)
        return "ok"

    @server.tool
    async def recall(ctx: Context) -> str:
        return str(await ctx.get_state("k"))

    async with Client(server, mode="legacy") as client:
        await client.list_tools()   # reads the session's visibility rules
        assert (await client.call_tool("recall", {})).data == "None"
        assert (await client.call_tool("ping", {})).data == "pong"
        assert not server.state_made
        await client.call_tool("remember", {"value": "v1"})
        assert server.state_made
        assert (await client.call_tool("recall", {})).data == "v1"


async def test_session_visibility_still_works() -> None:
    server = _compat.PreferredToolServer("x")

    @server.tool
    def other() -> str:
        return "other"

    @server.tool
    async def hide(ctx: Context) -> str:
        await ctx.disable_components(names={"other"})
        return "hidden"

    async with Client(server, mode="legacy") as client:
        assert "other" in {t.name for t in await client.list_tools()}
        await client.call_tool("hide", {})
        names: set[Any] = {t.name for t in await client.list_tools()}
        assert "other" not in names and "hide" in names


def test_schema_pool_shares_equal_json_only() -> None:
    pool = SchemaPool()
    first = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"},
                                              "t": {"const": True}, "one": {"const": 1}},
             "required": ["a"]}
    second = json.loads(json.dumps(first))
    shared = pool.share(first)
    assert pool.share(second) is shared and shared == second
    props = shared["properties"]
    assert props["a"] is props["b"]                  # equal sub-trees: one object
    assert props["t"] == {"const": True} and props["one"] == {"const": 1}  # True is not 1
    reordered = {"required": ["a"], "type": "object", "properties": second["properties"]}
    kept = pool.share(reordered)
    assert kept is not shared and list(kept) == ["required", "type", "properties"]
    assert kept["properties"] is props                # its equal part is shared still
    assert pool.share({"x": [1, 2]})["x"] == [1, 2]
    assert pool.share({"x": [1.0, 2]})["x"] == [1.0, 2]
    assert isinstance(pool.share({"x": [1.0]})["x"][0], float)


def test_schema_pool_keeps_a_negative_zero() -> None:
    """``0.0 == -0.0`` (and their hashes): one tool's ``"minimum": -0.0`` was listed
    as another's ``0.0``, the bytes of the upstream's schema changed."""
    pool = SchemaPool()
    assert pool.share({"minimum": 0.0}) == {"minimum": 0.0}
    assert json.dumps(pool.share({"minimum": -0.0})) == '{"minimum": -0.0}'
    assert json.dumps(pool.share({"enum": [0.0, -0.0]})) == '{"enum": [0.0, -0.0]}'


async def test_equal_schemas_of_one_server_are_one_object() -> None:
    twins = FastMCP("twins")

    @twins.tool
    def first(text: str) -> str:
        return text

    @twins.tool
    def second(text: str) -> str:
        return text.upper()

    gateway = make_gateway({"tw": memory_entry("tw")}, {"tw": twins})
    async with Client(gateway.server) as client:
        assert {"tw_first", "tw_second"} <= {t.name for t in await client.list_tools()}
        tools = gateway.manager.view.tools
        one, two = tools["tw_first"][1], tools["tw_second"][1]
        assert one.input_schema is two.input_schema
        assert one.input_schema["properties"]["text"] == {"type": "string"}
        assert one.meta is two.meta and one.meta == {"fastmcp": {"tags": []}}  # _meta too
        assert (await client.call_tool("tw_second", {"text": "hi"})).data == "HI"
