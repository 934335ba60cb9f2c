"""The HTTP express lane: 2026-07-28 ``tools/call`` POSTs relayed as JSON, past the stack.

Over streamable HTTP a relayed call spent about a quarter of its gateway CPU in the
SDK and FastMCP server stack (the ASGI middleware chain, the session manager,
FastMCP's middleware and telemetry spans, typed models parsed and re-encoded).  A
2026-07-28 request is self-contained (no session: its envelope says who the host
is), so the gateway can answer the commonest one itself, in front of FastMCP's app:

* the host's token is verified first, by the app's one ``Access`` (the principal the
  full path would resolve): one that does not verify goes to FastMCP's 401 with its
  body unread, as the full path's guard answers it (read first, a client without a
  token held up to 4 MiB per connection for as long as it sent no more);
* the body is parsed once; the SDK's own inbound ladder (``classify_inbound_request``)
  judges the envelope and routing headers;
* ``UpstreamTool.call_raw`` runs the call through the same ``CallPipeline`` as any
  call (route rule, servers check, authorizer, curator, results stage, rate limits,
  balancing, retries, observers, error mapping), with the JSON encoding the stdio
  lane uses (``front/wire.py``);
* the answer is written as the SDK's modern entry writes it: ``application/json``
  with the error table's HTTP status, or, for a call still running after
  ``SSE_DEFER`` seconds or meeting a notification first (progress to the host's own
  token, logs at the level it asked for), an SSE stream of them with keepalive pings;
  the host's disconnect cancels the call (upstream too), as on the full path.

Anything it does not fully understand goes to FastMCP's app unchanged (the body
replayed): other methods and eras, a session, an ``Accept`` without both JSON and
SSE, ``Mcp-Param-*`` headers or a tool whose schema declares them, a token that lacks
access to the tool's server (the full path words those refusals),
tools the stdio lane would not take either (``UpstreamTool.serves_raw``), and whenever
OpenTelemetry tracing is configured (the full path emits the spans); through
``http/roots_changed.py`` first, which notes a 2026-07-28 host's ``roots/list_changed``
(the SDK drops it).  MRTR rounds are the full path's too: an asking round's
``requestState`` is sealed and a continuation's opened as FastMCP's
``RequestStateBoundary`` does (``_compat.RoundStates``, the server's keys, bound to the
caller), so a round goes on on either path of any gateway sharing the
keys; a state that does not open goes to the full path, which refuses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.connection import allowed_log_levels
from mcp.server.runner import modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway._compat import RoundStates
from fast_mcp_gateway.config.json_text import finite_float, no_constant
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.front.lane_host import LaneFront, open_state
from fast_mcp_gateway.front.parkable import AnsweredEarly
from fast_mcp_gateway.front.remembered import Remembered
from fast_mcp_gateway.front.tasks import takes_tasks
from fast_mcp_gateway.front.wire import (
    encode_body,
    progress_params,
    result_fields,
    shape_result,
    tracing_configured,
    upstream_call,
)
from fast_mcp_gateway.http.access import Access, lane_principal, outside_servers
from fast_mcp_gateway.http.pings import Pinger
from fast_mcp_gateway.http.roots_changed import RootsChangedNote
from fast_mcp_gateway.http.slow_clients import HOST_GONE, HostGone
from fast_mcp_gateway.http.sse_backlog import Backlog
from fast_mcp_gateway.http.stop_answers import note_body, note_id
from fast_mcp_gateway.http.transport_refusals import MAX_MESSAGE, read_body, replay
from fast_mcp_gateway.principal import KIND_CLAIM
from fast_mcp_gateway.upstream.credentials import Caller
from fast_mcp_gateway.upstream.relay import LOG_LEVELS

if TYPE_CHECKING:
    from fast_mcp_gateway.front.components import UpstreamTool
    from fast_mcp_gateway.front.provider import GatewayProvider
    from fast_mcp_gateway.principal import Principal
    from fast_mcp_gateway.routing.service import Service

logger = logging.getLogger(__name__)

SSE_DEFER = 15.0
"""Seconds a call may run before its answer becomes an SSE stream (the SDK's figure)."""

_SSE_HEADERS = [(b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache, no-transform"),
                (b"connection", b"keep-alive"), (b"x-accel-buffering", b"no")]
_PING = b": ping\r\n\r\n"
_PARAM_HEADER = b"mcp-param-"
# NaN / Infinity, 1e400 (infinity to Python's parser and the SDK's): not the lane's
_JSON = json.JSONDecoder(parse_constant=no_constant, parse_float=finite_float)


class _Plan:
    """A call the lane takes: everything decided before anything is sent upstream."""

    __slots__ = ("binding", "caller", "meta", "modern_version", "params", "principal",
                 "request_id", "route", "tool")

    def __init__(self, tool: UpstreamTool, route: tuple[Service, str | None],
                 request_id: str | int, params: dict[str, Any], meta: dict[str, Any],
                 version: str, principal: Principal, binding: str | None,
                 caller: Caller | None = None) -> None:
        self.tool, self.route, self.request_id = tool, route, request_id
        self.params, self.meta, self.modern_version = params, meta, version
        self.principal, self.binding, self.caller = principal, binding, caller


class HttpLane:
    """ASGI app in front of FastMCP's streamable-HTTP app (see the module doc)."""

    def __init__(self, app: ASGIApp, access: Access, provider: GatewayProvider,
                 server_info: Callable[[], dict[str, Any]], *, enabled: bool = True,
                 states: RoundStates | None = None, max_body: int = MAX_MESSAGE) -> None:
        # What it passes on goes through RootsChangedNote: the SDK drops that notification.
        self.app = RootsChangedNote(app, access, provider.manager.sole_host.roots)
        self.full = app  # FastMCP's app: a token that did not verify goes to its 401
        self.access, self.provider = access, provider
        self.max_body = max_body  # the endpoint's (``http_max_body_bytes``): past it, the SDK's
        # The full path's requestState seal (the server's keys): every round is portable.
        self.states = states if states is not None else RoundStates.ephemeral(None)
        self._server_info = server_info
        self._stamp: dict[str, Any] | None = None
        self.enabled = enabled
        self.served = 0  # calls the lane answered (tests and diagnostics)
        self._header_tools = Remembered[Any, bool](
            lambda schema: "x-mcp-header" in json.dumps(schema))
        # A server's headers taking the caller's token: a regex search (~3 us a call).
        self._caller_credentials = Remembered[ServerConfig, bool](
            lambda config: config.uses_caller_credentials)
        self._accepts: dict[str, tuple[bool, bool]] = {}  # Accept -> (JSON, SSE)
        self._loop: asyncio.AbstractEventLoop | None = None  # uvicorn's, one per app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or not self._may_take(scope) or tracing_configured():
            await self.app(scope, receive, send)
            return
        found = await self.access.verified(scope)
        if found is None:  # FastMCP's 401, the body unread (it is read for a caller only)
            await self.full(scope, receive, send)
            return
        # Read up to the SDK's limit: a longer body goes on, to be refused there (413).
        body, end = await read_body(receive, self.max_body)
        plan = None
        if end == "whole" and len(body) <= self.max_body:
            try:
                plan = await self._plan(scope, body, found)
            except Exception:  # a lane bug must not cost the host its answer
                logger.exception("http express lane: passing a request on after an error")
        if plan is None:
            try:
                await self.app(scope, replay(body, end, receive), send)
            except asyncio.CancelledError:  # no cost on the way: a stop names its id
                note_body(scope, body)
                raise
            return
        self.served += 1
        await self._serve(plan, scope, receive, send)

    def server_info(self) -> dict[str, Any]:
        """The gateway's ``serverInfo`` stamp: the SDK deep-copies it on every read
        (~20 us); it never changes, so it is read once and copied shallowly."""
        if self._stamp is None:
            self._stamp = self._server_info()
        return dict(self._stamp)

    # -- deciding -----------------------------------------------------------------------

    @staticmethod
    def _may_take(scope: Scope) -> bool:
        """Cheap header checks: a sessionless 2026-07-28 JSON POST, nothing unusual."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        version = content_type = None
        for key, value in scope["headers"]:
            if key == b"mcp-protocol-version":
                version = value
            elif key == b"content-type":
                content_type = value
            elif key == b"mcp-session-id" or key.startswith(_PARAM_HEADER):
                return False
        return (version is not None and version.decode("latin-1") in MODERN_PROTOCOL_VERSIONS
                and content_type is not None
                and content_type.split(b";")[0].strip().lower() == b"application/json")

    async def _plan(self, scope: Scope, body: bytes,
                    found: tuple[Principal, str | None]) -> _Plan | None:
        # Decoded once (starlette's Headers would scan its list per name: ~13 scans).
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        headers: dict[str, str] = {}
        for key, value in pairs:
            headers.setdefault(key, value)  # the first copy, as starlette's mapping has it
        accept = headers.get("accept", "")
        accepted = self._accepts.get(accept)
        if accepted is None:  # the SDK's own check, remembered per Accept value
            accepted = check_accept_headers(Request(scope))
            if len(self._accepts) >= 64:
                self._accepts.clear()
            self._accepts[accept] = accepted
        has_json, has_sse = accepted
        if not (has_json and has_sse):
            return None  # the SDK answers 406 (or, JSON only, the full path decides)
        try:
            # Decoded first: json.loads of bytes detects the encoding and decodes with
            # surrogatepass (~2 us more).  A body that is not plain UTF-8 (a BOM, UTF-16,
            # encoded surrogates) goes to the full path, which judges it.
            message = _JSON.decode(body.decode())  # NaN: the full path's (null to the tool)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
        if not isinstance(message, dict) or message.get("method") != "tools/call" \
                or message.get("jsonrpc") != "2.0":
            return None
        request_id, params = message.get("id"), message.get("params")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool) \
                or not isinstance(params, dict) or not set(message) <= {
                    "jsonrpc", "id", "method", "params"}:
            return None
        meta = params.get("_meta")
        arguments = params.get("arguments")
        name = params.get("name")
        if not isinstance(meta, dict) or not isinstance(name, str) \
                or not (arguments is None or isinstance(arguments, dict)):
            return None
        level, token = meta.get(types.LOG_LEVEL_META_KEY), meta.get("progressToken")
        if (level is not None and level not in LOG_LEVELS) or (
                token is not None and (not isinstance(token, str | int)
                                       or isinstance(token, bool))):
            return None  # invalid: the SDK answers with its validation error
        if not (isinstance(meta.get(types.CLIENT_INFO_META_KEY), dict)
                and isinstance(meta.get(types.CLIENT_CAPABILITIES_META_KEY), dict)):
            return None
        if find_duplicated_routing_header(pairs) is not None:
            return None
        verdict = classify_inbound_request(message, headers=headers)
        if not isinstance(verdict, InboundModernRoute):
            return None  # the SDK's rejection, worded by the SDK
        tool = self.provider.lane_tool(name)
        if tool is None or self._declares_headers(name):
            return None
        principal, binding = found  # its token verified before the body was read
        if not principal.has("tools"):
            return None
        route = tool.serves_raw()
        if route is None or takes_tasks(meta, route[0]):
            return None  # a task the host may get is the full path's (front/tasks.py)
        if self._caller_credentials(route[0].name, route[0].config):
            return None  # the caller's own token and claims: FastMCP's verified ones
        if outside_servers(principal, tool.owner.name, route[0].name):
            return None  # "Unknown tool", as the full path words it
        if params.get("requestState") is not None:  # a continuation (MRTR)
            opened = open_state(self.states, params, binding)
            if opened is None:
                return None
            params = opened
        caller, header = None, headers.get("authorization")
        if header is not None and self.access.verifier:
            # As on the full path (``FrontCall.caller``): a per_client server's session is
            # its token's (``ClientSessions.key_of``), not one for every 2026-07-28 caller,
            # and so are the roots it gives (``upstream/roots.py``), of any server's call.
            caller = Caller(name=principal.name, token=header.partition(" ")[2].strip(),
                            claims={KIND_CLAIM: principal.kind})  # Caller.kind
        return _Plan(tool, route, request_id, params, meta, verdict.protocol_version, principal,
                     binding, caller)

    def _declares_headers(self, name: str) -> bool:
        """Whether tool ``name``'s schema declares ``Mcp-Param`` headers (the SDK then
        checks them against the arguments; the lane leaves that to it)."""
        entry = self.provider.manager.view.tools.get(name)
        return self._header_tools(name, entry[1].input_schema if entry is not None else None)

    # -- serving ------------------------------------------------------------------------

    async def _answer(self, plan: _Plan, stream: _Reply,
                      early: Callable[[bytes], Awaitable[None]]) -> tuple[int, bytes] | None:
        """The call's status and body; None when an asking round was answered ``early``
        (a call parked lazily: MRTR, ``front/mrtr.py``) and the call has ended since."""
        meta, request_id, version = plan.meta, plan.request_id, plan.modern_version
        forward, upstream_params = upstream_call(plan.tool.original, plan.params, meta)
        fields = result_fields(version)
        client_id = meta.get("client_id")
        token = meta.get("progressToken")
        front = LaneFront(
            session=None, request_id=request_id, meta=forward,
            # An MRTR continuation's state was opened (``_plan``); an asking round's is
            # sealed as the full path seals it (the ``_Reply``'s states, for this caller).
            input_responses=plan.params.get("inputResponses"),
            request_state=plan.params.get("requestState"),
            client_id=client_id if isinstance(client_id, str) and client_id else "http",
            protocol_version=version, lane=stream, progress_token=token,
            log_levels=allowed_log_levels(version, meta),
            capabilities=meta.get(types.CLIENT_CAPABILITIES_META_KEY), reply=early,
            caller=plan.caller)

        def encode(result: dict[str, Any]) -> bytes:
            result = shape_result(result, fields, True, self.server_info)
            return encode_body({"jsonrpc": "2.0", "id": request_id, "result": result})

        principal = lane_principal.set(plan.principal)
        try:
            return 200, await plan.tool.call_raw(
                plan.route, upstream_params, front, encode,
                front.progress if token is not None else None)
        except AnsweredEarly:
            return None  # its first round answered the host (``early``)
        except MCPError as exc:  # an upstream's (or the pipeline's) error, as the SDK maps it
            error = modern_error_data(exc)
        except Exception as exc:
            logger.exception("http express lane: tools/call %r failed", plan.tool.name)
            error = modern_error_data(exc)
        finally:
            lane_principal.reset(principal)
        body = encode_body({"jsonrpc": "2.0", "id": request_id, "error": error.model_dump(
            by_alias=True, mode="json", exclude_none=True)})
        return ERROR_CODE_HTTP_STATUS.get(error.code, 200), body

    async def _serve(self, plan: _Plan, scope: Scope, receive: Receive, send: Send) -> None:
        """As the SDK's modern entry answers: JSON unless a notification comes (or
        ``SSE_DEFER`` passes) first, then an SSE stream with keepalive pings.  The call
        runs in this task; the host's going away cancels it (told by the server's
        ``HostGone``, else by a watcher task reading ``receive()``), and a timer pings a
        stream that went quiet.

        Plain asyncio (the front is served by uvicorn): an anyio task group, its
        ``move_on_after`` and a ``cancel()`` that formats the task's repr cost ~15 % of
        the lane's CPU per call, and an anyio cancel scope around the call ~3 % more
        (each of its steps asks for the running loop: a getpid() on 3.11).  The host's
        going away cancels this task once (``_HostLeft``); that cancellation ends here."""
        gone = scope.get("extensions", {}).get(HOST_GONE)
        if isinstance(gone, HostGone) and gone.gone:
            return  # gone while its request was read: nobody to run the call for
        reply = _Reply(send, self.states, plan.binding, plan.principal.name)
        loop = self._loop
        task = None if loop is None else asyncio.current_task(loop)
        if loop is None or task is None:  # once per loop: a lookup is a getpid() on 3.11
            loop = self._loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
        left = _HostLeft(task)
        watcher = None
        if isinstance(gone, HostGone):  # our httptools protocol: no task per call
            gone.watch(left)
        else:
            watcher = loop.create_task(_watch(receive, left))
        pinger = Pinger(loop, SSE_DEFER, partial(reply.event, _PING))

        def unwatch() -> None:  # the host's leaving or quiet is no longer this call's
            left.done = True
            pinger.stop()
            if watcher is not None:
                watcher.cancel()
            elif isinstance(gone, HostGone):
                gone.watch(None)

        async def early(body: bytes) -> None:
            # An asking round answered while the upstream call goes on in this task
            # (parked lazily, as the stdio lane parks): nothing more is written.
            unwatch()
            await reply.finish(200, body)

        try:
            answer = await self._answer(plan, reply, early)
        except asyncio.CancelledError:
            if not left.cancelled or left.task.uncancel() > left.base:
                note_id(scope, plan.request_id)  # a stop's answer names it (stop_answers)
                raise  # not (only) the host's leaving (the server is stopping): it goes on
            return  # the host left: the call was cancelled, nobody to answer
        finally:
            unwatch()
        if left.cancelled:  # the host left as the call ended: its cancel is taken back
            if left.task.uncancel() > left.base:
                raise asyncio.CancelledError  # another cancel came too: it goes on
            return
        if answer is not None:
            await reply.finish(*answer)


class _HostLeft:
    """Cancels the lane call's task once when its host goes away, before the call ends."""

    __slots__ = ("base", "cancelled", "done", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        if task is None:
            raise RuntimeError("the HTTP express lane runs in an asyncio task")
        self.task = task
        self.base = task.cancelling()  # cancels already asked for are not ours to take
        self.cancelled = self.done = False

    def __call__(self) -> None:
        if not (self.cancelled or self.done):
            self.cancelled = True
            self.task.cancel()


async def _watch(receive: Receive, call: Callable[[], None]) -> None:
    """Cancel the call when the host disconnects (cancelled itself when the call ends,
    before the answer is sent: uvicorn's ``receive`` says "disconnect" after it)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a task nobody awaits: its failure would go unseen
        logger.exception("http express lane: watching the host's connection failed")
    call()  # the host is gone: the call is cancelled (upstream too)


_JSON_TYPE = (b"content-type", b"application/json")


class _Reply:
    """The host's side of one lane call: its notifications as SSE events (the first
    one turns the answer into a stream), then the answer (see ``HttpLane._serve``)."""

    host_capabilities: dict[str, Any] = {}  # never read: a 2026-07-28 host's are per call

    def __init__(self, send: Send, states: RoundStates, binding: str | None,
                 who: str = "") -> None:
        self.send = send
        # The full path's requestState seal, and this caller's binding in it: what the
        # call's LaneFront seals an asking round's state with (``LaneFront.seal_state``).
        self.states, self.binding = states, binding
        self.streaming = False
        self.finished = False
        # The call's task, a ping and the upstream's reader all write: the events go
        # through a backlog whose own task waits on the host (``sse_backlog``).
        self.backlog = Backlog(send, "2026-07-28", who)

    async def event(self, data: bytes, *, droppable: bool = True) -> None:
        if self.finished:
            return  # a ping that lost the race with the answer
        if not self.streaming:
            self.streaming = True
            self.backlog.put({"type": "http.response.start", "status": 200,
                              "headers": _SSE_HEADERS}, droppable=False)
        self.backlog.put({"type": "http.response.body", "body": data, "more_body": True},
                         droppable=droppable)

    async def finish(self, status: int, body: bytes) -> None:
        if self.finished:
            return
        self.finished = True
        if self.streaming:
            await self.backlog.flushed()
            await self.send({"type": "http.response.body", "more_body": False,
                             "body": _sse_event(body)})
            return
        # What starlette's Response(body, status, media_type="application/json") sends.
        await self.send({"type": "http.response.start", "status": status, "headers": [
            (b"content-length", str(len(body)).encode()), _JSON_TYPE]})
        await self.send({"type": "http.response.body", "body": body})

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.event(_sse_event(encode_body(
            {"jsonrpc": "2.0", "method": method, "params": params})))

    async def progress(self, token: Any, progress: float, total: float | None,
                       message: str | None) -> None:
        await self.notify("notifications/progress",
                          progress_params(token, progress, total, message))

    async def ask(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        raise MCPError(types.INTERNAL_ERROR, f"a 2026-07-28 host cannot be sent {method}")


def _sse_event(data: bytes) -> bytes:
    return b"event: message\r\ndata: %b\r\n\r\n" % data
