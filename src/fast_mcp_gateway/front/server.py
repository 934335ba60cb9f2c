"""The FastMCP server class the gateway runs, and the host tracking it needs."""

from __future__ import annotations

from fastmcp.server.dependencies import get_context

from fast_mcp_gateway._compat import PreferredToolServer, connection_of, current_transport
from fast_mcp_gateway.front.hub import FrontHub
from fast_mcp_gateway.front.provider import GatewayProvider


class GatewayServer(PreferredToolServer):
    """FastMCP with upstream tools resolved from the gateway's table first (the
    provider's O(1) table; see ``PreferredToolServer``)."""

    def use_provider(self, provider: GatewayProvider) -> None:
        self.prefer_tool = provider.get_tool


def track_current_host(hub: FrontHub) -> None:
    """Remember the connection of the host making the current request (if any)."""
    try:
        ctx = get_context()
    except RuntimeError:
        return
    if ctx.request_context is not None:
        hub.track(connection_of(ctx.session), sole_host=current_transport() == "stdio")
