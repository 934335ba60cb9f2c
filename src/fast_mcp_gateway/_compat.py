"""Every use of a FastMCP or MCP SDK internal, in one place.

The gateway sits lower in the stack than FastMCP's public API reaches: it relays
requests as JSON past the SDK's result models, shares a stdio server's pipe with the
SDK session, serves stdin without the SDK's worker thread and watches sessions die.
Each of those needs a private name of ``fastmcp`` (4.2) or ``mcp`` (2.3).  They are all
here, under public names with a contract, so that

* ``tests/test_compat.py`` exercises each one against the installed versions: an
  upgrade that renames or changes one fails that test loudly (never a silent
  ``getattr`` default that disables, say, dead-session detection);
* ``tests/test_compat.py`` also fails if any other module of the package reaches a
  private name of ``fastmcp``/``mcp`` itself.

Moving the version pins (pyproject.toml) means running that test first.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, cast

import mcp_types as types
from fastmcp import FastMCP
from fastmcp.server.context import _CONNECTION_LOG_LEVEL_KEY, _current_transport
from fastmcp.tools.base import Tool
from fastmcp.utilities.versions import VersionSpec
from mcp.client._probe import negotiate_auto as _negotiate_auto
from mcp.client._transport import TransportStreams
from mcp.client.session import _wire_fields
from mcp.client.stdio import (
    _aclose_all,
    _close_pipe,
    _close_subprocess_transport,
    _create_platform_compatible_process,
    _drain_stdout,
    _get_executable_command,
    _parse_line,
    _terminate_process_tree,
    _wait_for_process_exit,
)
from mcp.server.auth.provider import AccessToken, principal_components
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity, compact_json

from fast_mcp_gateway import spawn

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from mcp import ClientSession
    from mcp.server.connection import Connection
    from mcp.server.lowlevel import Server
    from pydantic import BaseModel

__all__ = [
    "DECLARING", "NO_HOST", "PreferredToolServer", "RoundStates", "TransportStreams",
    "aclose_all", "client_log_level", "close_pipe", "close_subprocess_transport",
    "connection_of", "create_process", "current_transport", "deliver_notification",
    "drain_stdout", "executable_command", "lifespan", "low_level_server",
    "narrow_capabilities", "narrowing_stamp", "negotiate_auto", "parse_line",
    "pipe_writer", "principal_binding", "reword_auth_challenges", "send_raw_request",
    "session_closed", "stamp_request", "terminate_process_tree",
    "wait_for_process_exit", "wire_fields",
]

# -- the SDK's stdio client helpers (upstream/stdio_tap.py reuses its spawn and stop) --

aclose_all = _aclose_all
close_pipe = _close_pipe
close_subprocess_transport = _close_subprocess_transport
# POSIX: the same spawn, plus (Linux) a death signal so that no server outlives a
# gateway killed with SIGKILL (spawn.py).
create_process = (_create_platform_compatible_process if sys.platform == "win32"
                  else spawn.create_process)
drain_stdout = _drain_stdout
executable_command = _get_executable_command
parse_line = _parse_line
terminate_process_tree = _terminate_process_tree
wait_for_process_exit = _wait_for_process_exit



def pipe_writer(stream: Any) -> asyncio.StreamWriter | None:
    """The asyncio writer under the anyio byte stream on a process's stdin, as
    ``create_process`` makes it (anyio's ``StreamWriterWrapper._stream``), or None for
    any other stream (then write with its ``send``).  Writing a whole line to it is
    ``send`` without the checkpoint anyio adds after each write (a turn of the event
    loop on every express-lane call)."""
    writer = getattr(stream, "_stream", None)
    return writer if isinstance(writer, asyncio.StreamWriter) else None

# -- client sessions ----------------------------------------------------------------

negotiate_auto = _negotiate_auto
"""``mode="auto"`` at connect: probe ``server/discover``, else ``initialize``."""


def wire_fields(model: Any) -> frozenset[str]:
    """The top-level wire keys a result model (or a union of them) declares."""
    return _wire_fields(cast("type[BaseModel]", model))


def stamp_request(session: ClientSession, data: dict[str, Any], opts: Any) -> None:
    """Write the negotiated era's envelope (``_meta``: version, client info, caps) into
    ``data`` as ``send_request`` would, for a request the gateway sends as JSON."""
    session._stamp(data, opts)


class Declaring(Protocol):
    """The host call a request is made for, as far as its capabilities, its era and its
    log level go (``upstream.relay.FrontCall``: ``meta`` is the host's own ``_meta``, as
    forwarded)."""

    @property
    def is_modern(self) -> bool: ...

    @property
    def meta(self) -> dict[str, Any] | None: ...

    def declared_capabilities(self) -> dict[str, Any] | None: ...


class _NoHost:
    """``DECLARING`` for a request the gateway makes on its own (no host call): the
    capabilities stay the session's, and no logs are asked for: there is nobody to
    relay them to, and over a shared session they would be told to whichever host has
    a call in flight (``HostRelay``'s attribution by timing)."""

    is_modern = True
    meta: dict[str, Any] | None = None

    def declared_capabilities(self) -> dict[str, Any] | None:
        return None


NO_HOST: Declaring = _NoHost()

DECLARING: ContextVar[Declaring | None] = ContextVar("gateway_declaring", default=None)
"""The host call whose declared client capabilities (and log level) a 2026-07-28 stamp
narrows to (``upstream/requests.py`` sets it around each request on such a session:
the host call, or ``NO_HOST``)."""


def narrow_capabilities(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The client capabilities both declare: a key of ``theirs`` (the host's) that
    ``ours`` (the gateway's session) has too, objects narrowed key by key, other values
    kept where both say the same.  ``elicitation: {}`` (form only, by the revision's
    own reading) stays ``{}``."""
    narrowed: dict[str, Any] = {}
    for key, value in theirs.items():
        if key not in ours:
            continue
        mine = ours[key]
        if isinstance(value, dict) and isinstance(mine, dict):
            narrowed[key] = narrow_capabilities(mine, value)
        elif value == mine:
            narrowed[key] = value
    return narrowed


class _NarrowingStamp:
    """A session's own stamp, then (2026-07-28: per request) the client capabilities
    narrowed to what the host of the call declared (``DECLARING``), and the log level
    to what it asked for.

    The gateway's sessions ask for every level (``log_level="debug"``: logs between
    calls, and those of a handshake-era host's calls, which may take any level).  A
    2026-07-28 host asks per request: the level its request named (its ``meta``; a
    request that names one itself keeps it), and none when it named none: the upstream
    is then not asked for logs either (it would log, serialise and stream what the
    gateway drops; asking cost a FastMCP upstream ~10 us of CPU per call, replayed).
    ``NO_HOST`` (the gateway's own requests) asks for none."""

    __slots__ = ("stamp",)

    def __init__(self, stamp: Callable[[dict[str, Any], Any], None]) -> None:
        self.stamp = stamp

    def __call__(self, data: dict[str, Any], opts: Any) -> None:
        params = data.get("params")
        given = params.get("_meta") if isinstance(params, dict) else None
        asked = isinstance(given, dict) and types.LOG_LEVEL_META_KEY in given
        self.stamp(data, opts)
        host = DECLARING.get()
        if host is None:
            return
        meta = data.get("params", {}).get("_meta")
        ours = meta.get(types.CLIENT_CAPABILITIES_META_KEY) if meta is not None else None
        if not isinstance(ours, dict):
            return  # a handshake-era stamp: capabilities were declared once, at connect
        theirs = host.declared_capabilities()
        if theirs is not None:
            meta[types.CLIENT_CAPABILITIES_META_KEY] = narrow_capabilities(ours, theirs)
        if not asked and host.is_modern:
            level = (host.meta or {}).get(types.LOG_LEVEL_META_KEY)
            if level is None:
                meta.pop(types.LOG_LEVEL_META_KEY, None)
            else:  # a request the host's meta was not forwarded in (tasks/get, ...)
                meta[types.LOG_LEVEL_META_KEY] = level


def narrowing_stamp(session: ClientSession) -> None:
    """Make ``session``'s stamp (the SDK's ``send_request`` and ``stamp_request`` both
    use it) declare per request only the capabilities the host of the call declared,
    while ``DECLARING`` names that call.  Idempotent; re-applied cheaply after the
    session negotiated again (which replaces its stamp)."""
    stamp = session._stamp
    if type(stamp) is not _NarrowingStamp:
        session._stamp = _NarrowingStamp(stamp)


async def send_raw_request(
    session: ClientSession, method: str, params: dict[str, Any] | None, opts: Any
) -> dict[str, Any]:
    """Send a stamped request on the session's dispatcher; the result comes back as
    JSON, without the SDK's result models (their validation costs more than a relay)."""
    return await session._dispatcher.send_raw_request(method, params, opts)


async def deliver_notification(session: ClientSession, method: str,
                               params: dict[str, Any] | None) -> None:
    """Hand ``session`` a server notification the gateway read itself (a log on a
    2026-07-28 call's stream, ``upstream/http_tap.py``): validated for the
    negotiated era and run through the session's callbacks, in the caller's context,
    as if the SDK's transport had read it.  Never raises (the SDK contains it)."""
    await session._on_notify(cast(Any, None), method, params)


def session_closed(session: ClientSession) -> bool:
    """True once the session's connection is gone (the dispatcher's flag: the SDK has no
    public event; ``AttributeError`` if it changed, never a silent "still open")."""
    return bool(cast(Any, session._dispatcher)._closed)


# -- the server side ------------------------------------------------------------------


def current_transport() -> str | None:
    """The current request's transport (FastMCP's private ContextVar), None outside one."""
    return _current_transport.get()


def connection_of(session: Any) -> Connection | None:
    """The SDK ``Connection`` behind a request's server session (``None`` in-process)."""
    return cast("Connection | None", getattr(session, "_connection", None))


def client_log_level(connection: Any) -> str | None:
    """The minimum log level a handshake-era host set with ``logging/setLevel`` on
    ``connection`` (FastMCP keeps it in the connection's state), or ``None``."""
    state = getattr(connection, "state", None)
    return None if state is None else cast("str | None", state.get(_CONNECTION_LOG_LEVEL_KEY))


def open_http_sessions(manager: Any) -> dict[str, Any]:
    """A streamable HTTP session manager's open sessions by id (it has no public view)."""
    return cast("dict[str, Any]", manager._server_instances)


def http_session_owner(manager: Any, session_id: str) -> tuple[bool, Any]:
    """Whether a streamable HTTP session manager holds ``session_id``, and the caller
    that opened it (the SDK's ``AuthorizationContext``; None without auth)."""
    return session_id in manager._server_instances, manager._session_owners.get(session_id)


def low_level_server(server: FastMCP[Any]) -> Server[Any]:
    """The SDK server under a FastMCP server: where extra request handlers are added
    (``subscriptions/listen``, ``resources/subscribe``, ``completion/complete``)."""
    return cast("Server[Any]", server._mcp_server)


class _Round:
    """What ``RequestStateBoundary`` reads of a request context (its ``method`` and
    ``params``), with the caller's binding for ``RoundStates``' policy to return."""

    __slots__ = ("binding", "method", "params")

    def __init__(self, params: dict[str, Any], binding: str | None) -> None:
        self.method, self.params, self.binding = "tools/call", params, binding


def _given_binding(ctx: Any) -> str | None:
    return cast("str | None", ctx.binding)


class RoundStates:
    """The ``requestState`` seal of a FastMCP server's full path, for its express lanes.

    FastMCP's ``RequestStateBoundary`` seals the state of every asking round the full
    path answers (AES-GCM under the server's keys, in an envelope binding the method,
    tool name, arguments digest, audience, caller and expiry) and opens every state a
    host echoes.  The lanes answer ``tools/call`` in front of it, so they seal and open
    with the same boundary's private ``_seal`` / ``_unseal``: the same keys, TTL and
    audience, the same envelope, so that a round either path began goes on on either
    (and on any gateway sharing the keys).  The one difference: the caller's binding is
    given (``principal_binding``), where the boundary reads the request's access token
    from a context variable the lanes never set.  The server must use the SDK's default
    binding (``authenticated_principal``), as the gateway's does.
    """

    def __init__(self, boundary: RequestStateBoundary) -> None:
        security = boundary._security
        self._boundary = RequestStateBoundary(
            RequestStateSecurity(codec=security.codec, ttl=security.ttl,
                                 audience=boundary._audience, bind_principal=_given_binding),
            default_audience=None)

    @classmethod
    def of(cls, server: FastMCP[Any]) -> RoundStates:
        """The seal of ``server``'s full path (the boundary FastMCP installed)."""
        for middleware in low_level_server(server).middleware:
            if isinstance(middleware, RequestStateBoundary):
                return cls(middleware)
        raise RuntimeError("FastMCP installed no RequestStateBoundary: the express lanes "
                           "cannot seal requestState as its full path does")

    @classmethod
    def ephemeral(cls, audience: str | None) -> RoundStates:
        """Under a key of this process's own (a lane built without a server's seal)."""
        return cls(RequestStateBoundary(RequestStateSecurity.ephemeral(),
                                        default_audience=audience))

    def seal(self, params: dict[str, Any], binding: str | None, state: str) -> str:
        """``state`` sealed for the ``tools/call`` whose host ``params`` (name,
        arguments) asked, by the caller of ``binding``; raises ``MCPError`` (internal
        error, the reason logged) when the codec fails, as the full path does."""
        return self._boundary._seal(cast(Any, _Round(params, binding)), state)

    def open(self, params: dict[str, Any], binding: str | None) -> str:
        """The plaintext of ``params``' ``requestState``, checked as the full path checks
        it (seal, expiry, tool name, arguments, audience, caller); raises ``MCPError``
        ("Invalid or expired requestState", the reason logged as a warning)."""
        plaintext, _ = self._boundary._unseal(cast(Any, _Round(params, binding)))
        return plaintext


def principal_binding(token: AccessToken | None) -> str | None:
    """The caller binding the full path seals into a ``requestState`` for a request
    authenticated by ``token`` (the SDK's ``authenticated_principal``: its client id,
    issuer and subject; ``None`` for an unauthenticated request)."""
    return None if token is None else compact_json(principal_components(token))


def lifespan(server: FastMCP[Any]) -> AbstractAsyncContextManager[Any]:
    """FastMCP's lifespan, entered as ``run_stdio_async`` enters it: the gateway runs
    stdio itself (without the SDK's threads) and must run the same lifespan."""
    return cast("AbstractAsyncContextManager[Any]", server._lifespan_manager())


class StateOnWrite:
    """FastMCP's session-state store, made on its first write.

    FastMCP reads the session's visibility rules from that store on every list
    (``get_session_transforms``), and making it imports ``key_value`` and ``beartype``
    (~4.6 MB of RSS, ~700 modules) although nothing was ever written.  Until something
    is (``put``, or any other use of the store: ``ctx.set_state``, session visibility,
    ``UserSession``), ``get`` answers its ``default`` without the store.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._store: Any = None

    @property
    def made(self) -> bool:
        """Whether the real store exists (something was written)."""
        return self._store is not None

    async def get(self, key: str, *, collection: str | None = None,
                  default: Any = None) -> Any:
        if self._store is None:
            return default
        return await self._store.get(key=key, collection=collection, default=default)

    def __getattr__(self, name: str) -> Any:   # put, delete, ttl, ...: the real store
        if self._store is None:
            self._store = self._make()
        return getattr(self._store, name)


class PreferredToolServer(FastMCP[Any]):
    """A FastMCP server that asks ``prefer_tool`` first when resolving a tool by name.

    FastMCP resolves a tool by asking every provider concurrently (a task group per
    call).  The gateway's upstream tools live in one O(1) table whose names never
    collide with its own tools, so asking it first changes no answer, only the cost of
    every ``tools/call``.  A tool with its own ``auth`` is left to FastMCP.
    """

    prefer_tool: Callable[[str], Awaitable[Tool | None]] | None = None
    _lazy_state: StateOnWrite | None = None

    @property
    def _state_store(self) -> Any:
        # FastMCP's own (a property) when a store was configured; else made on write.
        if self._state_storage is not None:
            return FastMCP._state_store.fget(self)  # type: ignore[attr-defined]
        if self._lazy_state is None:
            self._lazy_state = StateOnWrite(
                lambda: FastMCP._state_store.fget(self))  # type: ignore[attr-defined]
        return self._lazy_state

    @property
    def state_made(self) -> bool:
        """Whether FastMCP's session-state store exists (it is made on a first write)."""
        return self._state_storage is not None

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        if version is None and self.prefer_tool is not None:
            tool = await self.prefer_tool(name)
            if tool is not None and tool.auth is None:
                return tool
        return await super()._get_tool(name, version)



# -- FastMCP's bearer-token guard on the MCP endpoint (http/app.py) ----------------------


def reword_auth_challenges(app: Any, missing: Callable[[], str],
                           invalid: Callable[[], str]) -> int:
    """FastMCP's ``RequireAuthMiddleware`` on ``app``'s routes, answering in the gateway's
    words: ``missing()`` (no bearer token) and ``invalid()`` (one that did not verify),
    read per answer, as the JSON body's ``error_description`` (and ``invalid()`` in the
    challenge's).  Its own words
    tell the client to re-register with an OAuth server, which a gateway's static token
    never does.  The challenges are FastMCP's otherwise (RFC 6750: no ``error`` attribute
    when no token came; ``resource_metadata`` and ``scope``).  How many guards it found."""
    import json

    from fastmcp.server.auth.middleware import RequireAuthMiddleware

    if any(c in invalid() for c in '"\\') or not invalid().isprintable():
        raise ValueError("an error_description is a quoted-string in the challenge: "
                         "no double quote, backslash or control character")

    class Worded(RequireAuthMiddleware):  # type: ignore[misc]
        async def _send_missing_auth(self, send: Any) -> None:
            parts = self._challenge_context()
            await _send_challenge(send, 401, ("Bearer " + ", ".join(parts)) if parts
                                  else "Bearer", {"error": "unauthorized",
                                                  "error_description": missing()})

        async def _send_auth_error(self, send: Any, status_code: int, error: str,
                                   description: str) -> None:
            if not (error == "invalid_token" and status_code == 401):
                await super()._send_auth_error(send, status_code, error, description)
                return
            words = invalid()
            parts = [f'error="{error}"', f'error_description="{words}"',
                     *self._challenge_context()]
            await _send_challenge(send, 401, "Bearer " + ", ".join(parts),
                                  {"error": error, "error_description": words})

    async def _send_challenge(send: Any, status: int, challenge: str,
                              body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"www-authenticate", challenge.encode())]})
        await send({"type": "http.response.body", "body": data})

    found = 0
    for route in getattr(app, "routes", ()):
        guard = getattr(route, "app", None)
        if type(guard) is RequireAuthMiddleware:
            worded = Worded(guard.app, guard.required_scopes, guard.resource_metadata_url,
                            guard.challenge_scopes)
            route.app = worded
            found += 1
    return found


def tracer_provider_set() -> bool | None:
    """Whether OpenTelemetry has a tracer provider set (its ``_TRACER_PROVIDER``), None
    when this OpenTelemetry keeps it elsewhere: ``get_tracer_provider`` then says."""
    from opentelemetry import trace

    provider = getattr(trace, "_TRACER_PROVIDER", trace)
    return None if provider is trace else provider is not None
