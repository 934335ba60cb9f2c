"""The SDK's HTTP client towards an upstream, resending what the server closed unread.

httpx keeps idle connections and reuses them; a server closing one idle (uvicorn's
``timeout_keep_alive``, below the gateway's bound) closes some as the next request
crosses its close on the wire.  The request meets EOF (or a reset) before any byte of
an answer, most likely never read, and httpx fails it ("Server disconnected without
sending a response": the request fails, and a POST's failure ends the SDK's session).
The gateway's own tap writes such a request once more on a new connection when it is
safe to repeat (``http_pool.Pool.again``); ``ResendingTransport`` does the same for the
SDK's client (probes, ``resources/read``, ``prompts/get``, every request where the tap
steps aside: ``auth:``, a proxy), by the same rule (``http_idle.repeatable``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import mcp_types as types

from fast_mcp_gateway.upstream.http_idle import repeatable
from fast_mcp_gateway.upstream.model import IDLE_CLOSED_MARK, describe_error

# httpx's (httpcore's) words for a connection closed before any byte of the answer
_UNANSWERED = "Server disconnected without sending a response"
# The HTTP methods that are safe to send again whatever they carry (RFC 9110 9.2.2).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class ResendingTransport(httpx2.AsyncHTTPTransport):
    """httpx's own transport (its pool kept as ``_pool``: ``_compat.direct`` still
    knows it), sending a request again when it failed on a *reused* connection closed
    before any byte of its answer and it is safe to repeat (``safe``): httpx closes
    that connection, so the request goes on another idle one the server has not closed
    yet, or a new one -- whose failure is raised (the server's own fault).  One not
    safe is raised marked ``idle_closed`` (``model.describe_error``'s words).
    ``resent`` counts them (tests and diagnostics).

    ``aside``: where the error of a request not sent again goes when its transport
    reads answers from another stream (the legacy SSE transport's one ``GET``: it takes
    any POST's error status for its writer's end, which ended the session and left the
    request unanswered until its timeout): the POST is answered 202 and the error
    handed to ``aside`` (``http_transports.FastSseTransport``: to the session, as if
    read from the stream)."""

    resent = 0
    aside: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        outer = request.extensions.get("trace")
        opened = False  # whether this attempt opened a connection (httpcore's trace)

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal opened
            if event.startswith("connection.connect_"):
                opened = True
            if outer is not None:
                await outer(event, info)

        request.extensions["trace"] = trace
        try:
            while True:  # (each stale connection met is closed: a new one, at the latest)
                opened = False
                try:
                    return await super().handle_async_request(request)
                except (httpx2.RemoteProtocolError, httpx2.ReadError) as exc:
                    if opened or not unread(exc):
                        raise
                    if not safe(request):
                        exc.idle_closed = True  # type: ignore[union-attr]  # (its words: model.py)
                        answer = unanswered(request, exc)
                        if answer is None:
                            raise
                        if self.aside is None:
                            return answer
                        await self.aside(json.loads(answer.content))
                        return httpx2.Response(202, request=request,
                                               extensions=answer.extensions)
                self.resent += 1
        finally:
            _restore(request, outer)


def _restore(request: httpx2.Request, outer: Any) -> None:
    if outer is None:
        request.extensions.pop("trace", None)
    else:
        request.extensions["trace"] = outer


def unread(exc: httpx2.TransportError) -> bool:
    """Whether ``exc`` (raised before the answer's head) says the connection closed
    before any byte of an answer: EOF (httpcore's words) or a reset, as
    ``http_pool.Pool.stale`` reads the tap's own."""
    if isinstance(exc, httpx2.RemoteProtocolError):
        return str(exc).startswith(_UNANSWERED)
    cause = exc.__cause__
    while cause is not None:  # (httpx's error from httpcore's, from the OSError)
        if isinstance(cause, ConnectionResetError | BrokenPipeError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def unanswered(request: httpx2.Request, exc: httpx2.TransportError) -> httpx2.Response | None:
    """The answer the SDK reads for a JSON-RPC request not sent again: a 502 carrying
    that request's JSON-RPC error (``CONNECTION_CLOSED``, ``model.describe_error``'s
    words; ``model.IDLE_CLOSED_MARK`` as its ``data``, which tells it from an upstream's
    own error holding the words), as a proxy answers for a server that closed without
    one.  Raised, the error left the SDK's task group and ended the session, every
    request in flight with it; answered so, that request fails alone
    (``failures.lost_with``), as on the tap.  ``None`` for a body that is no one
    JSON-RPC request (the error is raised)."""
    message = _messages(request)
    if message is None or len(message) != 1 or "id" not in message[0] \
            or "method" not in message[0]:
        return None
    exc.request = request  # (httpx's client sets it only once raised: the URL named)
    error = {"code": types.CONNECTION_CLOSED, "message": describe_error(exc),
             "data": IDLE_CLOSED_MARK}  # (its mark: ``model.idle_closed``)
    return httpx2.Response(502, json={"jsonrpc": "2.0", "id": message[0]["id"],
                                      "error": error},
                           request=request, extensions={"idle_closed": True})


def safe(request: httpx2.Request) -> bool:
    """Whether ``request`` may reach the server twice: an idempotent HTTP method, or a
    POST of JSON-RPC messages none of which is a ``tools/call`` that may not run twice
    (``http_idle.repeatable``: the tap's rule), its body bytes at hand to send again."""
    if request.method in _IDEMPOTENT:
        return True
    messages = _messages(request)
    return messages is not None and all(repeatable(m.get("method")) for m in messages)


def _messages(request: httpx2.Request) -> list[dict[str, Any]] | None:
    """The JSON-RPC messages a POST carries (its bytes at hand), else ``None``."""
    if request.method != "POST" or not isinstance(request.stream, httpx2.ByteStream):
        return None
    try:
        message = json.loads(request.content)
    except ValueError:
        return None
    messages = message if isinstance(message, list) else [message]
    return messages if all(isinstance(m, dict) for m in messages) else None
