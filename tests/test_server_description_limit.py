"""A server's ``description`` has a length limit (``MAX_DESCRIPTION``) wherever a config
enters: servers.yaml, a Claude-Desktop mcpServers file, gateway_add_server,
gateway_update_server, gateway_import_servers, REST and the dashboard.  A 900 kB
description was accepted everywhere and came back whole in every admin listing.  The
refusal names the field, the limit and the size (never the text).  A registration stored
before the limit keeps running with its description cut to the limit, with a warning at
start naming the server, both sizes and how to give it a shorter one."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import load_config
from fast_mcp_gateway.config.schema import MAX_DESCRIPTION
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.store import SQLiteStore
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_rest import OPS, serving

pytestmark = pytest.mark.anyio

HUGE = "d" * 900_000
AT_LIMIT = "m" * MAX_DESCRIPTION
TOO_LONG = f"is 900000 characters long; at most {MAX_DESCRIPTION} are accepted"


def _refusal(text: str) -> None:
    assert "'description'" in text and TOO_LONG in text, text[:2000]
    assert "d" * 100 not in text, "the refusal quotes the description"


async def test_config_files_refuse_an_overlong_description(tmp_path: Path) -> None:
    assert 1024 <= MAX_DESCRIPTION <= 16_384  # a few kB: a description, not a document
    ours = tmp_path / "servers.yaml"
    ours.write_text(json.dumps({"servers": {"a": memory_entry("a", description=HUGE)}}))
    claude = tmp_path / "claude_desktop_config.json"
    claude.write_text(json.dumps({"mcpServers": {"a": {"command": "x", "description": HUGE}}}))
    for path in (ours, claude):
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        _refusal(str(caught.value))
        assert "server 'a', field 'description'" in str(caught.value)
    ours.write_text(json.dumps({"servers": {"a": memory_entry("a", description=AT_LIMIT)}}))
    assert load_config(ours).servers["a"].description == AT_LIMIT


async def test_admin_tools_refuse_an_overlong_description(tmp_path: Path) -> None:
    gateway = make_gateway({}, {"alpha": alpha_server()}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("gateway_add_server", {
                "name": "a", "config": memory_entry("alpha", description=HUGE)})
        _refusal(str(caught.value))
        with pytest.raises(ToolError) as caught:
            await client.call_tool("gateway_import_servers", {"content": json.dumps(
                {"servers": {"a": memory_entry("alpha", description=HUGE)}})})
        _refusal(str(caught.value))
        listed = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert listed["servers"] == []
        await client.call_tool("gateway_add_server", {
            "name": "a", "config": memory_entry("alpha", description=AT_LIMIT)})
        with pytest.raises(ToolError) as caught:
            await client.call_tool("gateway_update_server", {
                "name": "a", "config": memory_entry("alpha", description=HUGE)})
        _refusal(str(caught.value))
        listed = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert [s["description"] for s in listed["servers"]] == [AT_LIMIT]


async def test_rest_refuses_an_overlong_description(tmp_path: Path) -> None:
    async with serving(tmp_path, {}) as (api, _base):
        refused = await api("POST", "/servers", OPS,
                            json={"name": "a", "config": memory_entry("alpha", description=HUGE)})
        assert refused.status_code == 422, refused.text[:2000]
        _refusal(refused.json()["error"]["message"])
        assert (await api("GET", "/servers", OPS)).json()["servers"] == []


async def test_the_dashboard_refuses_an_overlong_description(tmp_path: Path) -> None:
    gateway = make_gateway({}, db=tmp_path / "g.db", allow_unauthenticated_admin=True)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(base + "/ui/add")
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        refused = await http.post(base + "/ui/add", data={
            "csrf_token": found.group(1), "name": "a", "kind": "stdio", "command": "true",
            "description": HUGE, "replicas": "1", "enabled": "on"})
        assert refused.status_code == 422, refused.text[:2000]
        error = re.search(r'id="err-description"[^>]*>([^<]*)<', refused.text)
        assert error, refused.text[:3000]
        assert TOO_LONG in error.group(1), error.group(1)
        assert gateway.manager.services == {}


async def test_a_stored_overlong_description_is_cut_and_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "g.db"
    store = await SQLiteStore.open(db)  # as a gateway before the limit kept it
    try:
        await store.put_server("a", memory_entry("alpha", description=HUGE), True)
        await store.put_server("b", memory_entry("alpha", description="short"), True)
    finally:
        await store.close()
    caplog.set_level(logging.WARNING, "fast_mcp_gateway")
    gateway = make_gateway({}, {"alpha": alpha_server()}, db=db)
    async with Client(gateway.server) as client:
        listed = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert [(s["name"], s["state"], s["description"]) for s in listed["servers"]] == [
            ("a", "ready", HUGE[:MAX_DESCRIPTION]), ("b", "ready", "short")]
        await client.call_tool("gateway_update_server", {  # the way out
            "name": "a", "config": memory_entry("alpha", description="shorter")})
    warnings = [r.getMessage() for r in caplog.records if "descriptions were" in r.getMessage()]
    assert len(warnings) == 1, caplog.text[:3000]
    assert ("server 'a'" in warnings[0] and "900000 characters" in warnings[0]
            and f"first {MAX_DESCRIPTION}" in warnings[0]
            and "gateway_update_server" in warnings[0]), warnings[0]
    assert "d" * 100 not in caplog.text
