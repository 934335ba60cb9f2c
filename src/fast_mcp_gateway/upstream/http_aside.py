"""What ``HttpTap`` sends beside a call's POST on a handshake-era session: the call's
cancellation, and the ``GET`` that resumes a call's stream the server closed early.

A server that polls (SEP-1699, MCP 2025-11-25: the SDK's ``close_sse_stream`` with
an event store) ends a call's SSE stream after an event with an id (a priming event,
progress) and keeps the answer for the client's ``GET`` with ``Last-Event-ID``, which
it sends after the stream's ``retry`` interval.  The SDK's client does so; the tap
took the stream's end for the connection's and failed the call ("connection closed
during tools/call"), where a host connected directly got its answer
(``tests/test_http_tap_resume.py``; the conformance suite's client scenario
``sse-retry``).  ``resumed`` does what the SDK does: it waits ``retry`` (else
``DEFAULT_RETRY_MS``), GETs the stream from its last event id on a new connection and
reads it as the call's (progress, logs, server requests, the answer), again when that
stream ends too; after ``MAX_ATTEMPTS`` failed reconnections in a row the call fails
with the SDK's words.  The call's deadline bounds it all, and a call cancelled or timed
out meanwhile is cancelled upstream as any (``HttpTap._post``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp import ClientSession
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER

from fast_mcp_gateway.upstream.http_pool import Connection, Pool, describe, header_lines
from fast_mcp_gateway.upstream.http_wire import (
    StreamMarks,
    body_chunks,
    read_body,
    read_head,
)

logger = logging.getLogger(__name__)

CANCEL_WITHIN = 1.0  # the bound of a notifications/cancelled POST (as the stdio tap's)
DEFAULT_RETRY_MS = 1000  # the SDK's wait before a reconnection, when the server gave none
MAX_ATTEMPTS = 2  # reconnections failing in a row before the call fails (the SDK's)


class HttpTap(Protocol):
    """What of ``http_tap.HttpTap`` these use (it imports them)."""

    session: ClientSession
    pool: Pool
    host: str
    port: int
    post_head: bytes  # a POST's request line and fixed headers
    get_head: bytes  # a GET's
    max_message_bytes: int

    async def events(self, body: AsyncIterator[bytes], request_id: int | str,
                     on_progress: ProgressFnT | None, handshake: bool,
                     marks: StreamMarks | None = None) -> dict[str, Any] | None: ...


async def cancel(tap: HttpTap, request_id: int | str, session_id: str, reason: str) -> None:
    """POST ``notifications/cancelled`` for ``request_id`` on a new connection (not one
    the server may have closed idle), as the SDK does; a failure is only logged."""
    body = json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": request_id, "reason": reason}}).encode()
    version = tap.session.protocol_version
    with anyio.move_on_after(CANCEL_WITHIN):
        conn: Connection | None = None
        reusable = False
        try:
            extra = header_lines({"mcp-session-id": session_id, **(
                {MCP_PROTOCOL_VERSION_HEADER: version} if version else {})})
            conn = await tap.pool.take(tap.host, tap.port, fresh=True)
            conn.writer.write(b"%b%bcontent-length: %d\r\n\r\n%b" % (
                tap.post_head, extra, len(body), body))
            response = await read_head(conn.reader)
            await read_body(conn.reader, response, tap.max_message_bytes)
            reusable = response.keep_alive
        except Exception as exc:  # noqa: BLE001 - the call ends either way
            logger.debug("HTTP upstream %s:%s: cancelling %s failed: %s", tap.host,
                         tap.port, request_id, describe(exc))
        finally:
            if conn is not None:
                tap.pool.release(conn, reusable)


async def resumed(tap: HttpTap, request_id: int | str, on_progress: ProgressFnT | None,
                  marks: StreamMarks, session_id: str) -> dict[str, Any]:
    """The answer to ``request_id``, read from the stream resumed after
    ``marks.last_id`` (see the module doc); ``MCPError`` once reconnecting failed
    ``MAX_ATTEMPTS`` times in a row."""
    failed = 0
    while True:
        wait = marks.retry_ms if marks.retry_ms is not None else DEFAULT_RETRY_MS
        await anyio.sleep(wait / 1000)
        conn: Connection | None = None
        try:
            conn = await tap.pool.take(tap.host, tap.port, fresh=True)
            version = tap.session.protocol_version
            conn.writer.write(tap.get_head + header_lines({
                "mcp-session-id": session_id, "last-event-id": marks.last_id or "",
                **({MCP_PROTOCOL_VERSION_HEADER: version} if version else {})}) + b"\r\n")
            response = await read_head(conn.reader)
            if response.status >= 300 or response.content_type != "text/event-stream":
                raise ValueError(f"answered the resumption with status {response.status} "
                                 f"({response.content_type or 'no content type'})")
            failed = 0  # reconnected: a stream ending again is tried again (the SDK's)
            async with contextlib.aclosing(
                    body_chunks(conn.reader, response, tap.max_message_bytes)) as body:
                answer = await tap.events(body, request_id, on_progress, True, marks)
            if answer is not None:
                return answer
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            failed += 1
            logger.debug("HTTP upstream %s:%s: resuming the stream of %s failed: %s",
                         tap.host, tap.port, request_id, describe(exc))
            if failed >= MAX_ATTEMPTS:
                raise MCPError(code=types.CONNECTION_CLOSED,
                               message="SSE stream ended and reconnection attempts were "
                                       "exhausted") from exc
        finally:
            if conn is not None:  # a GET stream does not end by itself: closed
                tap.pool.release(conn, False)
