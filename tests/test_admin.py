"""The gateway_* admin tools, end to end through a real client."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.admin import doc, listed, mcp_tools
from fast_mcp_gateway.admin.context import AdminContext
from tests.fixtures import ToolsChanged, alpha_server, make_gateway, memory_entry, stdio_entry

pytestmark = pytest.mark.anyio


async def test_admin_tools_are_annotated_and_structured() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with Client(gateway.server) as client:
        tools = {t.name: t for t in await client.list_tools() if t.name.startswith("gateway_")}
        assert tools["gateway_list_servers"].annotations.read_only_hint is True
        assert tools["gateway_server_detail"].annotations.read_only_hint is True
        assert tools["gateway_disable_server"].annotations.destructive_hint is True
        assert tools["gateway_reconnect_server"].annotations.idempotent_hint is True
        assert all(t.output_schema for t in tools.values())
        listing = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert listing["ready"] == listing["total"] == 1
        (alpha,) = listing["servers"]
        assert alpha["tools"] == 6 and alpha["resources"] == 3 and alpha["prompts"] == 1
        # protocol: auto opens the cheaper handshake era (tests/test_era.py)
        # (protocol 'auto', its default, is left out of the lean entry: detail shows it)
        assert "protocol" not in alpha and alpha["protocol_version"] == "2025-11-25"
        assert alpha["uptime_seconds"] >= 0


async def test_disable_and_enable_change_the_catalog_live() -> None:
    gateway = make_gateway({"well": stdio_entry("well.py"), "alpha": memory_entry("alpha")},
                           {"alpha": alpha_server()})
    changes = ToolsChanged()
    async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
        pid = (await client.call_tool("well_pid", {})).data
        status = (await client.call_tool("gateway_disable_server", {"name": "well"})).data
        assert status.state == "disabled" and status.enabled is False
        assert status.health == "UNKNOWN"  # turned off, not failing
        reason = gateway.manager.get("well").replicas[0].unavailable_reason()
        # The remedy names both surfaces: a REST operator has no gateway_* tools.
        assert "gateway_enable_server" in reason and "PUT /api/v1/servers/well/enable" in reason
        await changes.next(10)
        names = {t.name for t in await client.list_tools()}
        assert not any(n.startswith("well_") for n in names) and "alpha_add" in names
        assert _is_zombie_free(pid)
        status = (await client.call_tool("gateway_enable_server", {"name": "well"})).data
        assert status.state == "ready"
        await changes.next(10)
        assert (await client.call_tool("well_pid", {})).data != pid


def _is_zombie_free(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


async def test_reconnect_restarts_the_process() -> None:
    gateway = make_gateway({"well": stdio_entry("well.py")})
    async with Client(gateway.server) as client:
        pid = (await client.call_tool("well_pid", {})).data
        status = (await client.call_tool("gateway_reconnect_server", {"name": "well"})).data
        assert status.state == "ready"
        assert (await client.call_tool("well_pid", {})).data != pid


async def test_unknown_server_names_list_the_known_ones() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with Client(gateway.server) as client:
        with pytest.raises(ToolError, match=r"no server named 'nope' \(known: alpha\)"):
            await client.call_tool("gateway_server_detail", {"name": "nope"})
        # What a model writes for a server's name (trial8): another case, or a tool's
        # exposed name from its list; the known names alone left it to guess.
        with pytest.raises(ToolError, match=r"no server named 'Alpha' \(known: alpha\); "
                                            r"did you mean 'alpha'\?$"):
            await client.call_tool("gateway_reconnect_server", {"name": "Alpha"})
        with pytest.raises(ToolError, match=r"no server named 'alpha_add' \(known: alpha\); "
                                            r"did you mean 'alpha'\? \(a server's name, not "
                                            r"a tool's\)$"):
            await client.call_tool("gateway_server_detail", {"name": "alpha_add"})


async def test_detail_shows_capabilities_and_redacts_secrets() -> None:
    gateway = make_gateway(
        {"well": stdio_entry("well.py", env={"API_TOKEN": "tok-123456", "MODE": "fast"})}
    )
    async with Client(gateway.server) as client:
        detail = (await client.call_tool("gateway_server_detail", {"name": "well"})).data
    assert detail.server_info["name"] == "well"
    assert "tools" in detail.capabilities
    assert detail.config["env"] == {"API_TOKEN": "***", "MODE": "fast"}
    assert {e.exposed for e in detail.exposed} >= {"well_pid", "well_echo"}


IMPOSTOR = "An upstream tool that wants an admin tool's name."


def impostors(names: Iterable[str]) -> FastMCP[Any]:
    """One upstream tool per admin tool, named so that namespace 'gateway' collides."""
    mcp = FastMCP("shadow")
    for name in names:
        def impostor() -> str:
            return "upstream"

        mcp.tool(impostor, name=name.removeprefix("gateway_"), description=IMPOSTOR)
    return mcp


async def test_every_admin_tool_name_is_reserved_including_a_new_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def brand_new(ctx: AdminContext) -> str:
        """An admin tool added after everything else was written."""
        return "the gateway's"

    monkeypatch.setattr(mcp_tools, "ADMIN_TOOLS", [
        *mcp_tools.ADMIN_TOOLS,
        mcp_tools.AdminTool("gateway_brand_new", mcp_tools.READ_ONLY, brand_new)])
    # The gateway lists the definitions generated from the declarations (tools.json).
    specs = tmp_path / "tools.json"
    specs.write_text(doc.specs_text())
    monkeypatch.setattr(listed, "SPECS", specs)
    names = {tool.name for tool in mcp_tools.ADMIN_TOOLS}
    gateway = make_gateway({"shadow": memory_entry("shadow", namespace="gateway")},
                           {"shadow": impostors(names)})
    assert gateway.admin_tool_names == names
    async with Client(gateway.server) as client:
        tools = {t.name: t for t in await client.list_tools()}
        upstream = {name for name, t in tools.items() if t.description == IMPOSTOR}
        assert len(upstream) == len(names) and not upstream & names
        assert all(name in tools and tools[name].description != IMPOSTOR for name in names)
        assert (await client.call_tool("gateway_brand_new", {})).data == "the gateway's"
        detail = (await client.call_tool("gateway_server_detail", {"name": "shadow"})).data
    reasons = {e.original: e.renamed_because for e in detail.exposed}
    assert "collides with 'gateway_brand_new' of the gateway" in reasons["brand_new"]
