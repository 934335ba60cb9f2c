"""The MCP session to one upstream: the client we present, the era negotiation, and
the catalog listing done at connect and on every ``list_changed``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway._compat import negotiate_auto
from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.model import Catalog, describe_error
from fast_mcp_gateway.upstream.stdio_tap import UNDECODABLE_RESPONSE

if TYPE_CHECKING:  # fastmcp.client is loaded for HTTP upstreams only (transports.py)
    from fastmcp.client.transports import ClientTransport

logger = logging.getLogger(__name__)

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



class StepFailed(Exception):
    """One request of the connect sequence (or of a catalog listing) failed; the
    message names the method and what happened."""

    def __init__(self, method: str, cause: BaseException) -> None:
        self.method = method
        self.answered = isinstance(cause, MCPError) and cause.error.code not in (
            types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT)
        if self.answered:
            assert isinstance(cause, MCPError)
            error = cause.error
            what = (f"failed: {error.message}" if error.message.startswith(UNDECODABLE_RESPONSE)
                    else f"answered {error.code} {error.message}")
        else:
            what = f"failed: {describe_error(cause)}"
        super().__init__(f"{method} {what}")


class ConnectFailed(Exception):
    """A connect step failed: ``connect: <method> answered <code> <message>``."""

    def __init__(self, step: StepFailed, cause: str | None = None) -> None:
        self.answered = step.answered
        super().__init__(f"connect: {step}" + (f" ({cause})" if cause else ""))


# Lists a server may decline with -32601 although its capabilities name them: many
# 1.x-SDK servers declare ``resources`` without implementing templates, for example.
# ``tools/list`` is not among them: a server that declares tools must list them.
OPTIONAL_LISTS = frozenset({"resources/list", "resources/templates/list", "prompts/list"})


async def negotiate(session: ClientSession, transport: ClientTransport,
                    config: ServerConfig) -> None:
    """Open the session in the era ``config.protocol`` asks for (``StepFailed``)."""
    mode = config.protocol
    opening: Callable[[], Awaitable[Any]]
    if mode == "legacy" or transport.legacy_only:
        method, opening = "initialize", session.initialize
    elif mode == "auto":
        method, opening = "initialize", lambda: negotiate_auto(session)
    else:
        method, opening = "server/discover", session.discover
    try:
        await opening()
    except Exception as exc:
        raise StepFailed(method, exc) from exc


class CatalogFetcher:
    """Lists every catalog the server's capabilities promise, all pages.

    A -32601 to an optional list (``OPTIONAL_LISTS``) is an empty list, logged once
    per replica; any other failure raises ``StepFailed`` naming the method.
    """

    def __init__(self, label: str) -> None:
        self._label = label
        self.declined: set[str] = set()  # optional lists the server answered -32601 to

    async def __call__(self, session: ClientSession) -> Catalog:
        caps = session.server_capabilities or types.ServerCapabilities()
        catalog = Catalog()
        if caps.tools is not None:
            catalog.tools = await self._list(catalog, "tools/list", session.list_tools,
                                             "tools")
        if caps.resources is not None:
            catalog.resources = await self._list(catalog, "resources/list",
                                                 session.list_resources, "resources")
            catalog.templates = await self._list(
                catalog, "resources/templates/list", session.list_resource_templates,
                "resource_templates")
        if caps.prompts is not None:
            catalog.prompts = await self._list(catalog, "prompts/list", session.list_prompts,
                                               "prompts")
        return catalog

    async def _list(self, catalog: Catalog, method: str,
                    fetch: Callable[..., Awaitable[Any]], attr: str) -> list[Any]:
        try:
            return await paginate(fetch, attr, catalog.hints, method)
        except MCPError as exc:
            if method in OPTIONAL_LISTS and exc.error.code == types.METHOD_NOT_FOUND:
                if method not in self.declined:
                    self.declined.add(method)
                    logger.info("upstream %s: %s answered -32601 (%s); taken as empty",
                                self._label, method, exc.error.message)
                return []
            raise StepFailed(method, exc) from exc
        except Exception as exc:
            raise StepFailed(method, exc) from exc


async def paginate(fetch: Callable[..., Awaitable[Any]], attr: str,
                   hints: dict[str, tuple[int, str]] | None = None,
                   method: str = "") -> list[Any]:
    """Every page's items; the pages' freshness hint goes into ``hints[method]`` when
    every page carried one (the smallest ttl, ``private`` if any page said so)."""
    items: list[Any] = []
    cursor: str | None = None
    hint: tuple[int, str] | None = None
    hinted = True
    for _ in range(1000):  # a server that never stops paging is a bug, not a catalog
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        result = await fetch(params=params)
        items.extend(getattr(result, attr))
        if hinted and "ttl_ms" in getattr(result, "model_fields_set", ()):
            scope = getattr(result, "cache_scope", "private")
            page = (int(result.ttl_ms), scope if scope == "public" else "private")
            hint = page if hint is None else (
                min(hint[0], page[0]), "public" if hint[1] == page[1] == "public" else "private")
        else:
            hinted = False
        cursor = result.next_cursor
        if not cursor:
            break
    if hints is not None and hinted and hint is not None:
        hints[method] = hint
    return items
