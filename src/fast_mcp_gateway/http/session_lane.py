"""The session lane: a handshake-era host's ``tools/call`` on its HTTP session, past the stack.

Hosts of the handshake era (protocol 2025-11-25 and older: Claude Desktop, the MCP
Inspector, every mcp 1.x client) open a session with ``initialize`` and POST each
request under its ``Mcp-Session-Id``.  The SDK's session manager hands such a POST to
the session's transport, which parses it into models, queues it to the session's
serving task, runs it through FastMCP's middleware and the tool, and streams the
answer back through two memory streams and sse-starlette: ~8,000 Python calls per
call, where the 2026-07-28 lane (``lane.py``) spends ~800.  This lane answers the
commonest request, a ``tools/call`` of an upstream tool, itself, on the session the
SDK made:

* only a POST the full path would serve as such: a session the SDK's manager holds
  (``_compat.open_http_sessions``), opened by the same credential
  (``http_session_owner``: the token verified first, by the app's one ``Access``; one
  that does not verify goes to FastMCP's 401 with its body unread), whose
  ``notifications/initialized`` came, seen by the full path with that credential
  (``session_hosts.py``), an ``Accept`` with both JSON and SSE, a JSON content type, a
  single request whose id is not in flight on the session (``request_ids``), and only
  while the session manager streams answers without an event store (the gateway's);
* ``UpstreamTool.call_raw`` runs the call through the same ``CallPipeline`` as any
  call, with the session's ``Connection`` as its host (``FrontCall.host``, as on the
  full path: the key of asks by timing, ``per_client`` sessions and roots), the level
  the host set with ``logging/setLevel`` read at each log, a handshake-era result;
* the answer is the SDK's SSE stream (``session_reply.py``), the session's idle
  countdown held meanwhile as the SDK holds it (``_compat_sessions.HeldSession``);
* the host's ``notifications/cancelled`` for a call of the lane (a POST on the
  session, with any credential of the session's owner) cancels it (answered 202, the
  stream ends with ``REQUEST_CANCELLED``), and its answer to a question the lane put on
  a call's stream is taken here (202); a
  host that goes away cancels the call; a session that ends (DELETE, expiry) ends
  its lane calls and their streams.

Anything else goes to FastMCP's app unchanged (the body replayed): other methods, an
unknown session or another credential's, a batch, a 2026-07-28 envelope, tasks,
``requestState``, unusual keys, a tool the stdio lane would not take
(``UpstreamTool.serves_raw``), a server taking the caller's credentials, a token
without access to the tool's server, and whenever OpenTelemetry tracing is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mcp_types as types
import pydantic_core
from mcp.server.streamable_http import check_accept_headers
from mcp.shared.dispatcher import as_request_id, coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp_types import (
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway._compat import http_session_owner, open_http_sessions
from fast_mcp_gateway._compat_sessions import HeldSession
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.front.early import parse_line
from fast_mcp_gateway.front.lane_host import LaneFront
from fast_mcp_gateway.front.remembered import Remembered
from fast_mcp_gateway.front.request_ids import id_key
from fast_mcp_gateway.front.wire import (
    result_fields,
    shape_result,
    tracing_configured,
    upstream_call,
)
from fast_mcp_gateway.http.access import Access, lane_principal, outside_servers
from fast_mcp_gateway.http.lane import _HostLeft, _watch
from fast_mcp_gateway.http.session_hosts import SessionHosts
from fast_mcp_gateway.http.session_reply import (
    HEAD_WITHIN,
    SessionLevels,
    SessionReply,
    cancelled_body,
    encode_message,
    send_accepted,
)
from fast_mcp_gateway.http.slow_clients import HOST_GONE, HostGone, hold_head
from fast_mcp_gateway.http.stop_answers import note_body, note_id
from fast_mcp_gateway.http.transport_refusals import MAX_MESSAGE, read_body, replay
from fast_mcp_gateway.principal import KIND_CLAIM
from fast_mcp_gateway.upstream.credentials import Caller

if TYPE_CHECKING:
    from mcp.server.connection import Connection

    from fast_mcp_gateway.front.components import UpstreamTool
    from fast_mcp_gateway.front.provider import GatewayProvider
    from fast_mcp_gateway.principal import Principal
    from fast_mcp_gateway.routing.service import Service

logger = logging.getLogger(__name__)

_HANDSHAKE = frozenset(v.encode() for v in HANDSHAKE_PROTOCOL_VERSIONS)
_CALL_KEYS = frozenset({"jsonrpc", "id", "method", "params"})
_PARAM_KEYS = frozenset({"name", "arguments", "_meta"})
_CANCEL = "notifications/cancelled"
_HOST = "host"  # why a call was stopped: its host went away,
_CANCELLED = "cancelled"  # the host cancelled it,
_ENDED = "ended"  # its session ended


@dataclass(slots=True)
class _Plan:
    """A call the lane takes: everything decided before anything is sent upstream."""

    tool: UpstreamTool
    route: tuple[Service, str | None]
    request_id: str | int
    params: dict[str, Any]
    meta: dict[str, Any]
    principal: Principal
    caller: Caller | None
    connection: Connection
    transport: Any
    session: bytes
    held: tuple[bytes, Any, Any]
    key: Any


class _Stop(_HostLeft):
    """Cancels a lane call's task once (its host left, cancelled it, its session ended)."""

    __slots__ = ("reason",)

    def stop(self, reason: str) -> None:
        if not (self.cancelled or self.done):
            self.reason = reason
            self()

    def __call__(self) -> None:
        if not hasattr(self, "reason"):
            self.reason = _HOST
        super().__call__()


class SessionLane:
    """ASGI app in front of FastMCP's streamable-HTTP app (see the module doc)."""

    def __init__(self, app: ASGIApp, access: Access, provider: GatewayProvider,
                 hosts: SessionHosts, manager: Callable[[], Any], *, enabled: bool = True,
                 held: set[tuple[bytes, Any, Any]] | None = None,
                 max_body: int = MAX_MESSAGE) -> None:
        self.app = app
        self.access, self.provider, self.hosts, self.manager = access, provider, hosts, manager
        self.enabled = enabled
        self.max_body = max_body
        # (session, caller, id key) of requests in flight on a session: shared with the
        # full path's ``request_ids.InFlightIds``, so that an id is refused on either.
        self.held = held if held is not None else set()
        self.served = 0  # calls the lane answered (tests and diagnostics)
        self.calls: dict[tuple[str, Any], _Stop] = {}  # (session, id key) -> its stop
        self.asks: dict[tuple[str, Any], asyncio.Future[dict[str, Any]]] = {}
        self._caller_credentials = Remembered[ServerConfig, bool](
            lambda config: config.uses_caller_credentials)
        self._accepts: dict[bytes, bool] = {}  # Accept -> both JSON and SSE
        self._capabilities: weakref.WeakKeyDictionary[Connection, dict[str, Any]] = \
            weakref.WeakKeyDictionary()  # a host's handshake capabilities, as JSON
        hosts.on_end.append(self.session_ended)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self._may_take(scope) if self.enabled else None
        if session is None or tracing_configured():
            await self.app(scope, receive, send)
            return
        # Verified before the session is looked at: a bad token costs the same on a
        # live session as on a made-up one (no timing tells it which exist).
        found = await self.access.verified(scope)
        manager = self.manager()
        transport = open_http_sessions(manager).get(session.decode("latin-1"))
        known = self.hosts.get(session.decode("latin-1")) if transport is not None else None
        if found is None or known is None or manager.json_response \
                or manager.event_store is not None or not known[0].initialized.is_set() \
                or HeldSession(transport).expired:  # found None: FastMCP's 401, body unread
            await self.app(scope, receive, send)
            return
        body, end = await read_body(receive, self.max_body)
        taken: bool | _Plan = False
        seen = self._same_caller(scope, manager, session, found, known[1]) \
            if end == "whole" and len(body) <= self.max_body else None
        if seen is not None:
            try:
                taken = await self._take(scope, send, body, session, found, known[0],
                                         transport, seen)
            except Exception:  # a lane bug must not cost the host its answer
                logger.exception("session lane: passing a request on after an error")
        if isinstance(taken, _Plan):
            self.served += 1
            await self._serve(taken, scope, receive, send)
        elif not taken:
            try:
                await self.app(scope, replay(body, end, receive), send)
            except asyncio.CancelledError:  # a stop's answer names its id
                note_body(scope, body)
                raise

    # -- deciding -----------------------------------------------------------------------

    def _may_take(self, scope: Scope) -> bytes | None:
        """The session id of a handshake-era JSON POST the lane may take, else None."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        session = version = content_type = accept = None
        for key, value in scope["headers"]:
            if key == b"mcp-session-id":
                session = session or value
            elif key == b"mcp-protocol-version":
                version = version or value
            elif key == b"content-type":
                content_type = content_type or value
            elif key == b"accept":
                accept = accept or value
        if session is None or (version is not None and version not in _HANDSHAKE) \
                or content_type is None or not _json_content(content_type):
            return None
        accepts = self._accepts.get(accept or b"")
        if accepts is None:  # the SDK's own check, remembered per Accept value
            has_json, has_sse = check_accept_headers(Request(scope))
            accepts = has_json and has_sse
            if len(self._accepts) >= 64:
                self._accepts.clear()
            self._accepts[accept or b""] = accepts
        return session if accepts else None

    def _same_caller(self, scope: Scope, manager: Any, session: bytes,
                     found: tuple[Principal, str | None], seen: str | None) -> bool | None:
        """None unless the request's caller opened the session (the SDK's check: all a
        cancellation or an answer needs), else whether its credential is the one the full
        path last saw on it (``session_hosts``: what a call needs)."""
        held, owner = http_session_owner(manager, session.decode("latin-1"))
        binding = found[1]
        opened_by = None if owner is None else json.dumps(
            [owner["client_id"], owner["issuer"], owner["subject"]], separators=(",", ":"))
        if not held or opened_by != binding:
            return None
        if self.access.verifier is None:
            return seen is None
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return header[7:].decode("latin-1") == seen

    async def _take(self, scope: Scope, send: Send, body: bytes, session: bytes,
                    found: tuple[Principal, str | None], connection: Connection,
                    transport: Any, seen: bool) -> bool | _Plan:
        """The call to serve, True for a POST answered here (a cancellation, an answer
        to a question: a refreshed JWT's too), False for one to pass on."""
        # Not JSON the SDK's parser reads alike (not UTF-8, NaN, a lone surrogate, deep
        # nesting): the SDK's to judge.
        message = parse_line(body)
        if message is None:  # but a cancellation or an answer (no method) is read as the
            message = _sdk_read(body)  # SDK reads it, to be taken
            if not isinstance(message, dict) or message.get("method", _CANCEL) != _CANCEL:
                return False
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return False
        method = message.get("method")
        if method is None:
            return await self._take_answer(message, session, send)
        if method == _CANCEL:
            return await self._take_cancel(message, session, send)
        if method != "tools/call" or not seen:
            return False
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        plan = self._plan(message, session, found, connection, transport,
                          header[7:].decode("latin-1"))
        return False if plan is None else plan

    async def _take_answer(self, message: dict[str, Any], session: bytes, send: Send
                           ) -> bool:
        """The host's answer to a question of a lane call: handed to it, answered 202."""
        ask_id = as_request_id(message.get("id"))  # matched as the SDK matches it ("7": 7)
        answer = None if ask_id is None else self.asks.get(
            (session.decode("latin-1"), coerce_request_id(ask_id)))
        if answer is None:
            return False  # the answer to one of the SDK's own requests, or to none
        try:  # read as the SDK reads it (other members ignored; an error over a result)
            read = jsonrpc_message_adapter.validate_python(message, by_name=False)
        except ValueError:  # pydantic's ValidationError: the SDK's 400
            return False
        if not isinstance(read, JSONRPCError | JSONRPCResponse):
            return False
        await send_accepted(send, session)
        if not answer.done():
            answer.set_result(read.model_dump(by_alias=True, exclude_unset=True))
        return True

    async def _take_cancel(self, message: dict[str, Any], session: bytes, send: Send
                           ) -> bool:
        try:  # read as the SDK reads it: a notification, whose requestId alone counts
            read = jsonrpc_message_adapter.validate_python(message, by_name=False)
        except ValueError:  # pydantic's ValidationError: the SDK's 400
            return False
        params = read.params if isinstance(read, JSONRPCNotification) else None
        stop = self.calls.get((session.decode("latin-1"), id_key((params or {}).get(
            "requestId"))))
        if stop is None:
            return False
        await send_accepted(send, session)
        stop.stop(_CANCELLED)
        return True

    def _plan(self, message: dict[str, Any], session: bytes,
              found: tuple[Principal, str | None], connection: Connection,
              transport: Any, bearer: str) -> _Plan | None:
        request_id, params = message.get("id"), message.get("params")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool) \
                or not isinstance(params, dict) or not set(message) <= _CALL_KEYS \
                or not set(params) <= _PARAM_KEYS:
            return None  # tasks, requestState, ...: the full path's
        meta = params.get("_meta")
        meta = {} if meta is None else meta
        arguments, name = params.get("arguments"), params.get("name")
        if not isinstance(meta, dict) or not isinstance(name, str) \
                or not (arguments is None or isinstance(arguments, dict)):
            return None
        token = meta.get("progressToken")
        if types.PROTOCOL_VERSION_META_KEY in meta or types.LOG_LEVEL_META_KEY in meta or (
                "progressToken" in meta and (not isinstance(token, str | int)
                                             or isinstance(token, bool))):
            return None  # a 2026-07-28 envelope, or invalid: the SDK judges it
        principal, _binding = found
        key = id_key(request_id)
        caller_key = (principal.kind, principal.name) if self.access.verifier else None
        held = (session, caller_key, key)
        if key is None or held in self.held or not principal.has("tools"):
            return None  # a duplicate id is the full path's 400 (request_ids)
        tool = self.provider.lane_tool(name)
        route = tool.serves_raw() if tool is not None else None
        if tool is None or route is None:
            return None
        if self._caller_credentials(route[0].name, route[0].config):
            return None  # the caller's own token and claims: FastMCP's verified ones
        if outside_servers(principal, tool.owner.name, route[0].name):
            return None  # "Unknown tool", as the full path words it
        caller = None
        if self.access.verifier is not None:
            # As on the full path (``FrontCall.caller``) and the 2026-07-28 lane.
            caller = Caller(name=principal.name, token=bearer,
                            claims={KIND_CLAIM: principal.kind})
        return _Plan(tool=tool, route=route, request_id=request_id, params=params,
                     meta=meta, principal=principal, caller=caller, connection=connection,
                     transport=transport, session=session, held=held, key=key)

    # -- serving ------------------------------------------------------------------------

    async def _answer(self, plan: _Plan, reply: SessionReply) -> bytes:
        connection = plan.connection
        version = connection.protocol_version
        forward, upstream_params = upstream_call(plan.tool.original, plan.params, plan.meta)
        fields = result_fields(version)
        token = plan.meta.get("progressToken")
        client_id = plan.meta.get("client_id")
        front = LaneFront(
            session=None, request_id=plan.request_id, meta=forward or None,
            client_id=client_id if isinstance(client_id, str) and client_id else "http",
            protocol_version=version, host=connection, lane=reply, progress_token=token,
            log_levels=SessionLevels(connection),  # type: ignore[arg-type]  # a live set
            caller=plan.caller)
        request_id = plan.request_id

        def encode(result: dict[str, Any]) -> bytes:
            result = shape_result(result, fields, False, dict)
            return encode_message({"jsonrpc": "2.0", "id": request_id, "result": result})

        principal = lane_principal.set(plan.principal)
        try:
            return await _call(plan.tool, plan.route, upstream_params, front, encode,
                               token, reply)
        except MCPError as exc:  # the upstream's error response, relayed as it came
            error = exc.error.model_dump(by_alias=True, mode="json", exclude_none=True)
        except Exception as exc:
            logger.exception("session lane: tools/call %r failed", plan.tool.name)
            error = {"code": types.INTERNAL_ERROR,
                     "message": f"internal error in the gateway: {exc}"}
        finally:
            lane_principal.reset(principal)
        return encode_message({"jsonrpc": "2.0", "id": request_id, "error": error})

    async def _serve(self, plan: _Plan, scope: Scope, receive: Receive, send: Send) -> None:
        """The SDK's SSE answer (started at once), the call run in this task; a stop
        (the host leaving or cancelling, the session ending) cancels it once."""
        gone = scope.get("extensions", {}).get(HOST_GONE)
        hold_head(scope, HEAD_WITHIN)  # the head leaves with the first event, if it is soon
        loop = asyncio.get_running_loop()
        stop = _Stop(asyncio.current_task(loop))
        session = plan.session.decode("latin-1")
        call_key = (session, plan.key)
        caps = self._capabilities.get(plan.connection)
        if caps is None:  # declared once, in the handshake: dumped once
            declared = plan.connection.client_capabilities
            caps = self._capabilities[plan.connection] = {} if declared is None else \
                declared.model_dump(by_alias=True, mode="json", exclude_none=True)
        reply = SessionReply(send, plan.session, caps, self.asks, plan.connection.outbound,
                             plan.principal.name)
        self.held.add(plan.held)  # before any await: a second POST of the id is refused
        watcher = None
        try:
            with HeldSession(plan.transport):
                await reply.start(loop)
                self.calls[call_key] = stop  # a stop may cancel it from now on
                if HeldSession(plan.transport).expired:  # ended (DELETE) as it began
                    stop.stop(_ENDED)
                if isinstance(gone, HostGone):  # our httptools protocol: no task per call
                    gone.watch(stop)
                else:
                    watcher = loop.create_task(_watch(receive, stop))
                body: bytes | None
                try:
                    body = await self._answer(plan, reply)
                except asyncio.CancelledError:
                    if not stop.cancelled or stop.task.uncancel() > stop.base:
                        note_id(scope, plan.request_id)  # a stop's answer names it
                        raise  # not (only) the lane's stop: the server is stopping
                    body = None
                finally:
                    stop.done = True
                    if watcher is not None:
                        watcher.cancel()
                    elif isinstance(gone, HostGone):
                        gone.watch(None)
                if stop.cancelled and body is not None \
                        and stop.task.uncancel() > stop.base:  # stopped as the call ended,
                    raise asyncio.CancelledError  # and another cancel came too
                reason = getattr(stop, "reason", None) if stop.cancelled else None
                if reason == _HOST:
                    reply.stop_pings()
                    return  # nobody to answer
                if reason == _CANCELLED and body is None:
                    body = cancelled_body(plan.request_id)
                if reason != _ENDED:
                    await reply.withdrawn()
                else:  # the session is gone: what its host did not read is dropped
                    reply.backlog.drop()
                await reply.finish(body if reason != _ENDED else None)
        finally:
            reply.stop_pings()
            self.held.discard(plan.held)
            if self.calls.get(call_key) is stop:
                del self.calls[call_key]

    def session_ended(self, session: str) -> None:
        """A session's connection closed (DELETE, expiry, a stop): its calls end."""
        for (owner, _), stop in list(self.calls.items()):
            if owner == session:
                stop.stop(_ENDED)


def _sdk_read(body: bytes) -> Any:
    """``body`` as the SDK's transport parses it (pydantic-core: NaN a number, nesting to
    200 levels), None where it refuses it (its 400, which the full path answers)."""
    try:
        return pydantic_core.from_json(body)
    except ValueError:
        return None


def _json_content(value: bytes) -> bool:
    """The SDK's two checks of a POST's ``Content-Type`` (its transport security's and
    its transport's): a JSON-RPC message, as an answer or cancellation may be sent."""
    return value.lower().startswith(b"application/json") and any(
        part.strip() == b"application/json" for part in value.split(b";")[0].split(b","))


async def _call(tool: UpstreamTool, route: tuple[Service, str | None],
                params: dict[str, Any], front: LaneFront, encode: Callable[..., bytes],
                token: Any, reply: SessionReply) -> bytes:
    # Any upstream may answer input_required: its asks are put to this handshake-era
    # host (``reply.ask``), as the stdio lane bridges them.
    return await tool.call_raw(route, params, front, encode,
                               front.progress if token is not None else None, reply.ask)


__all__ = ["SessionLane"]
