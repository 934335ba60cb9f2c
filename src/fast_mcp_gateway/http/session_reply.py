"""The host's side of one call the session lane serves (``session_lane.py``): its SSE
stream, written as the SDK's stateful streamable-HTTP transport writes a POST's answer.

The SDK (``StreamableHTTPServerTransport`` with ``json_response=False``, no event store)
answers every handshake-era request POST with an ``EventSourceResponse`` started at
once: status 200, the headers below in that order, then one ``event: message`` per
message related to the request (progress, logs, the server's own requests), the
answer last, and the body's end; a ping comment every 15 s (sse-starlette's default)
while it runs.  Messages are pydantic's JSON (UTF-8 as is).  A request the host
cancelled is answered ``REQUEST_CANCELLED`` (-32800, "Request cancelled"); a session
that ended (DELETE, expiry) ends its streams without an answer.

``SessionReply`` is also the call's ``wire.HostChannel``: a question to the host goes
on the call's stream as the SDK puts it there, under an id the session's SDK
dispatcher mints (``_compat_sessions.next_request_id``: 1, 2, ..., shared with the
SDK's own requests on the session), and the host's answer (a POST of a JSON-RPC
response on the session) is handed to it by the lane.  A question withdrawn once the
call was answered is dropped, as the SDK's transport drops a message for a request
whose stream has ended.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server.streamable_http import REQUEST_CANCELLED
from mcp.shared.dispatcher import Outbound
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway._compat import client_log_level
from fast_mcp_gateway._compat_sessions import next_request_id
from fast_mcp_gateway.front.wire import progress_params
from fast_mcp_gateway.http.pings import Pinger
from fast_mcp_gateway.http.sse_backlog import Backlog
from fast_mcp_gateway.upstream.framing import ASCII_JSON, UTF8_JSON, finite_message
from fast_mcp_gateway.upstream.lifting import splice
from fast_mcp_gateway.upstream.relay import log_levels_from

if TYPE_CHECKING:
    from mcp.server.connection import Connection

PING_EVERY = 15.0
"""Seconds between the ping comments of a running call's stream (sse-starlette's)."""

HEAD_WITHIN = 1.0
"""Seconds the stream's head may wait for its first event (most often the answer), to
leave with it in one write (``slow_clients.hold_head``): a system call and a wake-up of
the host fewer per call.  The SDK writes it at once; the bytes are the same."""


def sse_headers(session_id: bytes) -> list[tuple[bytes, bytes]]:
    """The SDK's SSE answer headers for a session's POST, in its order."""
    return [(b"cache-control", b"no-cache, no-transform"), (b"connection", b"keep-alive"),
            (b"content-type", b"text/event-stream"), (b"mcp-session-id", session_id),
            (b"x-accel-buffering", b"no")]


def accepted_headers(session_id: bytes) -> list[tuple[bytes, bytes]]:
    """The SDK's 202 for a notification or response POSTed on a session."""
    return [(b"content-type", b"application/json"), (b"mcp-session-id", session_id),
            (b"content-length", b"0")]


async def send_accepted(send: Any, session_id: bytes) -> None:
    """The SDK's 202 (a notification or a response POSTed on the session), sent."""
    await send({"type": "http.response.start", "status": 202,
                "headers": accepted_headers(session_id)})
    await send({"type": "http.response.body", "body": b""})


def encode_message(message: dict[str, Any]) -> bytes:
    """``message`` as the SDK's transport writes it (pydantic's JSON: UTF-8 as is; NaN
    and infinities as ``wire.encode_line`` writes them)."""
    try:
        return splice(UTF8_JSON.encode(message))
    except UnicodeEncodeError:  # a lone surrogate (from an upstream): escaped, valid JSON
        return splice(ASCII_JSON.encode(message))
    except ValueError:  # NaN or an infinity (an upstream's): null, as the SDK writes it
        return encode_message(finite_message(message))


def sse_event(data: bytes) -> bytes:
    return b"event: message\r\ndata: %b\r\n\r\n" % data


def cancelled_body(request_id: Any) -> bytes:
    """The SDK's answer to a request its host cancelled (this era's wire)."""
    return encode_message({"jsonrpc": "2.0", "id": request_id, "error": {
        "code": REQUEST_CANCELLED, "message": "Request cancelled"}})


class SessionLevels:
    """The log levels a handshake-era session's host gets, read at each log from the
    level it set (``logging/setLevel``), as the full path's ``FrontCall.log`` reads it."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def __contains__(self, level: object) -> bool:
        return level in log_levels_from(client_log_level(self.connection))


class SessionReply:
    """One lane call's SSE stream, and its host as a ``wire.HostChannel``."""

    def __init__(self, send: Any, session_id: bytes, host_capabilities: dict[str, Any],
                 asks: dict[tuple[str, int], asyncio.Future[dict[str, Any]]],
                 outbound: Outbound, who: str = "") -> None:
        self.send = send
        self.outbound = outbound  # the session's SDK dispatcher: its request ids
        self.session_id = session_id
        self.session = session_id.decode("latin-1")
        # What the host declared in its handshake (the full path's ``can_ask`` reads it).
        self.host_capabilities = host_capabilities
        self.asks = asks  # the lane's: (session, ask id) -> the answer awaited
        self.finished = False
        # The call's task, a ping and the upstream's reader all write: the events go
        # through a backlog whose own task waits on the host (``sse_backlog``).
        self.backlog = Backlog(send, "handshake-era", who)
        self._pinger: Pinger | None = None
        # The tasks waiting for the host's answers, each with its end (``withdrawn``).
        self._asking: dict[asyncio.Task[Any] | None, asyncio.Future[None]] = {}

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        await self.send({"type": "http.response.start", "status": 200,
                         "headers": sse_headers(self.session_id)})
        self._pinger = Pinger(loop, PING_EVERY, self._ping)

    async def _ping(self) -> None:
        await self._write(b": ping - %b\r\n\r\n" % str(datetime.now(UTC)).encode())

    def stop_pings(self) -> None:
        if self._pinger is not None:
            self._pinger.stop()

    async def _write(self, data: bytes, *, droppable: bool = True) -> None:
        if not self.finished:
            self.backlog.put({"type": "http.response.body", "body": data, "more_body": True},
                             droppable=droppable)

    async def finish(self, body: bytes | None) -> None:
        """The answer's event (``body``; None: none) and the stream's end."""
        self.stop_pings()
        if self.finished:
            return
        self.finished = True
        await self.backlog.flushed()
        await self.send({"type": "http.response.body", "more_body": False,
                         "body": b"" if body is None else sse_event(body)})

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        # A withdrawn question is the stream's own event: never dropped.
        await self._write(sse_event(encode_message(
            {"jsonrpc": "2.0", "method": method, "params": params})),
            droppable=method != "notifications/cancelled")

    async def progress(self, token: Any, progress: float, total: float | None,
                       message: str | None) -> None:
        await self.notify("notifications/progress",
                          progress_params(token, progress, total, message))

    async def withdrawn(self) -> None:
        """Wait (1 s at most) until the questions of the call being withdrawn (the call
        ended: ``relay``'s ``FrontCall.served`` cancels them) have said so on its stream:
        the SDK writes each withdrawal before the call's answer."""
        ending = [ended for task, ended in self._asking.items()
                  if task is not None and task.cancelling()]
        if ending:
            await asyncio.wait(ending, timeout=1)

    async def ask(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """Send the host a request on this call's stream under an id of the session's
        (``next_request_id``) and wait for its answer (a POST on the session,
        ``SessionLane``)."""
        ask_id = next_request_id(self.outbound)
        key = (self.session, ask_id)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.asks[key] = answer
        task, ended = asyncio.current_task(), loop.create_future()
        self._asking[task] = ended
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": ask_id, "method": method}
        if params is not None:
            request["params"] = params
        written = False
        try:
            await self._write(sse_event(encode_message(request)), droppable=False)
            written = True
            message = await answer
        except asyncio.CancelledError:
            if written and not self.finished:  # withdrawn on the call's stream, as the
                # SDK's session does; once the stream ended (the call was answered
                # first), the SDK's transport drops it (no stream for the request)
                withdrawn = {"requestId": ask_id, "reason": "caller cancelled"}
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await self.notify("notifications/cancelled", withdrawn)
            raise
        finally:
            del self.asks[key]
            del self._asking[task]
            ended.set_result(None)
        if "error" in message:
            raise MCPError.from_error_data(types.ErrorData.model_validate(message["error"]))
        result = message.get("result")
        return result if isinstance(result, dict) else {}
