"""Server names have a length limit (``MAX_SERVER_NAME``, 64) wherever a name enters:
servers.yaml, a Claude-Desktop mcpServers file, gateway_add_server, REST and
gateway_import_servers.  A 5000-character name was accepted everywhere (its tools then
got names of its head and a hash).  A registration stored before the limit keeps running,
with a warning at start naming its length, the limit and how to rename it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import load_config
from fast_mcp_gateway.config.names import MAX_SERVER_NAME
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.store import SQLiteStore
from tests.fixtures import alpha_server, make_gateway, memory_entry
from tests.test_rest import OPS, serving

pytestmark = pytest.mark.anyio

LONG = "s" * 5000
AT_LIMIT = "m" * MAX_SERVER_NAME
TOO_LONG = "the name is 5000 characters long; a server name has at most 64"


def _refusal_is_short(text: str) -> None:
    assert TOO_LONG in text and "choose a shorter name" in text, text
    assert LONG not in text and f"'{'s' * 40}... (5000 characters)'" in text, text


async def test_config_files_refuse_an_overlong_name(tmp_path: Path) -> None:
    ours = tmp_path / "servers.yaml"
    ours.write_text(json.dumps({"servers": {LONG: memory_entry("a"),
                                            AT_LIMIT: memory_entry("b")}}))
    claude = tmp_path / "claude_desktop_config.json"
    claude.write_text(json.dumps({"mcpServers": {LONG: {"command": "x"}}}))
    for path in (ours, claude):
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        _refusal_is_short(str(caught.value))
        assert "(rename its key)" in str(caught.value) and AT_LIMIT not in str(caught.value)
    ours.write_text(json.dumps({"servers": {AT_LIMIT: memory_entry("b")}}))
    assert list(load_config(ours).servers) == [AT_LIMIT]


async def test_runtime_adds_and_imports_refuse_an_overlong_name(tmp_path: Path) -> None:
    gateway = make_gateway({}, {"alpha": alpha_server()}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("gateway_add_server", {"name": LONG,
                                                          "config": memory_entry("alpha")})
        _refusal_is_short(str(caught.value))
        for content in (json.dumps({"mcpServers": {LONG: {"command": "x"}}}),
                        json.dumps({"servers": {LONG: memory_entry("alpha")}})):
            with pytest.raises(ToolError) as caught:
                await client.call_tool("gateway_import_servers", {"content": content})
            _refusal_is_short(str(caught.value))
        listed = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert listed["servers"] == []
        added = await client.call_tool("gateway_add_server", {"name": AT_LIMIT,
                                                              "config": memory_entry("alpha")})
        assert added.structured_content["added"] == [AT_LIMIT]


async def test_rest_refuses_an_overlong_name(tmp_path: Path) -> None:
    async with serving(tmp_path, {}) as (api, _base):
        refused = await api("POST", "/servers", OPS,
                            json={"name": LONG, "config": memory_entry("alpha")})
        assert refused.status_code == 422, refused.text
        _refusal_is_short(refused.json()["error"]["message"])
        assert (await api("GET", "/servers", OPS)).json()["servers"] == []


async def test_a_stored_overlong_registration_runs_and_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "g.db"

    async def store_it() -> None:  # as a gateway before the limit kept it
        store = await SQLiteStore.open(db)
        try:
            await store.put_server(LONG, memory_entry("alpha"), True)
        finally:
            await store.close()

    await store_it()
    caplog.set_level(logging.WARNING, "fast_mcp_gateway")
    gateway = make_gateway({}, {"alpha": alpha_server()}, db=db)
    async with Client(gateway.server) as client:
        listed = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert [(s["name"], s["state"]) for s in listed["servers"]] == [(LONG, "ready")]
        await client.call_tool("gateway_remove_server", {"name": LONG})  # the way out
    warnings = [r.getMessage() for r in caplog.records if "before names were" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    _refusal_is_short(warnings[0])
    assert "runs as before" in warnings[0] and "gateway_remove_server" in warnings[0]
    with anyio.fail_after(30):
        store = await SQLiteStore.open(db)
        try:
            assert await store.servers() == []
        finally:
            await store.close()


NS_TOO_LONG = "the namespace is 5000 characters long; a namespace has at most 64"


def _namespace_refusal(text: str) -> None:
    assert NS_TOO_LONG in text and "choose a shorter namespace" in text, text
    assert "field 'namespace'" in text and LONG not in text, text


async def test_a_namespace_has_the_names_limit_wherever_a_config_enters(tmp_path: Path) -> None:
    """``namespace:`` begins each tool name in the server name's stead: it had no limit
    (``"x" * 5000`` was accepted, every tool became a cut-down prefix plus a hash)."""
    ours = tmp_path / "servers.yaml"
    ours.write_text(json.dumps({"servers": {"a": memory_entry("a", namespace=LONG)}}))
    with pytest.raises(ConfigError) as caught:
        load_config(ours)
    _namespace_refusal(str(caught.value))
    ours.write_text(json.dumps({"servers": {"a": memory_entry("a", namespace=AT_LIMIT)}}))
    assert load_config(ours).servers["a"].namespace == AT_LIMIT

    gateway = make_gateway({}, {"alpha": alpha_server()}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        overlong = memory_entry("alpha", namespace=LONG)
        with pytest.raises(ToolError) as caught:
            await client.call_tool("gateway_add_server", {"name": "a", "config": overlong})
        _namespace_refusal(str(caught.value))
        with pytest.raises(ToolError) as caught:
            await client.call_tool("gateway_import_servers", {
                "content": json.dumps({"servers": {"a": overlong}})})
        _namespace_refusal(str(caught.value))
        await client.call_tool("gateway_add_server", {"name": "a",
                                                      "config": memory_entry("alpha")})
        with pytest.raises(ToolError) as caught:
            await client.call_tool("gateway_update_server", {"name": "a", "config": overlong})
        _namespace_refusal(str(caught.value))
        detail = (await client.call_tool("gateway_server_detail", {"name": "a"})).data
        assert detail.namespace == "a"


async def test_rest_refuses_an_overlong_namespace(tmp_path: Path) -> None:
    async with serving(tmp_path, {}) as (api, _base):
        refused = await api("POST", "/servers", OPS, json={
            "name": "a", "config": memory_entry("alpha", namespace=LONG)})
        assert refused.status_code == 422, refused.text
        _namespace_refusal(refused.json()["error"]["message"])
