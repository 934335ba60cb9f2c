"""The MCP session to one upstream: the client we present, the era negotiation, and
the catalog listing done at connect and on every ``list_changed``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
import mcp_types as types
from fastmcp.client.transports import ClientTransport
from fastmcp.client.transports.base import TransportOptions
from mcp import ClientSession
from mcp.client._probe import negotiate_auto

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.model import Catalog

CLIENT_INFO = types.Implementation(name="fast-mcp-gateway", version=__version__)
TRANSPORT_ERRORS = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    httpx2.TransportError,
)


class RelaySession(ClientSession):
    """A session that relays results instead of consuming them.

    ``ClientSession.call_tool`` validates structured content against the tool's
    output schema (listing tools first if needed).  That check belongs to the host,
    which runs it itself; doing it here would turn an upstream's schema bug into a
    gateway error and hide the real response.
    """

    async def validate_tool_result(self, name: str, result: types.CallToolResult) -> None:
        return None


TRANSPORT_OPTIONS = TransportOptions(session_class=RelaySession)


async def negotiate(session: ClientSession, transport: ClientTransport,
                    config: ServerConfig) -> None:
    """Open the session in the era ``config.protocol`` asks for."""
    mode = config.protocol
    if mode == "legacy" or transport.legacy_only:
        await session.initialize()
    elif mode == "auto":
        await negotiate_auto(session)
    else:
        await session.discover()


async def fetch_catalog(session: ClientSession) -> Catalog:
    """Every list the server's capabilities promise, all pages."""
    caps = session.server_capabilities or types.ServerCapabilities()
    catalog = Catalog()
    if caps.tools is not None:
        catalog.tools = await paginate(session.list_tools, "tools")
    if caps.resources is not None:
        catalog.resources = await paginate(session.list_resources, "resources")
        catalog.templates = await paginate(session.list_resource_templates, "resource_templates")
    if caps.prompts is not None:
        catalog.prompts = await paginate(session.list_prompts, "prompts")
    return catalog


async def paginate(fetch: Callable[..., Awaitable[Any]], attr: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(1000):  # a server that never stops paging is a bug, not a catalog
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        result = await fetch(params=params)
        items.extend(getattr(result, attr))
        cursor = result.next_cursor
        if not cursor:
            break
    return items
