"""An admin token restricted to some servers (``servers: [...]``) over MCP: the
``gateway_*`` tools let it change only its own servers, as REST and the dashboard do.

Before, only the inspector tools looked at the restriction: the same token that REST
refused ("may only manage the servers notes") could remove, disable or restart any other
server, import servers, reload the file and rewrite routes through the admin tools.
Real HTTP on 127.0.0.1, the demo servers as real stdio subprocesses, a real SQLite store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from tests.test_rest import OPS, demo, serving

pytestmark = pytest.mark.anyio

NOTES_ADMIN = "mgw_notes-admin-7d41c0b9e2"
AUTH = {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "carol", "token": NOTES_ADMIN, "scopes": ["admin"], "servers": ["notes"]},
]}


async def test_a_restricted_admin_changes_only_its_own_servers(tmp_path: Path) -> None:
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")},
                       auth=False, options={"auth": AUTH}) as (api, base):
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:

            async def refused(tool: str, arguments: dict[str, Any]) -> str:
                result = await carol.call_tool(tool, arguments, raise_on_error=False)
                assert result.is_error, (tool, result.content)
                return str(result.content[0].text)  # type: ignore[union-attr]

            # Another server is out of reach, worded as for one that does not exist.
            for tool in ("gateway_remove_server", "gateway_disable_server",
                         "gateway_reconnect_server"):
                assert "unknown server 'clock'" in await refused(tool, {"name": "clock"})
            assert "unknown server 'clock'" in await refused(
                "gateway_update_server", {"name": "clock", "config": demo("clock")})
            assert "may only manage the servers notes" in await refused(
                "gateway_add_server", {"name": "clock2", "config": demo("clock")})
            # What reaches beyond one server needs an unrestricted token.
            for tool, arguments in [
                ("gateway_import_servers", {"content": "servers:\n  zz:\n    command: x\n"}),
                ("gateway_reload_config", {}),
                ("gateway_add_route", {"pattern": "clock_now", "target": "notes"}),
            ]:
                text = await refused(tool, arguments)
                assert "without a 'servers' list" in text and "notes" in text, text

            # Its own server it manages as before.
            restarted = await carol.call_tool("gateway_reconnect_server", {"name": "notes"})
            assert not restarted.is_error

        listed = (await api("GET", "/servers", OPS)).json()["servers"]
        assert {s["name"]: s["state"] for s in listed} == {"notes": "ready", "clock": "ready"}
        assert (await api("GET", "/routes", OPS)).json()["routes"] == []
