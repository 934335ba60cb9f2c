"""The FastMCP server class the gateway runs, and the host tracking it needs."""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP
from fastmcp.server.dependencies import get_context
from fastmcp.tools.base import Tool
from fastmcp.utilities.versions import VersionSpec

from fast_mcp_gateway.front.hub import FrontHub
from fast_mcp_gateway.front.provider import GatewayProvider


class GatewayServer(FastMCP[Any]):
    """FastMCP with upstream tools resolved from the gateway's table first.

    FastMCP resolves a tool by asking every provider concurrently (a task group per
    call).  Upstream tools live in one O(1) table and never share a name with the
    gateway's own tools (those names are reserved), so asking it first changes no
    answer, only the cost of every ``tools/call``.
    """

    gateway_provider: GatewayProvider

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        if version is None:
            tool = await self.gateway_provider.get_tool(name)
            if tool is not None and tool.auth is None:
                return tool
        return await super()._get_tool(name, version)


def track_current_host(hub: FrontHub) -> None:
    """Remember the connection of the host making the current request (if any)."""
    try:
        ctx = get_context()
    except RuntimeError:
        return
    if ctx.request_context is not None:
        hub.track(getattr(ctx.session, "_connection", None))
