"""A request POSTed under an id still in flight in its MCP session is answered -32600.

``front/request_ids.py`` does this for the stdio host; over stateful streamable HTTP the
SDK's transport keys each POST's answer stream by the request's id
(``StreamableHTTPServerTransport._request_streams[str(id)]``) and a second POST under
the same id overwrites the first's: the first request's answer went to the second POST,
the first POST never got one, and the second request ran on until its timeout, its
answer lost (found with two ``tools/call`` under id 5 in one session).  MCP says a
request id "MUST NOT have been previously used by the requestor within the same
session".

``InFlightIds`` wraps the MCP endpoint's route (as ``batches.BatchRefusal`` does).  A
POST carrying an ``Mcp-Session-Id`` has its body read (up to the endpoint's limit, as
the express lane reads one: ``transport_refusals.read_body``) and handed on as it came;
a JSON-RPC request's id is held, per session, until the app is done with that POST --
as long as the SDK keeps its stream under that id -- and a request under a held id is
answered 400 with a JSON-RPC error (-32600, the request's id, the stdio front's words)
and never reaches the app.  Ids are compared as the stdio front compares them
(``request_ids.id_key``: ``7`` and ``"7"`` are one; the SDK's own key is ``str(id)``).
A POST without a session (the handshake's, a sessionless 2026-07-28 request, which the
express lane may serve) has no id space to collide in and passes untouched, and so,
with ``auth``, does one without a verified token: the route's wrappers run outside
FastMCP's auth guard, whose 401 never reads the body (this read and parsed it first).
A held request a stop cuts has its id noted as the cancellation passes
(``stop_answers.note_id``): its answer, an SSE stream, ends with the stop's error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import mcp_types as types
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway.front.request_ids import duplicate_message, id_key
from fast_mcp_gateway.http.reworded import PostsOnly
from fast_mcp_gateway.http.session_quota import caller_of
from fast_mcp_gateway.http.stop_answers import note_id
from fast_mcp_gateway.http.transport_refusals import MAX_MESSAGE, read_body, replay


class InFlightIds(PostsOnly):
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_MESSAGE, *, tokens: bool = False,
                 held: set[tuple[bytes, Any, Any]] | None = None) -> None:
        """``tokens``: the gateway has ``auth`` (a POST without a verified token is
        passed to the guard untouched)."""
        super().__init__(app)
        self.limit = limit
        self.tokens = tokens
        # (session, caller, request id key); shared with the session lane (``held``),
        # which holds the ids of the calls it serves in it.
        self._open: set[tuple[bytes, Any, Any]] = held if held is not None else set()

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = next((v for k, v in scope["headers"] if k == b"mcp-session-id"), None)
        caller = caller_of(scope) if self.tokens and session is not None else None
        if session is None or (self.tokens and caller is None):
            await self.app(scope, receive, send)
            return
        body, end = await read_body(receive, self.limit)
        key = _request_key(body) if end == "whole" else None
        replayed = replay(body, end, receive)
        if key is None:
            await self.app(scope, replayed, send)
            return
        # Per caller too: another credential's POST naming this session (refused by
        # ``session_refusals`` as a session it does not hold) neither sees the owner's
        # ids in flight (a 400 here told it a session and its live ids) nor blocks one.
        held = (session, caller, key[1])
        if held in self._open:
            await _refuse(key[0], send)
            return
        self._open.add(held)
        try:
            await self.app(scope, replayed, send)
        except asyncio.CancelledError:  # no cost on the way: a stop's answer names it
            note_id(scope, key[0])
            raise
        finally:
            self._open.discard(held)


def _request_key(body: bytes) -> tuple[Any, Any] | None:
    """``(id, id_key(id))`` of the JSON-RPC request ``body`` is; None for anything else
    (a notification, a response, a batch, no JSON: the app answers those)."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # the app answers those (a parse error)
        return None
    if not isinstance(message, dict) or not isinstance(message.get("method"), str) \
            or "id" not in message:
        return None
    key = id_key(message["id"])
    return None if key is None else (message["id"], key)


async def _refuse(request_id: Any, send: Send) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {
        "code": types.INVALID_REQUEST, "message": duplicate_message(request_id)}},
        separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 400, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
