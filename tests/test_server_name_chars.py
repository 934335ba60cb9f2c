"""A server added at runtime is named in letters, digits, '-' and '_' (the dashboard's
hint), on every surface that adds one: gateway_add_server, REST and the dashboard's form.
``bad name!`` was accepted by all three (its tools then began ``bad_name__``, its name
in no tool).  A config file's key, and an import's (a Claude Desktop "My Server"), is
taken as written, as before: its tools begin with ``My_Server``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import load_config
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_rest import OPS, serving

pytestmark = pytest.mark.anyio

SAID = ("a server name may contain only letters (A-Z, a-z), digits, '-' and '_' (its "
        "tools' names begin with it, and hosts such as Claude Desktop take no other "
        "characters in a tool's name); it holds a space, '!': choose another name, e.g. "
        "'bad_name'")


async def test_gateway_add_server_refuses_a_name_hosts_cannot_carry(tmp_path: Path) -> None:
    gateway = make_gateway({}, {"alpha": alpha_server()}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("gateway_add_server", {"name": "bad name!",
                                                          "config": memory_entry("alpha")})
        assert SAID in str(caught.value), caught.value
        listed = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert listed["servers"] == []
        added = await client.call_tool("gateway_add_server", {"name": "good_name-2",
                                                              "config": memory_entry("alpha")})
        assert added.structured_content["added"] == ["good_name-2"]
        # An import takes a file's keys as a config file does (a Claude Desktop one).
        content = json.dumps({"mcpServers": {"My Server": {"command": "x"}}})
        claude = tmp_path / "claude_desktop_config.json"
        claude.write_text(content)
        assert list(load_config(claude).servers) == ["My Server"]
        content = json.dumps({"servers": {"My Server": memory_entry("alpha")}})
        imported = await client.call_tool("gateway_import_servers", {"content": content})
        assert imported.structured_content["added"] == ["My Server"], json.dumps(
            imported.structured_content)
        tools = {t.name for t in await client.list_tools()}
        assert any(name.startswith("My_Server_") for name in tools), tools


async def test_rest_refuses_a_name_hosts_cannot_carry(tmp_path: Path) -> None:
    async with serving(tmp_path, {}) as (api, _base):
        refused = await api("POST", "/servers", OPS,
                            json={"name": "bad name!", "config": memory_entry("alpha")})
        assert refused.status_code == 422, refused.text
        assert SAID in refused.json()["error"]["message"]
        assert (await api("GET", "/servers", OPS)).json()["servers"] == []


async def test_the_dashboards_form_refuses_a_name_hosts_cannot_carry(tmp_path: Path) -> None:
    gateway = make_gateway({}, db=tmp_path / "g.db", allow_unauthenticated_admin=True)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        form = await http.get(base + "/ui/add")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        # The browser's own check (the input's pattern) says the same characters.
        assert 'pattern="[A-Za-z0-9_\\-]+"' in form.text
        refused = await http.post(base + "/ui/add", data={
            "csrf_token": csrf.group(1), "name": "bad name!", "kind": "stdio",
            "command": "true", "enabled": "on"})
        assert refused.status_code == 422
        assert SAID.replace("'", "&#39;") in refused.text, refused.text[-3000:]
        assert list(gateway.manager.services) == []
