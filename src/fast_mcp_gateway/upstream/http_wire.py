"""Reading an HTTP/1.1 answer off a stream: the head, the body, SSE events.

``http_tap.py`` writes its requests itself and reads the answers with these: a
response head (status, headers, keep-alive), a body by ``Content-Length``, by chunks or
until the connection ends, and the ``data`` of SSE ``message`` events.  Every read is
bounded: a head by the stream's limit, a body and an event by ``max_message_bytes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import mcp_types as types
from mcp.shared.exceptions import MCPError

PIECE = 64 * 1024  # the most of a chunk read at once


class Response:
    """A response's status line and headers; the body is read by the caller."""

    __slots__ = ("body_left", "chunk_left", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: dict[str, str], keep_alive: bool) -> None:
        self.status, self.headers, self.keep_alive = status, headers, keep_alive
        self.chunk_left = 0  # bytes of the current chunk still unread (chunked bodies)
        self.body_left: int | None = None  # of a Content-Length body read as a stream

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").partition(";")[0].strip().lower()


async def read_head(reader: asyncio.StreamReader) -> Response:
    """The next response's head (an interim 1xx one is skipped); ``ValueError`` for
    what is not HTTP/1.x."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    status_text = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or not status_text.isdigit():
        raise ValueError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            name, value = key.strip().lower(), value.strip()
            if name == "keep-alive" and name in headers:  # a list: every line's items
                value = f"{headers[name]}, {value}"
            headers[name] = value
    close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
    status = int(status_text)
    if 100 <= status < 200:  # an interim answer: the real one follows
        return await read_head(reader)
    return Response(status, headers, not close)


def _too_large(limit: int, size: int | None = None) -> MCPError:
    what = "the upstream's answer" + (f" ({size} bytes)" if size is not None else "")
    return MCPError(code=types.INTERNAL_ERROR,
                    message=f"{what} is larger than max_message_bytes ({limit})")


def _declared_size(response: Response, limit: int) -> int | None:
    """The body's ``Content-Length`` (``None``: none given), refused past ``limit``."""
    length = response.headers.get("content-length")
    if length is None:
        return None
    size = int(length)
    if size > limit:
        raise _too_large(limit, size)
    return size


async def read_body(reader: asyncio.StreamReader, response: Response, limit: int) -> bytes:
    """The whole body of a response that is not a stream, at most ``limit`` bytes.

    The common answer (``Content-Length``) is one read, without the generator
    ``body_chunks`` is."""
    if response.headers.get("transfer-encoding") is None:
        size = _declared_size(response, limit)
        if size is not None:
            return await reader.readexactly(size) if size else b""
    parts, size = [], 0
    async for chunk in body_chunks(reader, response, limit):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
    return b"".join(parts)


async def body_chunks(reader: asyncio.StreamReader, response: Response,
                      limit: int) -> AsyncGenerator[bytes, None]:
    """The body as it arrives (Content-Length, chunked, or until the connection ends).

    A chunk, or a body of a declared length, is read in pieces of at most ``PIECE``
    bytes: its size is the server's to say (a chunk of gigabytes was read whole before
    any limit was looked at; an SSE answer longer than ``max_message_bytes`` in all was
    refused, though the SDK bounds its events one by one).  Where the reading stopped is
    kept on ``response`` (``chunk_left``, ``body_left``): a body left between pieces (an
    answer found) is read on from there by the next ``body_chunks``."""
    if response.headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            left = response.chunk_left
            if not left:
                size_line = await reader.readuntil(b"\r\n")
                left = int(size_line.split(b";")[0].strip(), 16)
                if left == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers
                    return
            piece = await reader.readexactly(min(left, PIECE))
            left -= len(piece)
            if not left and await reader.readexactly(2) != b"\r\n":
                raise ValueError("a chunk of the upstream's answer is longer than its size")
            response.chunk_left = left
            yield piece
    length = response.headers.get("content-length")
    if length is not None:  # (a stream's events are bounded one by one, by the reader)
        if response.body_left is None:
            response.body_left = int(length)
        while response.body_left:
            piece = await reader.readexactly(min(response.body_left, PIECE))
            response.body_left -= len(piece)
            yield piece
        return
    response.keep_alive = False
    while chunk := await reader.read(65536):
        yield chunk


class StreamMarks:
    """What a stream said of its resumption (SEP-1699): the last event id read and the
    ``retry`` interval in milliseconds, once the server gave them."""

    __slots__ = ("last_id", "retry_ms")

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry_ms: int | None = None


async def sse_messages(body: AsyncIterator[bytes], limit: int,
                       marks: StreamMarks | None = None) -> AsyncIterator[bytes]:
    """The ``data`` of each SSE ``message`` event (the SDK reads no other kind); lines
    may end in CRLF, LF or CR, split anywhere between chunks.  ``marks`` is kept up to
    date: the last event id as each event is dispatched (one without data too: a
    server's priming event), and the last ``retry`` field."""
    pending = b""
    event, data, has_data = b"message", bytearray(), False
    last_id = b""
    ended = False
    chunks = aiter(body)
    while not ended:
        try:
            pending += await anext(chunks)
        except StopAsyncIteration:
            ended = True
        # A CR at the very end may be half of a CRLF: kept for the next chunk.
        cut = len(pending) - 1 if pending.endswith(b"\r") and not ended else len(pending)
        lines = pending[:cut].replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        pending = lines.pop() + pending[cut:]  # an unfinished line
        if len(pending) > limit or len(data) > limit:
            raise MCPError(code=types.INTERNAL_ERROR,
                           message=f"an SSE event from the upstream is larger than "
                                   f"max_message_bytes ({limit})")
        for line in lines:
            if not line:  # the event is complete
                if marks is not None and last_id:
                    marks.last_id = last_id.decode("utf-8", "replace")
                if has_data and event == b"message" and data:
                    yield bytes(data)
                event, data, has_data = b"message", bytearray(), False
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                if has_data:
                    data += b"\n"
                data += value
                has_data = True
            elif field == b"event":
                event = value or b"message"
            elif field == b"id" and b"\0" not in value:
                last_id = value  # the stream's, from the event's dispatch on
            elif marks is not None and field == b"retry" and value.isdigit():
                marks.retry_ms = int(value)
