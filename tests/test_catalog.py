"""The merged catalog through a real client: namespacing and faithful re-export."""

from __future__ import annotations

import json

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio


def two_upstreams(**alpha_extra):
    memory = {"alpha": alpha_server(), "beta": beta_server()}
    servers = {"alpha": memory_entry("alpha", **alpha_extra), "beta": memory_entry("beta")}
    return make_gateway(servers, memory), memory


async def test_everything_is_listed_under_its_namespace() -> None:
    gateway, _ = two_upstreams()
    async with Client(gateway.server) as client:
        tools = {t.name for t in await client.list_tools()}
        assert {"alpha_add", "alpha_wipe", "alpha_media", "beta_add", "beta_echo"} <= tools
        assert {t for t in tools if t.startswith("gateway_")} == gateway.admin_tool_names
        resources = {str(r.uri) for r in await client.list_resources()}
        assert {"data://alpha/config", "urn:alpha/alpha:settings", "urn:beta/alpha:settings",
                "bin://alpha/blob"} == resources
        templates = {t.uri_template for t in await client.list_resource_templates()}
        assert templates == {"data://alpha/items/{item_id}"}
        prompts = {p.name for p in await client.list_prompts()}
        assert prompts == {"alpha_greet", "beta_greet"}


async def test_descriptions_schemas_annotations_and_meta_are_kept() -> None:
    gateway, memory = two_upstreams()
    async with Client(memory["alpha"]) as direct, Client(gateway.server) as client:
        upstream = {t.name: t for t in await direct.list_tools()}
        exposed = {t.name: t for t in await client.list_tools()}
    for name in ("add", "wipe", "media", "progress"):
        up, ex = upstream[name], exposed[f"alpha_{name}"]
        assert ex.description == up.description
        assert ex.title == up.title
        assert ex.input_schema == up.input_schema
        assert ex.output_schema == up.output_schema
        assert ex.annotations == up.annotations
    assert exposed["alpha_add"].title == "Add numbers"
    assert exposed["alpha_add"].annotations.read_only_hint is True
    assert exposed["alpha_wipe"].annotations.destructive_hint is True
    assert exposed["alpha_add"].meta["team"] == "a"


async def test_every_content_kind_is_relayed_as_sent() -> None:
    gateway, memory = two_upstreams()
    async with Client(memory["alpha"]) as direct, Client(gateway.server) as client:
        want = await direct.call_tool_mcp("media", {})
        got = await client.call_tool_mcp("alpha_media", {})
    # As sent, except that resource URIs are in the form the host can read back.
    assert want.content[3].resource.uri == "data://x"
    want.content[3].resource.uri = "data://alpha/x"
    assert got.content == want.content
    assert got.structured_content == want.structured_content == {"ok": True, "n": 4}
    assert got.meta["origin"] == "alpha"
    assert not got.is_error


async def test_routing_uses_the_right_upstream() -> None:
    gateway, _ = two_upstreams()
    async with Client(gateway.server) as client:
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        assert (await client.call_tool("beta_add", {"a": 1, "b": 2})).data == 1003


async def test_upstream_errors_reach_the_host_and_the_session_stays_up() -> None:
    gateway, _ = two_upstreams()
    async with Client(gateway.server) as client:
        result = await client.call_tool_mcp("alpha_fail", {"message": "disk is full"})
        assert result.is_error
        assert result.content[0].text == "disk is full"
        bad_args = await client.call_tool_mcp("alpha_add", {"a": "not a number", "b": 1})
        assert bad_args.is_error and "a" in bad_args.content[0].text
        assert (await client.call_tool("alpha_add", {"a": 2, "b": 2})).data == 4
        with pytest.raises(ToolError, match="Unknown tool"):
            await client.call_tool("alpha_nope", {})


async def test_resources_templates_and_prompts_round_trip() -> None:
    gateway, _ = two_upstreams()
    async with Client(gateway.server) as client:
        (config,) = await client.read_resource("data://alpha/config")
        assert json.loads(config.text) == {"name": "alpha"}
        assert config.mime_type == "application/json"
        assert (await client.read_resource("urn:alpha/alpha:settings"))[0].text == "urn-alpha"
        assert (await client.read_resource("urn:beta/alpha:settings"))[0].text == "urn-beta"
        assert (await client.read_resource("data://alpha/items/42"))[0].text == "item-42"
        (blob,) = await client.read_resource("bin://alpha/blob")
        assert blob.blob == "AAEC"
        prompt = await client.get_prompt("alpha_greet", {"name": "Ada", "mood": "curious"})
        assert prompt.messages[0].content.text == "Hello Ada, you seem curious"
        listed = {p.name: p for p in await client.list_prompts()}
        args = {a.name: a.required for a in listed["alpha_greet"].arguments}
        assert args == {"name": True, "mood": False}
        with pytest.raises(MCPError) as missing:
            await client.read_resource("data://alpha/missing")
        # The upstream's error as it came, naming the URI the host read, not the
        # upstream's own (data://missing), which the host could not resolve.
        assert "data://alpha/missing" in missing.value.error.message
        assert "'data://missing'" not in missing.value.error.message


async def test_unprefixed_servers_collide_deterministically_and_both_stay_callable() -> None:
    memory = {"alpha": alpha_server(), "beta": beta_server()}
    servers = {"alpha": memory_entry("alpha", namespace=""),
               "beta": memory_entry("beta", namespace="")}
    gateway = make_gateway(servers, memory)
    async with Client(gateway.server) as client:
        tools = {t.name for t in await client.list_tools()}
        assert "add" in tools and "echo" in tools
        (beta_add,) = [t for t in tools if t.startswith("add_")]
        assert (await client.call_tool("add", {"a": 1, "b": 1})).data == 2
        assert (await client.call_tool(beta_add, {"a": 1, "b": 1})).data == 1002
        uris = {str(r.uri) for r in await client.list_resources()}
        assert {"urn:alpha:settings", "urn:beta/alpha:settings"} <= uris
        detail = await client.call_tool("gateway_server_detail", {"name": "beta"})
        renamed = [e for e in detail.structured_content["exposed"] if e["renamed_because"]]
        assert {e["original"] for e in renamed} == {"add", "greet", "urn:alpha:settings"}
