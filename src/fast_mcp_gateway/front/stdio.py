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

Like the SDK, it claims the wire: fd 0 is pointed at the null device and fd 1 at
stderr while serving, so nothing stray (a child's inherited stdout, a ``print``)
can corrupt the protocol; both are restored on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

_restore: list[Callable[[], None]] = []


def _set_blocking(modes: dict[int, bool]) -> None:
    for fd, mode in modes.items():
        with contextlib.suppress(OSError):
            os.set_blocking(fd, mode)


def restore_blocking() -> None:
    """Give the host's stdin/stdout back their original blocking mode (idempotent)."""
    while _restore:
        _restore.pop()()


def _is_pipe_or_socket(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class LineReader:
    """``async for line in reader``: UTF-8 lines (with their newline) until EOF.

    ``intercept``, when set, sees each raw line first; a line it returns True for
    was taken (by the express lane) and is not yielded.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.intercept: Callable[[bytes], bool] | None = None

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as eof:
                line = eof.partial  # the last line, unterminated, or b"" at EOF
            if not line:
                raise StopAsyncIteration
            if self.intercept is None or not self.intercept(line):
                return line.decode("utf-8", errors="replace")


class LineWriter:
    """``await write(text)`` then ``await flush()`` (which waits for the pipe to drain)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    def write_nowait(self, line: bytes) -> None:
        """Queue one whole line on the pipe without waiting for it to drain."""
        self._writer.write(line)

    async def write_bytes(self, line: bytes) -> None:
        """Write one whole line and wait for the pipe to take it."""
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
async def stdio_streams() -> AsyncIterator[tuple[LineReader, LineWriter] | None]:
    """Threadless streams over the process's stdin/stdout, or ``None`` when they are
    not both pipes or sockets."""
    if not (_is_pipe_or_socket(0) and _is_pipe_or_socket(1)):
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
            reader = asyncio.StreamReader(limit=1 << 30)
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
                yield LineReader(reader), LineWriter(writer)
            finally:
                rtransport.close()
                wtransport.close()
                restore_blocking()
    finally:
        os.close(devnull)
