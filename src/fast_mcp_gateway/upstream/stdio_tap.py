"""The stdio upstream transport, with a raw side door for the express lane.

``tapped_stdio_client`` is the SDK's ``stdio_client`` (same spawn, same shutdown
sequence, its own helpers) plus a ``RawTap``: the express lane writes a
``tools/call`` line straight to the server's stdin under an id of its own
(``gw-N``), and the stdout reader hands the lines that belong to such a call (its
response, its progress) back to the waiting caller as JSON, before the SDK
parses them into models.  Every other line -- responses to the session's own
requests, logs, list_changed, server-to-client requests -- goes to the
``ClientSession`` exactly as before, so the persistent session stays the one
owner of the connection.

A tap call has what a session request has: a timeout (then a
``notifications/cancelled`` upstream and ``REQUEST_TIMEOUT``), cancellation by the
caller (also cancelled upstream), progress to a callback, and
``CONNECTION_CLOSED`` when the server's stdout ends mid-call.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO, Unpack, cast

import anyio
import anyio.lowlevel
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream
from fastmcp.client.transports import StdioTransport
from fastmcp.client.transports.base import SessionKwargs, TransportOptions
from mcp import ClientSession
from mcp.client._transport import TransportStreams
from mcp.client.stdio import (
    StdioServerParameters,
    _aclose_all,
    _close_pipe,
    _close_subprocess_transport,
    _create_platform_compatible_process,
    _drain_stdout,
    _get_executable_command,
    _parse_line,
    _terminate_process_tree,
    _wait_for_process_exit,
    get_default_environment,
)
from mcp.os.win32.utilities import close_process_job
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

logger = logging.getLogger(__name__)

_ID_PREFIX = "gw-"
_WRITER_FLUSH_TIMEOUT = 0.5  # as the SDK's stdio_client
# Seconds a stopping server gets to exit on stdin EOF before its process group is
# terminated.  The SDK waits 2 s; hosts often kill the gateway itself ~2 s after
# closing its stdin, which would leave a slow server orphaned.
STOP_GRACE = 1.0
_KILL_REAP_TIMEOUT = 2.0


async def _stop_server_process(process: Any) -> None:
    """The SDK's shutdown sequence (stdin EOF, grace, group SIGTERM, SIGKILL) with
    ``STOP_GRACE`` as the grace."""
    await _close_pipe(process.stdin)
    if not await _wait_for_process_exit(process, STOP_GRACE):
        await _terminate_process_tree(process)
        if not await _wait_for_process_exit(process, _KILL_REAP_TIMEOUT):
            logger.warning("MCP server process %d is still alive after the kill escalation; "
                           "abandoning it", process.pid)
    close_process_job(process)
    await _close_pipe(process.stdout)
    _close_subprocess_transport(process)
Progress = Callable[[float, float | None, str | None], Awaitable[None]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RawTap:
    """Raw ``tools/call`` requests on a stdio session (see the module docstring)."""

    def __init__(self) -> None:
        self._write: Callable[[bytes], Awaitable[None]] | None = None
        self._pending: dict[str, tuple[MemoryObjectSendStream[dict[str, Any]],
                                       Progress | None]] = {}
        self._ids = itertools.count(1)
        self._closed = False

    async def request(self, method: str, params: dict[str, Any], timeout: float,  # noqa: ASYNC109 - also goes upstream
                      on_progress: Progress | None = None) -> dict[str, Any]:
        """Send one request; its ``result`` as JSON, or ``MCPError`` as the session would."""
        if self._closed or self._write is None:
            raise MCPError(code=types.CONNECTION_CLOSED, message="Connection closed")
        request_id = f"{_ID_PREFIX}{next(self._ids)}"
        if on_progress is not None:
            params = {**params, "_meta": {**(params.get("_meta") or {}),
                                          "progressToken": request_id}}
        line = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                           "params": params}, ensure_ascii=False, separators=(",", ":"))
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](1)
        self._pending[request_id] = (send, on_progress)
        sent = False  # once the write starts, the server may have the request
        try:
            with receive, anyio.fail_after(timeout):
                sent = True
                await self._write((line + "\n").encode())
                message = await receive.receive()
        except TimeoutError:
            if sent:
                await self._cancel(request_id, f"timed out after {timeout}s")
            raise MCPError(code=types.REQUEST_TIMEOUT,
                           message=f"Timed out after {timeout}s") from None
        except anyio.get_cancelled_exc_class():
            if sent:
                with anyio.CancelScope(shield=True):
                    await self._cancel(request_id, "cancelled by the caller")
            raise
        except anyio.EndOfStream:
            raise MCPError(code=types.CONNECTION_CLOSED, message="Connection closed") from None
        finally:
            self._pending.pop(request_id, None)
            send.close()
        error = message.get("error")
        if error is not None:
            raise MCPError.from_error_data(types.ErrorData.model_validate(error))
        result = message.get("result")
        return result if isinstance(result, dict) else {}

    async def _cancel(self, request_id: str, reason: str) -> None:
        if self._write is None or self._closed:
            return
        line = json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                           "params": {"requestId": request_id, "reason": reason}})
        with anyio.move_on_after(1), contextlib.suppress(Exception):
            await self._write((line + "\n").encode())

    async def take(self, line: str) -> bool:
        """Whether ``line`` belonged to a tap request (then it has been delivered)."""
        if _ID_PREFIX not in line:
            return False
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict):
            return False
        method = message.get("method")
        if method is None:
            request_id = message.get("id")
            entry = self._pending.get(request_id) if isinstance(request_id, str) else None
            if entry is None:
                return False
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError,
                                     anyio.ClosedResourceError):
                entry[0].send_nowait(message)
            return True
        if method == "notifications/progress":
            params = message.get("params") or {}
            token = params.get("progressToken") if isinstance(params, dict) else None
            entry = self._pending.get(token) if isinstance(token, str) else None
            if entry is None or entry[1] is None:
                return False
            progress, total, text = (params.get("progress"), params.get("total"),
                                     params.get("message"))
            if not (_is_number(progress) and (total is None or _is_number(total))
                    and (text is None or isinstance(text, str))):
                return True  # malformed: dropped, as the SDK's session drops it
            try:
                await entry[1](float(cast(float, progress)),
                               None if total is None else float(total), text)
            except Exception:
                logger.debug("progress relay failed", exc_info=True)
            return True
        return False

    def open(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        self._write = write

    def close(self) -> None:
        """The connection ended: every waiting request fails with CONNECTION_CLOSED."""
        self._closed = True
        for send, _ in list(self._pending.values()):
            send.close()


@contextlib.asynccontextmanager
async def tapped_stdio_client(
    server: StdioServerParameters, errlog: TextIO, tap: RawTap
) -> AsyncGenerator[TransportStreams, None]:
    """The SDK's ``stdio_client``, with ``tap`` reading and writing beside the session."""
    command = await _get_executable_command(server.command)
    process = await _create_platform_compatible_process(
        command=command, args=server.args,
        env=get_default_environment() | (server.env or {}), errlog=errlog, cwd=server.cwd,
    )
    read_stream_writer, read_stream = anyio.create_memory_object_stream[
        SessionMessage | Exception](0)
    write_stream, write_stream_reader = anyio.create_memory_object_stream[SessionMessage](0)
    shutting_down = False
    writer_done = anyio.Event()
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    async def stdout_reader() -> None:
        text = TextReceiveStream(stdout, encoding=server.encoding,
                                 errors=server.encoding_error_handler)
        try:
            async with read_stream_writer:
                try:
                    buffer = ""
                    async for chunk in text:
                        lines = (buffer + chunk).split("\n")
                        buffer = lines.pop()
                        for line in lines:
                            if await tap.take(line):
                                continue
                            try:
                                await read_stream_writer.send(_parse_line(line))
                            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                                return
                finally:
                    tap.close()
                    await _drain_stdout(process)
        except anyio.ClosedResourceError:
            pass
        except (anyio.BrokenResourceError, ConnectionError):
            if not shutting_down:
                logger.exception("Reading from the MCP server's stdout failed mid-session")

    async def stdin_writer() -> None:
        try:
            async with write_stream_reader:
                async for session_message in write_stream_reader:
                    data = session_message.message.model_dump_json(by_alias=True,
                                                                   exclude_unset=True)
                    await stdin.send((data + "\n").encode(server.encoding,
                                                          server.encoding_error_handler))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_stream_writer.aclose()
        finally:
            writer_done.set()

    async def shutdown() -> None:
        read_stream.close()
        write_stream.close()
        tap.close()
        with anyio.move_on_after(_WRITER_FLUSH_TIMEOUT):
            await writer_done.wait()
        await _stop_server_process(process)
        await _aclose_all(read_stream, write_stream, read_stream_writer, write_stream_reader)
        await anyio.lowlevel.checkpoint()

    async def raw_write(data: bytes) -> None:
        try:
            await stdin.send(data)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as exc:
            raise MCPError(code=types.CONNECTION_CLOSED, message="Connection closed") from exc

    tap.open(raw_write)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stdout_reader)
        tg.start_soon(stdin_writer)
        try:
            yield read_stream, write_stream
        finally:
            shutting_down = True
            with anyio.CancelScope(shield=True):
                await shutdown()
            tg.cancel_scope.cancel()
    await anyio.lowlevel.cancel_shielded_checkpoint()


class TappedStdioTransport(StdioTransport):
    """fastmcp's ``StdioTransport`` settings, one session, over ``tapped_stdio_client``.

    ``tap`` is the live session's ``RawTap`` (``None`` between sessions).
    """

    tap: RawTap | None = None

    @contextlib.asynccontextmanager
    async def connect_session(
        self, *, transport_options: TransportOptions | None = None,
        **session_kwargs: Unpack[SessionKwargs],
    ) -> AsyncIterator[ClientSession]:
        options = transport_options or TransportOptions()
        params = StdioServerParameters(command=self.command, args=self.args, env=self.env,
                                       cwd=self.cwd)
        tap = RawTap()
        async with contextlib.AsyncExitStack() as stack:
            log = self.log_file
            errlog = (stack.enter_context(log.open("a")) if isinstance(log, Path)
                      else log or sys.stderr)
            read, write = await stack.enter_async_context(
                tapped_stdio_client(params, errlog, tap))
            session = await stack.enter_async_context(
                options.session_class(read, write, **session_kwargs))
            self.tap = tap
            try:
                yield session
            finally:
                self.tap = None

    async def close(self) -> None:
        """Nothing outlives ``connect_session`` (its exit stops the server)."""
