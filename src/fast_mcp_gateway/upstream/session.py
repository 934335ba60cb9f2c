"""The MCP session to one upstream: the client we present, the era negotiation, and
the catalog listing done at connect and on every ``list_changed``."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway._compat import negotiate_auto
from fast_mcp_gateway._version import GATEWAY_NAME, __version__
from fast_mcp_gateway.config.schema import ProtocolMode
from fast_mcp_gateway.upstream.deadline import host_reason
from fast_mcp_gateway.upstream.model import Catalog, describe_error, idle_closed
from fast_mcp_gateway.upstream.sharing import share_tool_schemas
from fast_mcp_gateway.upstream.stdout_lines import UNDECODABLE_RESPONSE

if TYPE_CHECKING:  # fastmcp.client is loaded for HTTP upstreams only (transports.py)
    from fastmcp.client.transports import ClientTransport

    from fast_mcp_gateway.store.eras import EraName

logger = logging.getLogger(__name__)

CLIENT_INFO = types.Implementation(name=GATEWAY_NAME, version=__version__)
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



# What the MCP SDK's transports and dispatcher, and the gateway's taps, end a request
# with when its connection (or, over streamable HTTP, its answer's stream) is gone, under
# CONNECTION_CLOSED (-32000): the first code of JSON-RPC's "server error" range too, which
# upstreams answer with of their own ("-32000 nope" is an answer: the server is alive).
# A resumable answer's stream (events with ids) the SDK failed to resume ends with
# "... reconnection attempts were exhausted": the server may have run the request.
_LOST = frozenset({"Connection closed", "SSE stream ended without a response",
                   "SSE stream ended and reconnection attempts were exhausted",
                   "server answered a request with 202 Accepted"})


def connection_lost(exc: MCPError, fatal: str | None = None) -> bool:
    """Whether ``exc`` says the connection went away, not the server's own error answer;
    ``fatal``: why the stdio reader ended the session, if it did (its error's message)."""
    error = exc.error
    if error.code != types.CONNECTION_CLOSED:
        return False
    message = error.message
    return (message in _LOST or message.startswith("SSE stream failed: ")
            or (fatal is not None and message == fatal) or idle_closed(exc))



class StepFailed(Exception):
    """One request of the connect sequence (or of a catalog listing) failed; the
    message names the method and what happened."""

    def __init__(self, method: str, cause: BaseException) -> None:
        self.method = method
        self.answered = isinstance(cause, MCPError) and not (
            cause.error.code == types.REQUEST_TIMEOUT or connection_lost(cause))
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


class Era:
    """Which protocol era a replica opens its sessions in, and why.

    ``mode`` is the server's ``protocol`` (else ``gateway.protocol``).  ``auto`` opens
    the handshake era: it costs the upstream less per call (no per-request envelope
    to classify and no per-request connection), and the gateway serves hosts of both
    eras from either (``front/mrtr.py`` turns pushed asks into ``InputRequiredResult``
    for 2026-07-28 hosts).  It opens 2026-07-28 when a need for it is known: the
    server does not offer the handshake era, or it was seen to need the newer one
    (``needs``: a tool answered with an ``InputRequiredResult``, which exists only at
    2026-07-28).  Over plain streamable HTTP it starts in 2026-07-28 instead (the
    transport ``prefers_modern``): one self-contained POST per call, served by the
    gateway's side door, costs both sides less there; a tool found asking by push
    (FastMCP's ``ctx.elicit()``, or a push through the SDK's session: the newer era
    refuses both) moves the replica back (``needs_handshake``).  A need, once learned,
    holds for this replica's later sessions.
    """

    def __init__(self, mode: ProtocolMode, memory: EraMemory | None = None) -> None:
        self.mode: ProtocolMode = mode
        self.memory = memory
        self.needs: str | None = None
        self.needs_handshake: str | None = None
        self.reason: str | None = None  # why the current session is in its era
        self.switching = False  # a reconnect for a learned need is under way

    def recall(self) -> None:
        """Take the need an earlier run learned (``era_memory.py``), if this one knows
        none yet; called as each session is negotiated."""
        if self.mode != "auto" or self.memory is None or self.needs is not None \
                or self.needs_handshake is not None:
            return
        kept = self.memory.recall()
        if kept is not None:
            era, reason = kept
            if era == "2026-07-28":
                self.needs = f"{reason} (learned in an earlier run)"
            else:
                self.needs_handshake = f"{reason} (learned in an earlier run)"

    def learn(self, need: str) -> bool:
        """Record a need for 2026-07-28; True when it changes this replica's era (the
        caller then reconnects it and clears ``switching``)."""
        if self.mode != "auto" or self.needs is not None:
            return False
        self.needs, self.switching = need, True
        if self.memory is not None:
            self.memory.learned("2026-07-28", need)
        return True

    def learn_handshake(self, need: str) -> bool:
        """Record a need for the handshake era (same contract as ``learn``)."""
        if self.mode != "auto" or self.needs_handshake is not None or self.needs is not None:
            return False
        self.needs_handshake, self.switching = need, True
        if self.memory is not None:
            self.memory.learned("handshake", need)
        return True


class EraMemory(Protocol):
    """Where an ``Era`` finds what earlier runs learned, and tells what it learns."""

    def recall(self) -> tuple[EraName, str] | None: ...

    def learned(self, era: EraName, reason: str) -> None: ...


# What a tool asking by push meets on a 2026-07-28 session (no back-channel there): the
# tool needs the handshake era.  FastMCP refuses ``ctx.elicit()`` before anything reaches
# the wire; the MCP SDK's session (a lowlevel ``Server``'s ``session.elicit_form`` /
# ``create_message`` / ``list_roots``, FastMCP's ``ctx.session``) raises
# ``NoBackChannelError``: "Cannot send 'elicitation/create': this transport context has
# no back-channel for server-initiated requests." (-32600), which a lowlevel handler
# lets become the call's error and FastMCP (or a handler that catches) an isError text.
_NEEDS_HANDSHAKE = ("via server-initiated requests is unavailable on 2026-07-28",
                    "no back-channel for server-initiated requests")
_PUSHED = re.compile(r"Cannot send '([^']+)': this transport context has no back-channel")


def asks_by_push(result: Any) -> str | None:
    """What a tool's result (typed or raw JSON) says it pushed and was refused for
    (``ctx.elicit()``, or the SDK's request method), if it is such a refusal."""
    if isinstance(result, dict):
        if not result.get("isError"):
            return None
        content = result.get("content") or []
        texts = [c.get("text") for c in content if isinstance(c, dict)]
    elif isinstance(result, types.CallToolResult) and result.is_error:
        texts = [getattr(c, "text", None) for c in result.content]
    else:
        return None
    return next((_pushed(t) for t in texts if isinstance(t, str)
                 and any(marker in t for marker in _NEEDS_HANDSHAKE)), None)


def refuses_push(exc: BaseException) -> str | None:
    """Like ``asks_by_push``, for the refusal as the call's error response (what the
    SDK's lowlevel ``Server`` answers when a handler's push raises)."""
    if (isinstance(exc, MCPError) and exc.error.code == types.INVALID_REQUEST
            and any(marker in exc.error.message for marker in _NEEDS_HANDSHAKE)):
        return _pushed(exc.error.message)
    return None


def _pushed(text: str) -> str:
    found = _PUSHED.search(text)
    return found.group(1) if found else "ctx.elicit()"


# FastMCP's answer when a guard-style tool (one that returns an InputRequiredResult)
# is called on a handshake-era session: the tool needs the 2026-07-28 era.
_NEEDS_MODERN = "only exists at MCP 2026-07-28"


def needs_modern(exc: BaseException) -> bool:
    """Whether ``exc`` is an upstream saying the call needs a 2026-07-28 session."""
    return (isinstance(exc, MCPError) and exc.error.code == types.INVALID_PARAMS
            and _NEEDS_MODERN in exc.error.message)


async def negotiate(session: ClientSession, transport: ClientTransport, era: Era) -> None:
    """Open the session in the era ``era`` picks, setting ``era.reason`` (``StepFailed``)."""
    from fast_mcp_gateway._compat_sessions import keep_progress_numbers, tell_cancel_reasons

    keep_progress_numbers(session)  # (its progress callbacks: the upstream's 1, not 1.0)
    tell_cancel_reasons(session, host_reason)  # (a host's reason for its cancel goes on)
    era.recall()
    mode = era.mode
    opening: Callable[[], Awaitable[Any]]
    preferred_modern = False
    if transport.legacy_only:
        method, opening = "initialize", session.initialize
        era.reason = "the transport speaks the handshake era only"
    elif mode == "legacy":
        method, opening = "initialize", session.initialize
        era.reason = "protocol: legacy"
    elif mode != "auto":
        method, opening = "server/discover", session.discover
        era.reason = f"protocol: {mode}"
    elif era.needs is not None:
        method, opening = "initialize", lambda: negotiate_auto(session)
        era.reason = f"auto: {era.needs}"
    elif era.needs_handshake is not None:
        method, opening = "initialize", lambda: _handshake_first(session, era)
        era.reason = f"auto: {era.needs_handshake}"
    elif getattr(transport, "prefers_modern", False):
        method, opening = "initialize", lambda: negotiate_auto(session)
        preferred_modern = True
        era.reason = ("auto: over streamable HTTP, 2026-07-28 costs less per call (one "
                      "self-contained POST, the gateway's side door)")
    else:
        method, opening = "initialize", lambda: _handshake_first(session, era)
        era.reason = "auto: the handshake era costs the server less per call"
    try:
        await opening()
    except Exception as exc:
        raise StepFailed(method, exc) from exc
    if preferred_modern and session.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        # negotiate_auto fell back to the handshake: the reason it was tried no longer holds.
        era.reason = ("auto: the server does not offer 2026-07-28 (it answered "
                      "server/discover as a handshake-era server)")


async def _handshake_first(session: ClientSession, era: Era) -> None:
    """``initialize``; a server that refuses the handshake era (-32022, or no such
    method) is probed for 2026-07-28 instead."""
    try:
        await session.initialize()
    except MCPError as exc:
        if exc.error.code not in (types.UNSUPPORTED_PROTOCOL_VERSION,
                                  types.METHOD_NOT_FOUND):
            raise
        await negotiate_auto(session)
        era.reason = "auto: the server does not offer the handshake era"


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
            share_tool_schemas(catalog.tools)   # equal schemas: one copy (sharing.py)
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
            return self._unique(await paginate(fetch, attr, catalog.hints, method,
                                               self._label), method)
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

    def _unique(self, items: list[Any], method: str) -> list[Any]:
        """The first of each name (URI, template): a name listed twice can only be routed
        to one upstream component, so a copy would be an alias of it with a description
        (and schema) of its own."""
        field = _KEYS[method]
        seen: set[str] = set()
        kept, twice = [], []
        for item in items:
            key = getattr(item, field)
            if key in seen:
                twice.append(key)
                continue
            seen.add(key)
            kept.append(item)
        if twice:
            logger.warning("upstream %s: its %s named these more than once: %s; the "
                           "first of each is exposed, the copies are ignored", self._label,
                           method, ", ".join(repr(k) for k in dict.fromkeys(twice)))
        return kept


_KEYS = {"tools/list": "name", "prompts/list": "name", "resources/list": "uri",
         "resources/templates/list": "uri_template"}


async def paginate(fetch: Callable[..., Awaitable[Any]], attr: str,
                   hints: dict[str, tuple[int, str]] | None = None,
                   method: str = "", label: str = "upstream") -> list[Any]:
    """Every page's items; the pages' freshness hint goes into ``hints[method]`` when
    every page carried one (the smallest ttl, ``private`` if any page said so).  A next
    cursor already followed ends the listing (logged): the pages would never end."""
    items: list[Any] = []
    cursor: str | None = None
    followed: set[str] = set()
    hint: tuple[int, str] | None = None
    hinted = True
    for _ in range(1000):  # a server that never stops paging is a bug, not a catalog
        if cursor is not None:
            if cursor in followed:
                logger.warning("upstream %s: %s gave the same next cursor %r twice; its "
                               "pages would never end, so the listing stops there",
                               label, method, cursor[:100])
                break
            followed.add(cursor)
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


def add_extensions(meta: dict[str, Any], asked: Any) -> None:
    """Merge the extensions of ``asked`` (client capabilities) into the stamped ones."""
    stamped = meta.get(types.CLIENT_CAPABILITIES_META_KEY)
    if not isinstance(asked, dict) or not isinstance(asked.get("extensions"), dict) \
            or not isinstance(stamped, dict):
        return  # nothing asked, or a handshake-era session (no per-request capabilities)
    meta[types.CLIENT_CAPABILITIES_META_KEY] = {
        **stamped, "extensions": {**(stamped.get("extensions") or {}), **asked["extensions"]}}
