"""The stdio express lane: ``tools/call`` relayed as JSON, past the server stack.

A relayed call through the full stack is parsed into models and re-encoded four
times (the SDK server and FastMCP on the host side, the SDK client session on the
upstream side), and that, not the extra process hop, is what made a call through
the gateway cost about twice a direct one.  In stdio mode the gateway reads the
host's lines itself (``stdio.py``), so it can take the commonest request, a
``tools/call`` of an upstream tool, straight off the wire:

* the line is parsed once (``json``), the exposed name swapped for the upstream one
  and the host's connection ``_meta`` for the upstream session's stamp;
* ``UpstreamTool.call_raw`` runs it through the same call pipeline as any call
  (``calls.py``: route rule, authorization, curation, rate limits, balancing,
  retries, breaker, health bookkeeping, asks, observers and call record), with the
  JSON encoding, on the same persistent session
  (``JSONRPCDispatcher.send_raw_request``: its timeout, progress and cancellation,
  no result models);
* the result goes back as JSON with the gateway's stamp, as the SDK server would.

Anything else passes through to the SDK server untouched, and so does any call the
lane cannot answer exactly as the full path would: before the handshake, requests
the SDK would reject, a tool with a stale-result fallback or session-sticky
balancing, admin tools, unknown names, or while OpenTelemetry tracing is configured
(the full path emits the spans).  The decision is made before anything is sent
upstream.  Mixed eras take the lane too, converted as the full path converts them:
a handshake-era host gets no 2026-only result fields and has a 2026 upstream's
``input_required`` asks put to it; a 2026-07-28 host gets ``resultType`` and the
gateway's stamp on a handshake-era upstream's results, and that upstream's pushed
requests as the gateway's own ``InputRequiredResult`` (MRTR, as on the full path).
The ``requestState`` of an asking round is sealed, and a continuation's opened, as the
full path's boundary does (``_compat.RoundStates``): a round moves freely between the
two paths, and between gateway processes sharing the keys; a state that does not open
is the full path's to refuse.

During a call the lane also carries what the upstream sends back: progress (to the host's
own token), logs (at the levels the host asked for) and, for a handshake-era host,
sampling / elicitation / roots requests, sent to the host under ids of its SDK
connection's (as the SDK's own) and answered upstream from its response
(``lane_host.py``: the call's ``LaneFront`` and the stdio host's channel).  Host
cancellations cancel it upstream.

The lane also answers the four catalog lists (first page) from ``listing.ListCache``,
built as the full path builds them and encoded once per change; a handshake-era
host's first list goes the full path, which registers the host for ``list_changed``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server.connection import allowed_log_levels
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)

from fast_mcp_gateway._compat import RoundStates
from fast_mcp_gateway.config.json_text import finite_float, no_constant
from fast_mcp_gateway.front.lane_host import LaneFront, StdioChannel, open_state
from fast_mcp_gateway.front.listing import LIST_METHODS, ListCache
from fast_mcp_gateway.front.parkable import AnsweredEarly
from fast_mcp_gateway.front.tasks import takes_tasks
from fast_mcp_gateway.front.wire import (
    encode_id,
    encode_line,
    result_fields,
    shape_result,
    tracing_configured,
    upstream_call,
)
from fast_mcp_gateway.upstream.deadline import HOST_REASON
from fast_mcp_gateway.upstream.relay import LOG_LEVELS, STDIO_HOST, log_levels_from

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

    from fast_mcp_gateway.front.provider import GatewayProvider
    from fast_mcp_gateway.front.stdio import LineWriter

logger = logging.getLogger(__name__)
# NaN / Infinity, 1e400 (read as infinity): the SDK's session sends those on as null
_JSON = json.JSONDecoder(parse_constant=no_constant, parse_float=finite_float)


_encode = encode_line
_encode_id = encode_id


class StdioLane(StdioChannel):
    """Takes upstream ``tools/call`` requests off the host's stdin (see the module doc)."""

    binding: str | None = None  # a stdio host has no token: its rounds bind no caller

    def __init__(self, provider: GatewayProvider, server_info: Callable[[], dict[str, Any]],
                 *, enabled: bool = True, lists: ListCache | None = None,
                 lists_open: Callable[[], bool] = lambda: True,
                 states: RoundStates | None = None) -> None:
        super().__init__()
        self.provider = provider
        # The full path's requestState seal (the server's keys): every round is portable.
        self.states = states if states is not None else RoundStates.ephemeral(None)
        self.enabled = enabled
        self.lists = lists
        self.lists_open = lists_open  # False during the start-up wait
        self._listed = False  # a handshake-era host's first list went the full path
        self._server_info = server_info
        self._stamp: dict[str, Any] | None = None  # the server info stamp, read once
        self._tg: anyio.abc.TaskGroup | None = None
        self._calls: dict[Any, anyio.CancelScope] = {}
        # The host's reason for cancelling a call (its notifications/cancelled), by the
        # call's scope: it goes upstream with the cancellation (``deadline.HOST_REASON``).
        self._reasons: dict[anyio.CancelScope, str] = {}
        self.handshake_done = False
        self.host_capabilities: dict[str, Any] = {}
        self.host_version: str | None = None
        self.host_log_level: str | None = None  # a handshake-era host's logging/setLevel

    # -- wiring -------------------------------------------------------------------------

    async def run(self, writer: LineWriter, sdk: Server[Any] | None = None, *,
                  task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve lane calls until cancelled (the caller cancels when stdio ends).
        ``sdk``: the SDK server serving the host, whose connection gives the ids of
        the lane's questions (``watch_connection``)."""
        middleware = [] if sdk is None else sdk.middleware
        middleware.append(self.watch_connection)
        async with anyio.create_task_group() as tg:
            self._writer, self._tg = writer, tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                middleware.remove(self.watch_connection)

    def intercept(self, line: bytes) -> bool:
        """Whether the lane took ``line`` (else it goes on to the SDK server).

        Runs in the SDK's stdin reader: it must never raise, or the session would end.
        A line the lane cannot make sense of is the SDK server's to answer.
        """
        try:
            return self._intercept(line)
        except Exception:  # see the docstring
            logger.exception("express lane: passing a line on after an internal error")
            return False

    def _intercept(self, line: bytes) -> bool:
        # Cheap byte checks first; each taker parses and decides on the parsed message,
        # so a value that merely contains one of these strings is passed on.
        if self._tg is None:
            return False
        if self._asks and self._take_answer(line):  # while a question is pending
            return True
        if b'"tools/call"' in line and self._take_call(line):
            return True
        if b'"notifications/cancelled"' in line and self._take_cancel(line):
            return True
        if b'/list"' in line and self.lists is not None and self._take_list(line):
            return True
        if b'"initialize"' in line or b'"notifications/initialized"' in line:
            self._watch_handshake(line)
        if b'"notifications/roots/list_changed"' in line:
            self._roots_changed(line)
        if b'"logging/setLevel"' in line:
            self._watch_level(line)
        return False

    # -- what comes in ------------------------------------------------------------------

    def _take_call(self, line: bytes) -> bool:
        if not self.enabled or tracing_configured():
            return False
        try:
            message = _JSON.decode(line.decode("utf-8"))  # (the SDK reads UTF-8 lines)
        except ValueError:  # not JSON, or a number the full path sends on as null
            return False
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return False
        request_id, params = message.get("id"), message.get("params")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool) \
                or not isinstance(params, dict):
            return False  # the SDK answers malformed requests
        meta = params.get("_meta") or {}
        arguments = params.get("arguments")
        if not isinstance(meta, dict) or not (arguments is None or isinstance(arguments, dict)):
            return False
        version = meta.get(types.PROTOCOL_VERSION_META_KEY)
        if version is None:
            if not self.handshake_done:
                return False
            modern = False
        elif version in MODERN_PROTOCOL_VERSIONS:
            modern = True
            # The SDK server validates a 2026 envelope; an incomplete one is its to refuse.
            if not (isinstance(meta.get(types.CLIENT_INFO_META_KEY), dict)
                    and isinstance(meta.get(types.CLIENT_CAPABILITIES_META_KEY), dict)):
                return False
        else:
            return False  # an era the SDK server must judge
        level = meta.get(types.LOG_LEVEL_META_KEY)
        token = meta.get("progressToken")
        if (level is not None and level not in LOG_LEVELS) or (
                token is not None and (not isinstance(token, str | int)
                                       or isinstance(token, bool))):
            return False  # invalid: the SDK answers with its validation error
        if params.get("requestState") is not None:  # a continuation (MRTR)
            opened = open_state(self.states, params, None)  # stdio: no token to bind
            if opened is None:
                return False
            params = opened
        name = params.get("name")
        tool = self.provider.lane_tool(name) if isinstance(name, str) else None
        key = coerce_request_id(request_id)
        if tool is None or key in self._calls:
            return False
        route = tool.serves_raw()
        # Any mix of eras: a 2026-07-28 upstream's asks are bridged for a handshake-era
        # host (its newer result fields dropped); a handshake-era upstream's pushes
        # become the gateway's own asks for a 2026-07-28 host (MRTR, front/mrtr.py).
        if route is None or (modern and takes_tasks(meta, route[0])):
            return False  # a task the host may get is the full path's (front/tasks.py)
        assert self._tg is not None
        # Registered now, so that a cancellation read right after the call finds it.
        scope = self._calls[key] = anyio.CancelScope()
        self._tg.start_soon(self._serve, tool, route, request_id, params, meta, modern, scope,
                            name="express lane call")  # (a name: not looked up per call)
        return True

    def _take_list(self, line: bytes) -> bool:
        """A catalog list (first page) is answered from ``ListCache``.  The first list of a
        handshake-era host goes the full path, where the gateway learns of the host to tell
        it of changes; so does a list with a cursor or unknown parameters, or during the
        start-up wait."""
        if not self.enabled or tracing_configured() or not self.lists_open():
            return False
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict) or message.get("method") not in LIST_METHODS:
            return False
        request_id, params = message.get("id"), message.get("params")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return False
        if params is None:
            params = {}
        if not isinstance(params, dict) or not set(params) <= {"_meta"}:
            return False
        meta = params.get("_meta") or {}
        if not isinstance(meta, dict):
            return False
        version = meta.get(types.PROTOCOL_VERSION_META_KEY)
        if version is None:
            if not self.handshake_done or not self._listed:
                self._listed = self.handshake_done  # this one tells the hub of the host
                return False
            version = self.negotiated_version
        elif version not in MODERN_PROTOCOL_VERSIONS or not (
                isinstance(meta.get(types.CLIENT_INFO_META_KEY), dict)
                and isinstance(meta.get(types.CLIENT_CAPABILITIES_META_KEY), dict)):
            return False  # the SDK server judges other eras and incomplete envelopes
        assert self._tg is not None
        self._tg.start_soon(self._serve_list, request_id, message["method"], version)
        return True

    async def _serve_list(self, request_id: Any, method: str, version: str) -> None:
        assert self.lists is not None
        try:
            body = await self.lists.encoded(method, version)
            line = b'{"jsonrpc":"2.0","id":%b,"result":%b}\n' % (_encode_id(request_id), body)
        except Exception as exc:
            logger.exception("express lane: %s failed", method)
            line = _encode({"jsonrpc": "2.0", "id": request_id, "error": {
                "code": types.INTERNAL_ERROR, "message": f"internal error in the gateway: {exc}"}})
        await self._write(line)

    def _take_cancel(self, line: bytes) -> bool:
        try:
            message = json.loads(line)
            if message.get("method") != "notifications/cancelled" or "id" in message:
                return False
            request_id = message["params"]["requestId"]
            scope = self._calls.get(coerce_request_id(request_id))
        except (ValueError, KeyError, TypeError):
            return False
        if scope is None:
            return False
        reason = message["params"].get("reason")
        if isinstance(reason, str):
            self._reasons[scope] = reason
        scope.cancel()
        return True

    def _watch_handshake(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("method") == "initialize" and isinstance(message.get("params"), dict):
            params = message["params"]
            caps = params.get("capabilities")
            self.host_capabilities = caps if isinstance(caps, dict) else {}
            self.host_version = params.get("protocolVersion")
            self.handshake_done = self._listed = False
            self.host_log_level = None
        elif message.get("method") == "notifications/initialized":
            self.handshake_done = True
            if "roots" in self.host_capabilities and self._tg is not None:
                # Upstreams that asked for roots before the host was there ask again.
                self._tg.start_soon(self.provider.manager.sole_host.arrived)

    def _watch_level(self, line: bytes) -> None:
        # The SDK server answers it (a level it rejects is not kept); the lane relays
        # the logs of the host's calls at that level and above.
        try:
            message = json.loads(line)
        except ValueError:
            return
        params = message.get("params") if isinstance(message, dict) else None
        if message.get("method") == "logging/setLevel" and isinstance(params, dict) \
                and params.get("level") in log_levels_from(None):
            self.host_log_level = params["level"]

    def _roots_changed(self, line: bytes) -> None:
        # Forwarded to every upstream session (the SDK server sees the line too).
        try:
            message = json.loads(line)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("method") == \
                "notifications/roots/list_changed" and "id" not in message:
            assert self._tg is not None
            # A 2026-07-28 host's kept roots are asked again at its next call (roots.py).
            self.provider.manager.sole_host.roots.changed(STDIO_HOST)
            self._tg.start_soon(self.provider.manager.roots_changed)

    def host_front(self) -> LaneFront | None:
        """The host as asked outside any call (an upstream's ``roots/list``): a
        handshake-era host after its handshake; a 2026-07-28 host cannot be asked."""
        if self._tg is None or not self.handshake_done:
            return None
        return LaneFront(session=None, client_id="stdio",
                         protocol_version=self.negotiated_version, lane=self)

    @property
    def negotiated_version(self) -> str:
        """The handshake version the SDK server settled on with this host."""
        requested = self.host_version
        return requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION

    # -- serving one call ---------------------------------------------------------------

    async def _serve(self, tool: Any, route: Any, request_id: Any, params: dict[str, Any],
                     meta: dict[str, Any], modern: bool, scope: anyio.CancelScope) -> None:
        logger.debug("express lane: tools/call %s (id %r) -> server %s", tool.name,
                     request_id, route[0].name)
        forward, upstream_params = upstream_call(tool.original, params, meta)
        HOST_REASON.set(lambda: self._reasons.get(scope))  # (this task's context only)
        version = meta.get(types.PROTOCOL_VERSION_META_KEY) or self.negotiated_version
        fields = result_fields(version)
        token = meta.get("progressToken")
        key = coerce_request_id(request_id)
        reply = None
        if modern:
            async def reply(line: bytes) -> None:
                # Answered now, while the upstream call goes on in this task (parked):
                # the host may reuse the id, and a cancellation of it is not this call's.
                if self._calls.get(key) is scope:
                    del self._calls[key]
                await self._write(line)

        front = LaneFront(
            session=None, request_id=request_id, meta=forward,
            input_responses=params.get("inputResponses"),
            request_state=params.get("requestState"), client_id="stdio",
            protocol_version=version, host=STDIO_HOST, lane=self, progress_token=token,
            log_levels=(allowed_log_levels(version, meta) if modern
                        else log_levels_from(self.host_log_level)),
            capabilities=meta.get(types.CLIENT_CAPABILITIES_META_KEY) if modern else None,
            reply=reply,
        )

        def encode(result: dict[str, Any]) -> bytes:
            result = shape_result(result, fields, modern, self.server_stamp)
            return _encode({"jsonrpc": "2.0", "id": request_id, "result": result}, modern)

        with scope:
            try:
                line = await tool.call_raw(
                    route, upstream_params, front, encode,
                    front.progress if token is not None else None,
                    # Any upstream may answer input_required: ``auto`` moves a replica
                    # to 2026-07-28 when a tool needs it (upstream/session.py).
                    None if modern else self.ask)
            except AnsweredEarly:
                return  # its first round answered the host (``reply``)
            except MCPError as exc:  # the upstream's error response, relayed as it came
                line = _encode({"jsonrpc": "2.0", "id": request_id, "error": exc.error.model_dump(
                    by_alias=True, mode="json", exclude_none=True)})
            except Exception as exc:
                logger.exception("express lane: tools/call %r failed", params.get("name"))
                line = _encode({"jsonrpc": "2.0", "id": request_id, "error": {
                    "code": types.INTERNAL_ERROR,
                    "message": f"internal error in the gateway: {exc}"}})
            finally:
                if self._calls.get(key) is scope:
                    del self._calls[key]
                self._reasons.pop(scope, None)
            await self._write(line)
        # A cancelled call gets no response (the host gave up on it).

    def server_stamp(self) -> dict[str, Any]:
        """The gateway's ``serverInfo`` stamp, made once: the SDK deep-copies it on every
        read so that a caller may change it; the lane only encodes it, never changes it."""
        stamp = self._stamp
        if stamp is None:
            stamp = self._stamp = self._server_info()
        return stamp
