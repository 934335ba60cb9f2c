"""Long-lived server-to-host streams on the MCP endpoint, bounded per caller.

Three kinds of MCP stream stay open for as long as their host keeps them, each holding
a connection (a file descriptor: the usual soft limit is 1,024 per process), a task
and its buffers: the event stream of a handshake-era session (a GET with
``Mcp-Session-Id``, one per session, the SDK's), a 2026-07-28 ``subscriptions/listen``
stream (a POST whose answer is the stream; the SDK's ``ListenHandler`` holds at most
1,024 of them, all callers together, and refuses the next with "Subscription limit
reached"), and, in SSE mode, the legacy transport's ``/sse`` stream (a session each,
which the SDK does not bound at all).  One caller -- a token of any scope -- that
opened them by the thousand took the listen streams of every other host, or the
gateway's file descriptors.

``StreamQuota`` wraps the MCP endpoint's route in FastMCP's app (as ``SessionQuota``
does: ``scope["user"]`` is the verified caller, ``session_quota.caller_of``) and lets
one caller hold at most ``STREAMS_PER_CALLER`` streams of each kind open at once; its
next is a 429 in the endpoint's refusal shape (a JSON-RPC error, under the listen
request's id when it has one) naming the kind, the number, and what to do: close the
streams it no longer reads, or give its hosts tokens of their own.  A session's event
stream is refused 405 instead (``Allow: POST, DELETE``, the same body): the one answer
the MCP transport has for "no stream here", which hosts take as such and go on without
it.  The TypeScript SDK's client (v2, the Inspector's) takes any other status as a
failed transport: its connection is marked failed, and the Inspector CLI printed
``{"tools": []}`` (exit 0) for a gateway of many tools; the Python SDK's retries once,
a second later, either way.  The refusal is
logged at WARNING, once a minute per caller and kind at most (``QuotaLog``, as
``SessionQuota``'s).  A stream counts from its request until its answer ends (the host
left, the session ended, the stream was closed), so one the SDK refuses passes by in
no time.  Only with ``auth``, and only while it can name more than one caller
(``session_quota.several_callers``): without it every host is the one anonymous caller,
and with one token every host shares it, whom a share would protect from nobody
(``session_quota``'s rule).

What is counted is told by the request alone, never its body: a GET naming a session;
a POST of a 2026-07-28 request (``MCP-Protocol-Version`` not a handshake one) whose
``Mcp-Method`` is ``subscriptions/listen`` (the SDK refuses one whose body's method
differs); a GET on ``/sse``.  Every other request passes untouched, and only a refused
listen request's body is read, for its id.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway.http.session_quota import QuotaLog, caller_of, send_too_many
from fast_mcp_gateway.http.transport_refusals import MAX_MESSAGE, read_body

logger = logging.getLogger(__name__)

STREAMS_PER_CALLER = 128
"""Streams of one kind one caller may hold open at once: an eighth of the SDK's 1,024
listen streams (``session_quota.PER_CALLER_SHARE``), the same for the other kinds."""

StreamKind = Literal["session", "listen", "sse"]
_WHAT: dict[StreamKind, tuple[str, str]] = {  # (what one is, how it ends)
    "session": ("event streams of MCP sessions (a GET with Mcp-Session-Id, one per "
                "session)", "close the ones it no longer reads, or end their sessions (an "
                "HTTP DELETE with their Mcp-Session-Id)"),
    "listen": ("subscriptions/listen streams", "close the ones it no longer reads (one "
               "stream can carry every notification and resource a host wants)"),
    "sse": ("SSE streams (GET /sse, a session each)", "close the ones it no longer "
            "reads"),
}
_SESSION = b"mcp-session-id"
_VERSION = b"mcp-protocol-version"
_METHOD = b"mcp-method"
_LISTEN = b"subscriptions/listen"
_HANDSHAKE = frozenset(v.encode() for v in HANDSHAKE_PROTOCOL_VERSIONS)


def too_many_streams(kind: StreamKind, name: str, limit: int) -> str:
    """The refusal of ``name``'s next stream of ``kind`` past ``limit``."""
    what, remedy = _WHAT[kind]
    without = ("; this session's requests work without it, but what the gateway sends "
               "between them (list changes, logs) does not reach its host"
               if kind == "session" else "")
    return (f"Too many open streams: '{name}' holds {limit} {what} of this gateway open "
            f"already (the most one caller may hold): {remedy}, then open it again; hosts "
            f"that need more streams between them need tokens of their own{without}")


def stream_kind(scope: Scope, *, sse: bool) -> StreamKind | None:
    """The kind of long-lived stream the request of ``scope`` opens (None: none);
    ``sse``: the route is SSE's ``/sse``, else streamable HTTP's endpoint."""
    method = scope["method"]
    if sse:
        return "sse" if method == "GET" else None
    if method == "GET":
        return "session" if any(k == _SESSION for k, _ in scope["headers"]) else None
    if method != "POST":
        return None
    modern = listen = False
    for key, value in scope["headers"]:
        if key == _VERSION:
            modern = value not in _HANDSHAKE
        elif key == _METHOD:
            listen = value.strip() == _LISTEN
    return "listen" if modern and listen else None


class StreamQuota:
    """ASGI app in front of the MCP endpoint's own (see the module docstring); ``sse``:
    in front of SSE's ``/sse``.  For a gateway with ``auth``."""

    def __init__(self, app: ASGIApp, *, sse: bool = False, limit: int | None = None,
                 max_body: int = MAX_MESSAGE, several: Callable[[], bool] = lambda: True
                 ) -> None:
        """``several()``: whether the gateway can name more than one caller now
        (``session_quota.several_callers``; asked at a refusal only)."""
        self.app = app
        self.several = several
        self.sse = sse
        self.limit = STREAMS_PER_CALLER if limit is None else limit
        self.max_body = max_body
        self.open: Counter[tuple[StreamKind, tuple[str, str]]] = Counter()
        self._log = QuotaLog(logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = stream_kind(scope, sse=self.sse) if scope["type"] == "http" else None
        who = caller_of(scope) if kind is not None else None
        if kind is None or who is None:  # not a stream, or FastMCP's 401
            await self.app(scope, receive, send)
            return
        held = (kind, who)
        if self.open[held] >= self.limit and self.several():
            await self._refuse(kind, who, receive, send)
            return
        self.open[held] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open[held] -= 1
            if not self.open[held]:
                del self.open[held]

    async def _refuse(self, kind: StreamKind, who: tuple[str, str], receive: Receive,
                      send: Send) -> None:
        request_id = None
        if kind == "listen":  # the id its host waits on: read only now, when refused
            body, end = await read_body(receive, self.max_body)
            request_id = _request_id(body) if end == "whole" else None
        self._log.warn((kind, *who), "MCP endpoint: refused a stream of '%s' (%d): it "
                       "holds %d %s open already, the most one caller may hold", who[1],
                       405 if kind == "session" else 429, self.limit, _WHAT[kind][0])
        message = too_many_streams(kind, who[1], self.limit)
        if kind == "session":  # the transport's "no stream here" (see the docstring)
            await send_too_many(send, message, status=405, allow=b"POST, DELETE")
            return
        await send_too_many(send, message, request_id)


def _request_id(body: bytes) -> Any:
    """The id of the JSON-RPC request ``body`` is (None: none to tell)."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return None
    found = message.get("id") if isinstance(message, dict) else None
    return found if isinstance(found, str | int) and not isinstance(found, bool) else None
