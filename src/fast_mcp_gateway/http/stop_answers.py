"""What a request a stop cuts is answered (``serving.CutAtStop``), in the words of where
it came.

The REST API, the dashboard and anything else get 503 ``gateway_stopping`` in the REST
error shape.  A POST to the MCP endpoint (its path, or a profile's ``<path>/p/<name>``)
gets what the endpoint's other refusals get (``session_refusals``, ``request_ids``):
a JSON-RPC error object with the request's id, here 503 with ``INTERNAL_ERROR`` and
words naming the stop and what to do.  An MCP client shows the error's message (the
SDK's client takes a JSON-RPC error from a non-2xx JSON answer); the REST shape left it
only "Server returned an error response".

**The id.**  The body was read long before the cut, by whichever layer read it, and
keeping it on every request's way would cost the express lane per call.  So a layer
that knows the id says so only as the cancellation passes it (``note_id``, from an
``except CancelledError``: no cost on a request's way): the express lane, for a call it
serves (its plan's id) and for a request it passes on (the body it read, parsed then).
It is noted in the request's ``scope["state"]`` (uvicorn's per-request dict, shared by
every copy of the scope), else in the scope.  A request whose id nobody noted (the lane
off or tracing on, a profile's path, ``Mcp-Param-*`` headers: the lane reads no body) is
answered with id null, as JSON-RPC has it when
the id cannot be told (the SDK's client puts its own request's id back).

**A stream under way.**  A POST whose answer is an SSE stream already started (every
handshake-era POST: the SDK starts it at once; a 2026-07-28 call the lane or the SDK
turned into a stream) cannot be answered 503: its stream's last event is the same
JSON-RPC error instead (``stream_tail``), when its id was noted -- by
``request_ids.InFlightIds`` for a handshake-era POST (it parsed the body, to hold the
id), by the lane for a 2026-07-28 one.  Without an id there is nothing a host could
match it to: the stream just ends, as before.
"""

from __future__ import annotations

import json
import math
from typing import Any

import mcp_types as types
from starlette.types import Scope

from fast_mcp_gateway.front.profiles import PROFILE_PREFIX

_CUT_ID = "fast_mcp_gateway.cut_request_id"
_NONE = object()

REST_STOPPING = {"error": {"code": "gateway_stopping", "message": (
    "the gateway stopped before this request ended; what it asked for may have been "
    "done (an admin change is finished and audited): check, then retry once the "
    "gateway is back")}}


def mcp_stopping(grace: float) -> str:
    """What an MCP host is told of a request the stop cut ``grace`` s after it began."""
    return (f"the gateway stopped (a restart or a deploy) before this request ended: it "
            f"was still running {math.ceil(grace)} s after the stop began (the grace for "
            "requests in flight, MCP_GATEWAY_STOP_GRACE); what it asked for may have been "
            "done (a tool call may have run upstream): check, then retry on another "
            "instance of the gateway, or on this one once it is back")


def note_id(scope: Scope, request_id: Any) -> None:
    """Note the JSON-RPC id of the request of ``scope`` for its answer at a stop: call
    it only as a cancellation passes (module docstring)."""
    state = scope.get("state")
    (state if isinstance(state, dict) else scope)[_CUT_ID] = request_id


def note_body(scope: Scope, body: bytes) -> None:
    """``note_id`` with the id of the JSON-RPC request ``body`` (nothing for anything
    else: a notification, a batch, no JSON)."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return
    if isinstance(message, dict) and isinstance(message.get("method"), str) \
            and isinstance(message.get("id"), str | int) \
            and not isinstance(message["id"], bool):
        note_id(scope, message["id"])


def noted_id(scope: Scope) -> Any:
    """The id ``note_id`` noted for the request of ``scope``; None if none was."""
    state = scope.get("state")
    found = state.get(_CUT_ID, _NONE) if isinstance(state, dict) else _NONE
    return scope.get(_CUT_ID) if found is _NONE else found


class StopAnswers:
    """The answer (status, content type, body) to a request of ``scope`` the stop cut;
    ``mcp_path``: the MCP endpoint's (streamable HTTP; None: none takes POSTs)."""

    def __init__(self, mcp_path: str | None, grace: float) -> None:
        self.mcp_path = mcp_path
        self.profiles = (mcp_path or "").rstrip("/") + PROFILE_PREFIX
        self.words = mcp_stopping(grace)
        self.rest = json.dumps(REST_STOPPING).encode()

    def is_mcp(self, scope: Scope) -> bool:
        if self.mcp_path is None or scope.get("method") != "POST":
            return False
        path = str(scope.get("path", ""))
        return path == self.mcp_path or path.startswith(self.profiles)

    def __call__(self, scope: Scope) -> bytes:
        if not self.is_mcp(scope):
            return self.rest
        return self._error(noted_id(scope))

    def stream_tail(self, scope: Scope) -> bytes:
        """The last event of a stream under way the stop cut: the JSON-RPC error under
        the request's id, as an SSE ``message`` event (empty: not an MCP POST, or no id
        was noted)."""
        request_id = noted_id(scope) if self.is_mcp(scope) else None
        if request_id is None:
            return b""
        return b"event: message\r\ndata: %b\r\n\r\n" % self._error(request_id)

    def _error(self, request_id: Any) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {
            "code": types.INTERNAL_ERROR, "message": self.words}},
            separators=(",", ":")).encode()
