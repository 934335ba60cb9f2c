"""The admin tools as listed (``admin/listed.py``) are the declared tools (``mcp_tools``).

The gateway lists the ``gateway_*`` tools from ``admin/tools.json`` and builds each
declared tool on its first call.  These tests hold the two together: the file is what
the declarations generate, every definition a host, search or FastMCP can read equals
the declared tool's, and a call (good or bad) is the declared tool's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools import Tool

from fast_mcp_gateway.admin import doc, listed
from fast_mcp_gateway.admin.listed import ListedTool, add_listed_tools, load_specs, mode_allows
from fast_mcp_gateway.admin.mcp_tools import ADMIN_TOOLS, register_admin_tools
from fast_mcp_gateway.admin.scope import guard_admin_tools
from fast_mcp_gateway.config.schema import GatewayOptions
from fast_mcp_gateway.principal import LOCAL
from tests.fixtures import alpha_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio

# What FastMCP, search and hosts read of a tool besides its wire form: every field of
# FastMCP's Tool but the result's Python type, which only the declared tool's run uses.
FIELDS = tuple(name for name in Tool.model_fields if name != "return_type")


def options(mode: str = "full") -> Any:
    return SimpleNamespace(options=GatewayOptions.model_validate({"admin": mode}))


def declared_tools(mode: str = "full") -> list[Tool]:
    built: list[Tool] = []
    register_admin_tools(FastMCP("declared"), options(mode), registered=built.append)
    return built


def listed_tools(mode: str = "full") -> list[Tool]:
    made: list[Tool] = []
    list(add_listed_tools(FastMCP("listed"), options(mode), lambda: LOCAL, made.append,
                          load_specs()))
    return made


def test_tools_json_is_what_the_declarations_generate() -> None:
    assert listed.SPECS.read_text(encoding="utf-8") == doc.specs_text(), (
        "admin/tools.json differs from the admin tools declared in mcp_tools: run "
        "'python -m fast_mcp_gateway.admin.doc'")
    assert [spec["name"] for spec in load_specs()] == [tool.name for tool in ADMIN_TOOLS]


@pytest.mark.parametrize("mode", ["full", "read_only", "off"])
def test_every_listed_tool_is_its_declared_tool_as_shown(mode: str) -> None:
    every = listed_tools(mode)  # all of them, whatever the mode: it decides what is shown
    assert [t.name for t in every] == [tool.name for tool in ADMIN_TOOLS]
    allows = mode_allows(options(mode), load_specs())
    declared, shown = declared_tools(mode), [t for t in every if allows(t.name)]
    assert [t.name for t in shown] == [t.name for t in declared]
    for mine, theirs in zip(shown, declared, strict=True):
        assert isinstance(mine, ListedTool)
        assert {f: getattr(mine, f) for f in FIELDS} == {f: getattr(theirs, f) for f in FIELDS}
        assert mine.to_mcp_tool().model_dump(mode="json", by_alias=True) == \
            theirs.to_mcp_tool().model_dump(mode="json", by_alias=True)
        assert mine.get_span_attributes() == theirs.get_span_attributes()
    if mode == "off":
        assert shown == []
    if mode == "read_only":
        assert 0 < len(shown) < len(every)


@pytest.mark.parametrize("mode", ["full", "read_only", "off"])
async def test_hosts_are_listed_the_same_bytes(mode: str) -> None:
    declared, shown = FastMCP("admin"), FastMCP("admin")
    register_admin_tools(declared, options(mode))
    specs = load_specs()
    list(add_listed_tools(shown, options(mode), lambda: LOCAL, lambda tool: None, specs))
    guard_admin_tools(shown, frozenset(s["name"] for s in specs), lambda: LOCAL,
                      lambda name: True, mode_allows(options(mode), specs))
    async with Client(declared) as a, Client(shown) as b:
        theirs = (await a.list_tools_mcp()).model_dump_json(by_alias=True, exclude_none=True)
        mine = (await b.list_tools_mcp()).model_dump_json(by_alias=True, exclude_none=True)
    assert mine == theirs


def test_equal_schema_parts_are_shared_and_equal_to_the_file(tmp_path: Path) -> None:
    specs = load_specs()
    assert specs == json.loads(listed.SPECS.read_text(encoding="utf-8"))
    assert json.dumps(specs) == json.dumps(json.loads(listed.SPECS.read_bytes()))  # key order
    outputs = {spec["name"]: spec["output_schema"] for spec in specs}
    # ServerStatus is the result of several tools: one object for all of them.
    assert outputs["gateway_enable_server"] is outputs["gateway_disable_server"]
    # Values equal in Python but of another JSON type stay apart (1 == 1.0 == true).
    odd = tmp_path / "odd.json"
    odd.write_text('[{"a": 1, "b": [1]}, {"a": 1.0, "b": [1.0]}, {"a": true, "b": [true]},'
                   ' {"a": 1, "b": [1]}]')
    one, real, true, again = load_specs(odd)
    assert [type(x["a"]) for x in (one, real, true)] == [int, float, bool]
    assert [type(x["b"][0]) for x in (one, real, true)] == [int, float, bool]
    assert again is one and real is not one and true is not one


async def test_a_listed_tool_runs_its_declared_tool_built_on_first_call() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    own = gateway.provider.own
    assert isinstance(own["gateway_list_servers"], ListedTool)
    async with Client(gateway.server) as client:
        assert all(tool._built is None for tool in own.values())  # type: ignore[attr-defined]
        first = await client.call_tool("gateway_list_servers", {})
        assert [s["name"] for s in first.structured_content["servers"]] == ["alpha"]
        built = own["gateway_list_servers"]._built  # type: ignore[attr-defined]
        assert built is not None and built.name == "gateway_list_servers"
        await client.call_tool("gateway_list_servers", {})
        assert own["gateway_list_servers"]._built is built  # type: ignore[attr-defined]
        assert own["gateway_health"]._built is None  # type: ignore[attr-defined]
        # Wrong arguments: the declared tool's plain message, naming them.
        with pytest.raises(ToolError) as wrong:
            await client.call_tool("gateway_calls", {"limit": "many", "colour": 1})
        # A gateway error becomes the declared tool's ToolError.
        with pytest.raises(ToolError, match=r"no server named 'nope' \(known: alpha\)"):
            await client.call_tool("gateway_server_detail", {"name": "nope"})
    declared = FastMCP("declared")
    register_admin_tools(declared, gateway.control)
    async with Client(declared) as client:
        with pytest.raises(ToolError) as theirs:
            await client.call_tool("gateway_calls", {"limit": "many", "colour": 1})
    assert str(wrong.value) == str(theirs.value)
    assert "'limit' must be" in str(wrong.value) and "'colour'" in str(wrong.value)


async def test_a_reload_that_narrows_gateway_admin_refuses_calls_at_once(
        tmp_path: Path) -> None:
    """A reload to ``read_only`` (or ``off``) refuses what it no longer allows on the
    next call, as the REST API does, built yet or not (lists and widening:
    tests/test_admin_mode_reload.py)."""
    config = tmp_path / "servers.yaml"
    entry = json.dumps(memory_entry("alpha"))
    config.write_text(f"gateway: {{admin: full}}\nservers: {{alpha: {entry}}}\n")
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           config=config)
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_list_servers", {})  # built under full
        config.write_text(f"gateway: {{admin: read_only}}\nservers: {{alpha: {entry}}}\n")
        assert (await gateway.control.reload_config()).error is None
        assert gateway.control.options.admin == "read_only"
        with pytest.raises(ToolError, match=r"'gateway_disable_server' is turned off by "
                                            r"'gateway.admin: read_only'"):
            await client.call_tool("gateway_disable_server", {"name": "alpha"})
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3  # not disabled
        assert (await client.call_tool("gateway_list_servers", {})).structured_content
        config.write_text(f"gateway: {{admin: \"off\"}}\nservers: {{alpha: {entry}}}\n")
        assert (await gateway.control.reload_config()).error is None
        with pytest.raises(ToolError, match=r"'gateway_list_servers' is turned off by "
                                            r"'gateway.admin: off'"):
            await client.call_tool("gateway_list_servers", {})
