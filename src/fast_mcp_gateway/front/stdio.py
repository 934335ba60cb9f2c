"""The gateway's own stdin/stdout, read and written on the event loop (no threads).

The SDK's ``stdio_server`` wraps stdin and stdout with ``anyio.wrap_file``, so every
line read and every write *and* flush is a hop to a worker thread and back.  A
gateway pays that on its front and its upstream pays it again behind it: three
thread round trips per call, which on a busy 2-core machine cost more latency than
all of the gateway's own code.  When fd 0 and fd 1 are pipes or sockets (what every
MCP host gives a stdio server), ``stdio_streams`` serves them through asyncio's pipe
transports instead, and hands them to the SDK's ``stdio_server`` as its streams, so
parsing, framing and errors stay the SDK's.  For anything else (a terminal, a regular
file) it yields ``None`` and the caller keeps the SDK's threaded streams.

No line a host writes may stop the gateway or leave the host waiting.  The SDK drops
every line its JSON-RPC parser refuses without a word (a float id, a missing
``method``, a batch, a lone surrogate, …), so the host waits for its own timeout; and
a line the express lane cannot encode an answer to once ended the process.  So each
line is screened (``screen``) before the express lane or the SDK sees it, against
the SDK's own parser: what it accepts goes on untouched, and what it refuses is
answered here with a JSON-RPC error naming what is wrong (-32700 with id null for a
line that is not JSON, -32600 under the request's id for JSON that is not a valid
request), or else (no id the host could match an answer to) dropped with a
rate-limited log line.

Like the SDK, it claims the wire: fd 0 is pointed at the null device and fd 1 at
stderr while serving, so nothing stray (a child's inherited stdout, a ``print``)
can corrupt the protocol; both are restored on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import mcp_types as types
from pydantic import ValidationError

from fast_mcp_gateway.config.json_text import json_kind, no_constant
from fast_mcp_gateway.front.early import served_threadless, valid_unicode
from fast_mcp_gateway.front.request_ids import STDIO, RequestIds
from fast_mcp_gateway.policies.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

# Generous for any real request, and a bound on what one line can make the gateway
# hold: a longer line is skipped as it streams past.
MAX_LINE_BYTES = 64 << 20
_CHUNK = 1 << 18
_BOM = b"\xef\xbb\xbf"
_BATCH = ("JSON-RPC batches are not supported (MCP removed them in protocol 2025-06-18): "
          "send each message on its own line")

_restore: list[Callable[[], None]] = []


def _set_blocking(modes: dict[int, bool]) -> None:
    for fd, mode in modes.items():
        with contextlib.suppress(OSError):
            os.set_blocking(fd, mode)


def restore_blocking() -> None:
    """Give the host's stdin/stdout back their original blocking mode (idempotent)."""
    while _restore:
        _restore.pop()()


class _TooLong:
    """What ``LineReader._next_line`` returns for a line over the limit."""


_TOO_LONG = _TooLong()


@dataclass(frozen=True)
class Refusal:
    """A line the SDK would not take: what is wrong with it and what to send back.

    ``replies`` are whole JSON-RPC error lines; ``dropped`` counts the messages in the
    line that get no answer (no id the host could match one to, or a response).
    """

    reason: str
    replies: tuple[bytes, ...] = ()
    dropped: int = 0


def _error_line(request_id: Any, code: int, message: str) -> bytes:
    # ASCII: a lone surrogate the host put in its id goes back as the escape it sent.
    return json.dumps({"jsonrpc": "2.0", "id": request_id,
                       "error": {"code": code, "message": message}},
                      separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _parse_error(reason: str) -> Refusal:
    # JSON-RPC 2.0: an id that could not be read with the message is answered as null.
    return Refusal(reason, (_error_line(None, types.PARSE_ERROR, f"Parse error: {reason}"),))


def _too_long(limit: int) -> Refusal:
    return _parse_error(f"the line is longer than {limit >> 20} MiB and was skipped; "
                        "send smaller messages")


def _kind(value: Any) -> str:
    if isinstance(value, float):
        return ("a number with a fraction or an exponent" if math.isfinite(value)
                else "a number too large to represent")
    return "an integer" if type(value) is int else json_kind(value)


def _usable_id(message: dict[str, Any]) -> bool:
    """Whether the host can match an answer to ``message``: a request whose id is a
    JSON scalar that can be echoed as sent (even a float or a boolean the SDK
    refuses; not null, which JSON-RPC reserves for "no id")."""
    if "method" not in message and ("result" in message or "error" in message):
        return False  # a response: never answered
    request_id = message.get("id")
    return isinstance(request_id, str | int) or (isinstance(request_id, float)
                                                 and math.isfinite(request_id))


def _problem(message: dict[str, Any]) -> str | None:
    """What makes ``message`` something other than a JSON-RPC 2.0 message the SDK
    takes, or None when nothing does (the SDK judges it)."""
    version = message.get("jsonrpc")
    if version != "2.0":
        return ('"jsonrpc" must be "2.0"' if "jsonrpc" in message
                else 'the "jsonrpc": "2.0" member is missing')
    if "id" in message:
        request_id = message["id"]
        if request_id is None or isinstance(request_id, bool) \
                or not isinstance(request_id, str | int):
            return f'"id" must be a string or an integer, not {_kind(request_id)}'
    if "method" in message:
        if not isinstance(message["method"], str):
            return f'"method" must be a string, not {_kind(message["method"])}'
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            return f'"params" must be an object, not {_kind(params)}'
        return None
    if "result" in message or "error" in message:
        return "a response whose result is not an object or whose error is malformed"
    if "id" in message:
        return 'the "method" member is missing (a request needs one)'
    return 'not a JSON-RPC message: it has no "method", "result" or "error"'


def _json_problem(error: ValidationError | None) -> str | None:
    """The SDK parser's complaint when it could not read the line as JSON at all."""
    if error is None:
        return None
    for detail in error.errors(include_url=False):
        if detail["type"] == "json_invalid":
            text = str(detail["msg"]).removeprefix("Invalid JSON: ")
            if "recursion limit" in text:
                return f"nested too deeply ({text})"
            return f"invalid JSON ({text}); each line must be one JSON-RPC message"
    return None


def _refuse_batch(batch: list[Any]) -> Refusal:
    if not batch:
        return Refusal(f"an empty JSON array (an empty batch); {_BATCH}", dropped=1)
    replies = tuple(_error_line(m["id"], types.INVALID_REQUEST, f"Invalid request: {_BATCH}")
                    for m in batch if isinstance(m, dict) and _usable_id(m))
    return Refusal(f"a batch of {len(batch)} messages, {len(replies)} of them requests with "
                   f"an id (each answered with an error); {_BATCH}", replies,
                   dropped=len(batch) - len(replies))


def screen(line: bytes) -> Refusal | None:
    """None when the SDK's JSON-RPC parser takes ``line`` as the message it is, else
    what to answer (or that it is dropped) and why.

    The SDK's own parser decides, so exactly what it would have refused is refused
    here.  Beyond it: an ``id`` it cannot use (a float, a boolean, null) turns a
    request into a notification the SDK silently never answers; that is refused too.
    A line that is not JSON text (bad syntax, not UTF-8, nested deeper than the
    parser goes) is answered with -32700 and id null, as JSON-RPC 2.0 asks.  JSON
    that is not a valid request, lone UTF-16 surrogates included (valid JSON
    syntax, not valid Unicode), is answered with -32600 under its id when the id is
    one the host can match the answer to; the rest (notifications, responses, ids
    such as null or an object, batches' members without an id) are dropped.
    """
    return screened(line)[0]


def screened(line: bytes) -> tuple[Refusal | None, types.JSONRPCMessage | None]:
    """``screen``, and the message when it is taken."""
    try:
        parsed = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError as exc:
        return _diagnose(line, exc), None
    if isinstance(parsed, types.JSONRPCNotification) and b'"id"' in line:
        refusal = _diagnose(line, None)  # perhaps an id the SDK's request model refused
        if refusal is not None:
            return refusal, None
    return None, parsed


def _diagnose(line: bytes, error: ValidationError | None) -> Refusal | None:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _parse_error(f"the line is not valid UTF-8 (byte 0x{line[exc.start]:02x} at "
                            f"offset {exc.start}); MCP messages are UTF-8 JSON")
    syntax = _json_problem(error)
    if syntax is not None and "\x00" in text:
        syntax += "; the line holds NUL bytes (UTF-16 text?): MCP messages are UTF-8"
    try:
        message = json.loads(text, parse_constant=no_constant)
    except RecursionError:
        return _parse_error(syntax or "nested too deeply")
    except ValueError as exc:
        return _parse_error(syntax or f"invalid JSON ({exc}); each line must be one "
                                      "JSON-RPC message")
    # Python's parser read what the SDK's did not: either strings holding lone UTF-16
    # surrogates (valid JSON, invalid Unicode: the request is what is wrong) or
    # something the SDK's parser does not go as far as (nesting, huge numbers).
    if syntax is not None and valid_unicode(message):
        return _parse_error(syntax)
    if isinstance(message, list):
        return _refuse_batch(message)
    if not isinstance(message, dict):
        return Refusal(f"{_kind(message)}, not a JSON-RPC message object", dropped=1)
    problem = _problem(message)
    if problem is None:
        if error is None:
            return None  # an "id" inside the params: the notification is fine
        problem = ("a string holds a lone UTF-16 surrogate (an escape from \\ud800 to "
                   "\\udfff not in a pair); strings must be valid Unicode"
                   if syntax is not None else
                   "not a JSON-RPC request, notification or response the server accepts")
    if not _usable_id(message):
        return Refusal(problem, dropped=1)
    return Refusal(problem, (_error_line(message["id"], types.INVALID_REQUEST,
                                         f"Invalid request: {problem}"),))


class _DropLog:
    """One warning per dropped line, at most 10 at once and one per 10 s after that;
    the next warning says how many went unlogged in between."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._bucket = TokenBucket(per_second=0.1, burst=10)
        self.suppressed = 0

    def dropped(self, refusal: Refusal, size: int) -> None:
        if self._bucket.try_take(self._clock()) > 0.0:
            self.suppressed += 1
            return
        unlogged = f" ({self.suppressed} more dropped since the last such warning)" \
            if self.suppressed else ""
        self.suppressed = 0
        logger.warning("stdin: dropped a %d-byte line the gateway cannot answer: %s%s",
                       size, refusal.reason, unlogged)


class LineReader:
    """``async for line in reader``: the host's lines the SDK will accept, until EOF.

    A line ends at ``\n``, ``\r`` or ``\r\n``, as the SDK's own (text-mode) stdin
    reads it; blank lines are skipped and a leading UTF-8 byte order mark ignored
    (RFC 8259 allows both).  Every other line is ``screen``-ed first: one the SDK would
    refuse is answered through ``answer`` or dropped with a log line, and never
    yielded.  A line longer than ``max_line_bytes`` is skipped without being held in
    memory and answered with a parse error.

    ``intercept``, when set, then sees each accepted raw line (without its line
    ending); a line it returns True for was taken (by the express lane) and is not
    yielded.  ``ids``: a request under an id still in flight is answered with an error
    before either sees it (``request_ids.py``).
    """

    def __init__(self, reader: asyncio.StreamReader,
                 answer: Callable[[bytes], Awaitable[None]] | None = None, *,
                 max_line_bytes: int = MAX_LINE_BYTES,
                 clock: Callable[[], float] = time.monotonic, preread: bytes = b"",
                 ids: RequestIds | None = None) -> None:
        self._reader = reader
        self._ids = ids
        self._answer = answer
        self._max = max_line_bytes
        self._buffer = bytearray(preread)  # read before the reader existed (early.py)
        self._scanned = 0  # how much of the buffer is known to hold no line end
        self._log = _DropLog(clock)
        self.intercept: Callable[[bytes], bool] | None = None

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        while True:
            read = await self._next_line()
            if read is None:
                raise StopAsyncIteration
            if isinstance(read, _TooLong):
                await self._refuse(_too_long(self._max), self._max)
                continue
            line = read[len(_BOM):] if read.startswith(_BOM) else read
            if not line or line.isspace():
                continue
            refusal, message = screened(line)
            if refusal is None and self._ids is not None and message is not None \
                    and (duplicate := self._ids.enter(message)) is not None:
                request_id = cast(types.JSONRPCRequest, message).id
                refusal = Refusal(duplicate, (_error_line(request_id, types.INVALID_REQUEST,
                                                          duplicate),))
            if refusal is not None:
                await self._refuse(refusal, len(line))
            elif self.intercept is None or not self.intercept(line):
                return line.decode("utf-8", errors="replace")

    async def _refuse(self, refusal: Refusal, size: int) -> None:
        if refusal.dropped:
            self._log.dropped(refusal, size)
        else:
            logger.debug("stdin: answered a refused line (%d bytes): %s", size, refusal.reason)
        if self._answer is not None:
            for reply in refusal.replies:
                await self._answer(reply)

    async def _next_line(self) -> bytes | _TooLong | None:
        """The next line without its ending, ``_TOO_LONG``, or None at EOF."""
        buffer = self._buffer
        skipping = False  # past the limit: the line's bytes are being thrown away
        while True:
            # Each byte is scanned once for each ending (a partial line is not
            # rescanned when more arrives), so a long line costs linear time.
            newline = buffer.find(b"\n", self._scanned)
            end = buffer.find(b"\r", self._scanned, len(buffer) if newline < 0 else newline)
            if end < 0:
                end = newline
            if end >= 0:
                line: bytes | _TooLong = (bytes(buffer[:end]) if not skipping
                                          and end <= self._max else _TOO_LONG)
                del buffer[:end + 1]
                self._scanned = 0
                return line
            if len(buffer) > self._max:
                skipping = True
                buffer.clear()
            self._scanned = len(buffer)
            chunk = await self._reader.read(_CHUNK)
            if not chunk:  # EOF: the last line may be unterminated
                line = bytes(buffer) if not skipping else _TOO_LONG
                buffer.clear()
                self._scanned = 0
                return line or None
            buffer += chunk


class LineWriter:
    """``await write(text)`` then ``await flush()`` (which waits for the pipe to drain)."""

    def __init__(self, writer: asyncio.StreamWriter, ids: RequestIds | None = None) -> None:
        self._writer = writer
        self._ids = ids  # told of each line written: answers free their ids

    def _check_open(self) -> None:
        # Once a write failed (the host closed our stdout) the transport is closing:
        # asyncio drops further writes and the next drain raises, uvloop raises
        # RuntimeError at the write.  Either way it is the host leaving, said one way.
        if self._writer.transport.is_closing():
            raise BrokenPipeError("the host closed the gateway's stdout")

    def answered(self, text: str) -> None:
        """``text``, an answer, went to the host another way (``early.py``)."""
        if self._ids is not None:
            self._ids.written(text)

    async def write(self, text: str) -> None:
        self._check_open()
        if self._ids is not None:
            self._ids.written(text)
        self._writer.write(text.encode("utf-8"))

    def write_nowait(self, line: bytes) -> None:
        """Queue one whole line on the pipe without waiting for it to drain (dropped
        once the host closed the pipe, as asyncio does: the next awaited write says so)."""
        if not self._writer.transport.is_closing():
            if self._ids is not None:
                self._ids.written(line)
            self._writer.write(line)

    async def write_bytes(self, line: bytes) -> None:
        """Write one whole line and wait for the pipe to take it."""
        self._check_open()
        if self._ids is not None:
            self._ids.written(line)
        self._writer.write(line)
        await self._writer.drain()

    async def flush(self) -> None:
        await self._writer.drain()


@dataclass
class _Claim:
    fd: int
    private: int


@contextlib.contextmanager
def _claimed(fd: int, diversion: int) -> Iterator[_Claim]:
    """Serve ``fd``'s wire from a private duplicate; point ``fd`` at ``diversion``."""
    private = os.dup(fd)
    os.set_inheritable(private, False)
    try:
        os.dup2(diversion, fd)
        try:
            yield _Claim(fd, private)
        finally:
            os.dup2(private, fd)  # the wire back where it was (the caller may print)
    finally:
        os.close(private)


@contextlib.asynccontextmanager
async def stdio_streams(preread: bytes = b""
                        ) -> AsyncIterator[tuple[LineReader, LineWriter] | None]:
    """Threadless streams over the process's stdin/stdout, or ``None`` when they are
    not both pipes or sockets (``early.served_threadless``).  ``preread``: what was
    read from stdin before (``early.EarlyAnswer``), read first."""
    if not served_threadless(0, 1):
        if preread:  # never: the early reader runs on the same condition
            raise RuntimeError("stdin was read early but is not served threadless")
        yield None
        return
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    blocking = {fd: os.get_blocking(fd) for fd in (0, 1)}
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        with _claimed(0, devnull) as stdin, _claimed(1, 2) as stdout:
            # The pipe transports own (and close) these files, not the claimed fds.
            rfile: BinaryIO = os.fdopen(os.dup(stdin.private), "rb", buffering=0)
            wfile: BinaryIO = os.fdopen(os.dup(stdout.private), "wb", buffering=0)
            # LineReader splits the lines itself: this only bounds the read-ahead.
            reader = asyncio.StreamReader(limit=_CHUNK)
            rtransport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), rfile)
            wtransport, wprotocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, wfile)
            writer = asyncio.StreamWriter(wtransport, wprotocol, None, loop)
            # The pipe transports made the host's pipes non-blocking (a flag on the open
            # file, which the host shares): hand them back as they came, also on a hard
            # exit (``restore_blocking``).
            _restore.append(lambda: _set_blocking({stdin.private: blocking[0],
                                                   stdout.private: blocking[1]}))
            try:
                ids = RequestIds()
                STDIO[:] = [ids]  # (the full path reads its host's cancel reasons there)
                lines = LineWriter(writer, ids)
                yield LineReader(reader, lines.write_bytes, preread=preread, ids=ids), lines
            finally:
                STDIO.clear()
                rtransport.close()
                wtransport.close()
                restore_blocking()
    finally:
        os.close(devnull)
