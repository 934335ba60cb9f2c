"""A server registered at runtime at this gateway's own address is refused
(``admin/registering._serves_itself``), and only then: the forms of one address compare
equal, and a path beside the published prefix is another service."""

from __future__ import annotations

import pytest

from fast_mcp_gateway.admin import servers
from fast_mcp_gateway.admin.models import ChangeReport
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.store import Store
from tests.test_admin_ops import ADA, FakeContext, store  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


async def test_a_path_beside_the_public_prefix_is_another_service(store: Store) -> None:  # noqa: F811
    """Published at https://mcp.example.com/team, the gateway took /teamwork/... (another
    team's gateway behind the same proxy) for itself: the prefix ends at a '/'."""
    ctx = FakeContext({}, store)
    ctx.settings = GatewaySettings(transport="http", port=8765,
                                   public_url="https://mcp.example.com/team")
    for url in ("https://mcp.example.com/teamwork/mcp", "https://mcp.example.com/team2"):
        assert await servers.add_server(ctx, ADA, "other", {"url": url, "enabled": False}) \
            == ChangeReport(added=["other"])
        await servers.remove_server(ctx, ADA, "other")


async def test_each_form_of_the_own_address_is_refused(store: Store) -> None:  # noqa: F811
    """The default port written out, a host name's case or trailing dot, credentials in
    the URL, an IPv4-mapped loopback address: the same address, which was let through."""
    ctx = FakeContext({}, store)
    ctx.settings = GatewaySettings(transport="http", port=8765,
                                   public_url="https://mcp.example.com/team")
    for url in ("https://mcp.example.com:443/team/mcp", "https://MCP.Example.com./team/mcp",
                "https://ada:pw@mcp.example.com/team/mcp", "https://mcp.example.com/team",
                "http://localhost.:8765/mcp", "http://[::ffff:127.0.0.1]:8765/mcp"):
        with pytest.raises(ConfigError, match="is this gateway's own address"):
            await servers.add_server(ctx, ADA, "self", {"url": url, "enabled": False})
    ctx.settings = GatewaySettings(transport="http", port=443,
                                   public_url="https://mcp.example.com:443")
    with pytest.raises(ConfigError, match="is this gateway's own address"):
        await servers.add_server(ctx, ADA, "self", {"url": "https://mcp.example.com/mcp",
                                                    "enabled": False})
