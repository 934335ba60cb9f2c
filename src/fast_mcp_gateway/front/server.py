"""The FastMCP server class the gateway runs, and the host tracking it needs."""

from __future__ import annotations

from typing import Any

from fastmcp.server.dependencies import get_context
from fastmcp.tools.base import ToolResult
from fastmcp.utilities.versions import VersionSpec

from fast_mcp_gateway._compat import PreferredToolServer, connection_of
from fast_mcp_gateway.front.encodings import RelayedError
from fast_mcp_gateway.front.hub import FrontHub
from fast_mcp_gateway.front.provider import GatewayProvider


class GatewayServer(PreferredToolServer):
    """FastMCP with upstream tools resolved from the gateway's table first (the
    provider's O(1) table; see ``PreferredToolServer``)."""

    def use_provider(self, provider: GatewayProvider) -> None:
        self.prefer_tool = provider.get_tool

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *,
                        version: VersionSpec | None = None,
                        run_middleware: bool = True) -> ToolResult:
        """FastMCP's, except that an upstream's error response reaches the host as the
        JSON-RPC error it was (``RelayedError``), not as an ``isError`` result."""
        try:
            return await super().call_tool(name, arguments, version=version,
                                           run_middleware=run_middleware)
        except RelayedError as exc:
            raise exc.response from None


def track_current_host(hub: FrontHub) -> None:
    """Remember the connection of the host making the current request (if any)."""
    try:
        ctx = get_context()
    except RuntimeError:
        return
    if ctx.request_context is not None:
        hub.track(connection_of(ctx.session))
