"""The FastMCP / SDK internals of the gateway's server side (see ``_compat``).

What the gateway's front needs of the servers it is made of: the current request's
transport and connection, a handshake-era host's log level, the streamable HTTP session
manager's sessions, the SDK server under FastMCP, FastMCP's ``requestState`` seal, its
lifespan and session-state store, its tool resolution, its bearer-token guard and
OpenTelemetry's provider.  ``_compat`` re-exports every name; the same rules hold
(``tests/test_compat.py``).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, cast

from fastmcp import FastMCP
from fastmcp.server.context import _CONNECTION_LOG_LEVEL_KEY, _current_transport
from fastmcp.tools.base import Tool
from fastmcp.utilities.versions import VersionSpec
from mcp.server.auth.provider import AccessToken, principal_components
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity, compact_json

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from mcp.server.connection import Connection
    from mcp.server.lowlevel import Server



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


def reword_auth_challenges(app: Any, missing: Callable[[bytes], str],
                           invalid: Callable[[], str],
                           metadata: Callable[[], str] | None = None) -> int:
    """FastMCP's ``RequireAuthMiddleware`` on ``app``'s routes, answering in the gateway's
    words: ``missing(query)`` (no bearer token; ``query``: the request's query string,
    where a client may have put one) and ``invalid()`` (one that did not verify), read
    per answer, as the JSON body's ``error_description`` (and ``invalid()`` in the
    challenge's).  Its own words
    tell the client to re-register with an OAuth server, which a gateway's static token
    never does.  The challenges are FastMCP's otherwise (RFC 6750: no ``error`` attribute
    when no token came; ``resource_metadata`` and ``scope``), with ``metadata()``, read per
    answer, as ``resource_metadata`` when given.  How many guards it found."""
    import json

    from fastmcp.server.auth.middleware import RequireAuthMiddleware

    if any(c in invalid() for c in '"\\') or not invalid().isprintable():
        raise ValueError("an error_description is a quoted-string in the challenge: "
                         "no double quote, backslash or control character")

    class Worded(RequireAuthMiddleware):  # type: ignore[misc]
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            # FastMCP's own test for bearer credentials, made here to pass the query on.
            if scope["type"] == "http" and not any(
                    name.lower() == b"authorization" and value[:7].lower() == b"bearer "
                    for name, value in scope.get("headers", ())):
                await self._missing(send, scope.get("query_string", b""))
                return
            await super().__call__(scope, receive, send)

        async def _send_missing_auth(self, send: Any) -> None:
            await self._missing(send, b"")

        def _challenge_context(self) -> list[str]:
            parts: list[str] = super()._challenge_context()
            if metadata is None:
                return parts
            return [f'resource_metadata="{metadata()}"'
                    if part.startswith("resource_metadata=") else part for part in parts]

        async def _missing(self, send: Any, query: bytes) -> None:
            parts = self._challenge_context()
            await _send_challenge(send, 401, ("Bearer " + ", ".join(parts)) if parts
                                  else "Bearer", {"error": "unauthorized",
                                                  "error_description": missing(query)})

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
