"""The answer to one of ``HttpTap``'s POSTs (``http_tap.py``), read as the SDK's
streamable-HTTP client reads it.

``answer`` maps the status and body: a JSON answer, an SSE stream read to the call's
answer (``events``: progress to the caller, logs and -- handshake era -- server
requests handed to the session, as if its transport had read them), a stream ended
early resumed (``http_aside.resumed``), and each error status as the SDK's transport
says it: the server's JSON-RPC error, ``Not Found``, its stand-in "Server returned an
error response"; a handshake-era session the server no longer knows is told to its
``SessionEnd``.  On a tap that carries a bearer (``http_tap_bearer.py``) a 401 is
``Unauthorized`` (the request was not run: renewed and sent again), and a 403's
``insufficient_scope`` is noted for the call's words (``asking.lacking``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol, cast

import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from fast_mcp_gateway._compat import deliver_message, deliver_notification
from fast_mcp_gateway.upstream import http_aside
from fast_mcp_gateway.upstream.asking import lacking
from fast_mcp_gateway.upstream.http_aside import resumed
from fast_mcp_gateway.upstream.http_pool import (
    Connection,
    Declined,
    json_error,
    parse,
    progress,
)
from fast_mcp_gateway.upstream.http_session_end import refusal, refusal_error
from fast_mcp_gateway.upstream.http_wire import (
    Response,
    StreamMarks,
    body_chunks,
    read_body,
    sse_messages,
)
from fast_mcp_gateway.upstream.lifting import lifting, unlifted

if TYPE_CHECKING:
    from fast_mcp_gateway.upstream.http_session_end import SessionEnd

logger = logging.getLogger(__name__)

Progress = ProgressFnT


class Unauthorized(Exception):
    """The server answered 401 to a request of a tap that carries a bearer: the
    request was not run (``http_tap_bearer.TapBearer.sent`` renews and sends it again)."""


class Tap(http_aside.HttpTap, Protocol):
    """What of ``http_tap.HttpTap`` ``answer`` uses (it imports this module)."""

    end: SessionEnd | None

    @property
    def bearer(self) -> object | None: ...  # its ``TapBearer``, on a server with ``auth:``

    @property
    def closed(self) -> bool: ...


async def answer(tap: Tap, conn: Connection, response: Response, request_id: int | str,
                 on_progress: Progress | None,
                 session_id: str | None) -> tuple[dict[str, Any], bool | None]:
    """The call's response (its ``result`` or ``error``; ``MCPError`` for what is
    not one), and whether ``conn`` may be reused (``None``: an answered stream
    whose rest is still to be read)."""
    handshake = session_id is not None
    status, kind = response.status, response.content_type
    if 300 <= status < 400 and "location" in response.headers:
        raise Declined
    if status == 202:
        raise MCPError(code=types.INVALID_REQUEST,
                       message="server answered a request with 202 Accepted")
    if kind == "text/event-stream" and status < 300:
        marks = StreamMarks()
        try:
            async with contextlib.aclosing(
                    body_chunks(conn.reader, response, tap.max_message_bytes)) as body:
                result = await tap.events(body, request_id, on_progress, handshake, marks)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            if not handshake or tap.closed:
                raise
            if marks.last_id is None:
                raise MCPError(code=types.CONNECTION_CLOSED,
                               message="SSE stream ended without a response") from exc
            result = None
        if result is None:  # ended before the answer: resumed if it may be (SEP-1699)
            if session_id is None or marks.last_id is None or tap.closed:
                raise MCPError(code=types.CONNECTION_CLOSED,
                               message="SSE stream ended without a response")
            return await resumed(tap, request_id, on_progress, marks, session_id), False
        if response.chunk_left or response.body_left \
                or response.headers.get("transfer-encoding", "").lower() == "chunked":
            return result, None  # (read up to the answer: the rest follows)
        return result, response.keep_alive and "content-length" in response.headers
    data = await read_body(conn.reader, response, tap.max_message_bytes)
    reusable = response.keep_alive
    if status >= 400:
        if tap.bearer is not None and status in (401, 403):
            if status == 401:
                raise Unauthorized
            lacking(response.headers.get("www-authenticate"))
        words = refusal(status, kind, data) if handshake and tap.end else None
        if words is not None:  # the server no longer knows the session: it is renewed
            cast("SessionEnd", tap.end).forgotten(words, status, "POST")
            raise refusal_error(words)
        error = json_error(data) if kind == "application/json" else None
        if error is not None:
            raise MCPError.from_error_data(error)
        if status == 404:
            raise MCPError(code=types.METHOD_NOT_FOUND, message="Not Found")
        raise MCPError(code=types.INTERNAL_ERROR, message="Server returned an error response")
    if kind != "application/json":
        raise MCPError(code=types.INVALID_REQUEST, message=f"Unexpected content type: {kind}")
    return parse(data), reusable


async def events(tap: Tap, body: AsyncIterator[bytes], request_id: int | str,
                 on_progress: Progress | None, handshake: bool,
                 marks: StreamMarks | None = None) -> dict[str, Any] | None:
    """Read an SSE answer: notifications (and, in the handshake era, server
    requests) until the response, which is returned (``None``: the stream ended
    before it; ``marks`` tells where it may be resumed)."""
    async for data in sse_messages(body, tap.max_message_bytes, marks):
        message = parse(data)
        method = message.get("method")
        if method is None:
            if message.get("id") == request_id:
                return message
            continue  # another request's answer cannot be on this stream
        if lifting.get():
            message = unlifted(message)  # a notification goes on as it came
        if handshake and ("id" in message or method == "notifications/cancelled"):
            try:  # the session answers it, as if its transport had read it
                await deliver_message(tap.session, message)
            except ValidationError as exc:
                raise MCPError(code=types.PARSE_ERROR,
                               message=f"Failed to parse SSE message: {exc}") from None
            continue
        if "id" in message:
            logger.warning("HTTP upstream %s:%s sent a %s request on a 2026-07-28 "
                           "call's stream; ignored", tap.host, tap.port, method)
            continue
        params = message.get("params")
        if method == "notifications/progress":
            await progress(params, request_id, on_progress)
        else:  # logs and the rest: as if the SDK had read them, in this context
            await deliver_notification(tap.session, method, params)
    return None
