"""The stdio upstream transport, with a raw side door for the express lane.

``tapped_stdio_client`` is the SDK's ``stdio_client`` (same spawn, same shutdown
sequence, its own helpers) plus a ``RawTap``: the express lane writes a
``tools/call`` line straight to the server's stdin under an id of its own
(``gw-N``), and the stdout reader hands the lines that belong to such a call (its
response, its progress) back to the waiting caller as JSON, before the SDK
parses them into models.  A log (``notifications/message``) read while such a call
waits is handed to the session's own handling there and then, before the next line
is read: the server may have written it just before its answer, which must not
overtake it (handed to the session's reader, it was relayed a turn later, after the
call had ended).  Every other line -- responses to the session's own requests, logs
between tap calls, list_changed, server-to-client requests -- goes to the
``ClientSession`` exactly as before, so the persistent session stays the one
owner of the connection.

A tap call has what a session request has: a timeout (then a
``notifications/cancelled`` upstream and ``REQUEST_TIMEOUT``), cancellation by the
caller (also cancelled upstream), progress to a callback, and
``CONNECTION_CLOSED`` when the server's stdout ends mid-call.

The stdout reader works on bytes: ``LineFramer`` splits lines in time linear in
their size (a long line is joined once, when its newline arrives) and refuses a
line longer than ``max_message_bytes``.  Such a framing violation, or a runaway
line without newline, ends the session: the calls in flight fail with the reason
and the replica's supervisor restarts it.  A line that is not valid UTF-8 is
skipped; when it is recognisably the response to a pending request, that request
gets an error naming the fault instead of waiting for its timeout.  Both are
reported to ``protocol_listener`` (counted, logged, shown in ``last_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import anyio
import anyio.lowlevel
import mcp_types as types
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp.os.win32.utilities import close_process_job
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from fast_mcp_gateway._compat import (
    TransportStreams,
    aclose_all,
    close_pipe,
    close_subprocess_transport,
    create_process,
    deliver_notification,
    drain_stdout,
    executable_command,
    pipe_writer,
    terminate_process_tree,
    wait_for_process_exit,
)
from fast_mcp_gateway.upstream.deadline import Deadline, extends, host_reason
from fast_mcp_gateway.upstream.framing import (
    DEFAULT_MAX_MESSAGE_BYTES,
    UTF8_JSON,
    LineFramer,
    MessageTooLarge,
    finite,
    is_number,
)
from fast_mcp_gateway.upstream.held_logs import READER
from fast_mcp_gateway.upstream.launch import launch_failure
from fast_mcp_gateway.upstream.lifting import LIFT_MIN, lifted_loads, lifting
from fast_mcp_gateway.upstream.processes import default_environment
from fast_mcp_gateway.upstream.stdout_lines import (
    excerpt,
    invalid_response,
    parse_line,
    undecodable,
)

if TYPE_CHECKING:
    from fastmcp.client.transports import ClientTransport as _TransportBase
else:
    _TransportBase = object

logger = logging.getLogger(__name__)

_ID_PREFIX = "gw-"
_LOG = "notifications/message"
_WRITER_FLUSH_TIMEOUT = 0.5  # as the SDK's stdio_client
# Seconds a stopping server gets to exit on stdin EOF before its process group is ended
# (the SDK's 2 s: hosts often kill the gateway ~2 s after closing its stdin, orphaning it).
STOP_GRACE = 1.0
_KILL_REAP_TIMEOUT = 2.0


async def _stop_server_process(process: Any, stopping: asyncio.Event) -> None:
    """The SDK's shutdown sequence (stdin EOF, grace, group SIGTERM, SIGKILL) with
    ``STOP_GRACE`` as the grace; ``stopping`` set first (an exit may be ours from now)."""
    stopping.set()
    await close_pipe(process.stdin)
    if not await wait_for_process_exit(process, STOP_GRACE):
        await terminate_process_tree(process)
        if not await wait_for_process_exit(process, _KILL_REAP_TIMEOUT):
            logger.warning("MCP server process %d is still alive after the kill escalation; "
                           "abandoning it", process.pid)
    close_process_job(process)
    await close_pipe(process.stdout)
    close_subprocess_transport(process)
Progress = Callable[[float, float | None, str | None], Awaitable[None]]
# (reason, fatal): a protocol violation on stdout; fatal ones end the session.
ProtocolListener = Callable[[str, bool], None]
class _Reply:
    """Where one tap request's response goes: a one-shot future (a memory stream's
    receive costs an extra turn of the event loop per call, a checkpoint; an anyio
    ``Event`` a lookup of the running backend)."""

    __slots__ = ("deadline", "done", "lifts", "progress")

    def __init__(self, loop: asyncio.AbstractEventLoop, progress: Progress | None,
                 lifts: bool, deadline: Deadline) -> None:
        # The response; None: the connection closed first.
        self.done: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self.progress = progress
        self.lifts = lifts  # an express lane's call: long strings may be lifted
        self.deadline = deadline  # the request's; its progress pushes it out

    def deliver(self, message: dict[str, Any] | None) -> None:
        if not self.done.done():
            self.done.set_result(message)


class RawTap:
    """Raw ``tools/call`` requests on a stdio session (see the module docstring)."""

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 protocol_listener: ProtocolListener | None = None) -> None:
        self._write: Callable[[bytes], Awaitable[None]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's, once open
        self._pending: dict[str, _Reply] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self.framer = LineFramer(max_message_bytes)
        self.fatal: str | None = None  # why the connection was ended, if it was
        self.exit_code: int | None = None  # the server's, once stopped (< 0: a signal)
        self.process: Any = None  # the server's process, once connected
        self.server_ended = False  # its stdout ended before the gateway stopped it
        self.stopping = asyncio.Event()  # set as the gateway begins to stop it
        self._listener = protocol_listener
        self.heard: Callable[[], None] | None = None  # told of progress (supervisor's)
        self.session: ClientSession | None = None  # whose handling relays logs (``take``)

    def violation(self, reason: str, *, fatal: bool) -> None:
        """The server broke the stdio framing or encoding (see the module docstring)."""
        if fatal:
            self.fatal = self.fatal or reason
        if self._listener is not None:
            self._listener(reason, fatal)
        else:
            logger.warning("%s", reason)

    async def request(self, method: str, params: dict[str, Any], timeout: float,  # noqa: ASYNC109 - also goes upstream
                      on_progress: Progress | None = None,
                      max_total: float | None = None) -> dict[str, Any]:
        """Send one request; its ``result`` as JSON, or ``MCPError`` as the session would
        (``DeadlineReached`` for a timeout: ``timeout`` after the request or its last
        progress, ``max_total`` in all; see ``upstream/deadline.py``)."""
        loop = self._loop
        if self._closed or self._write is None or loop is None:
            raise MCPError(code=types.CONNECTION_CLOSED, message="Connection closed")
        request_id = f"{_ID_PREFIX}{next(self._ids)}"
        if on_progress is not None or extends(timeout, max_total):
            params = {**params, "_meta": {**(params.get("_meta") or {}),
                                          "progressToken": request_id}}
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            line = UTF8_JSON.encode(request)
        except ValueError:  # NaN or an infinity: null, as the SDK's session writes it
            line = UTF8_JSON.encode(finite(request))
        deadline = Deadline(loop, timeout, max_total)
        reply = self._pending[request_id] = _Reply(loop, on_progress, lifting.get(), deadline)
        try:  # once the write starts, the server may have the request: cancelled then
            await self._write((line + "\n").encode())
            message = await reply.done
        except asyncio.CancelledError:
            if deadline.reached():
                reached = deadline.error()
                await self._cancel(request_id, f"timed out ({reached.limit} limit)")
                raise reached from None
            with anyio.CancelScope(shield=True):
                await self._cancel(request_id, host_reason("cancelled by the caller"))
            raise
        finally:
            deadline.stop()
            self._pending.pop(request_id, None)
        if message is None:  # the connection ended first (close())
            raise MCPError(code=types.CONNECTION_CLOSED, message=self.fatal or "Connection closed")
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

    async def take(self, line: str, raw: bytes | None = None) -> bool:
        """Whether ``line`` belonged to a tap request (then it has been delivered);
        ``raw``: its bytes, for an answer whose long strings may be lifted.

        A log while a tap request waits is relayed here too, through the session's own
        handling, before the next line is read: handed to the session's reader, it
        was relayed in a later turn, after an answer that followed it (so after the
        call, to no host or as a log between calls)."""
        if _ID_PREFIX not in line:
            if self._pending and _LOG in line:  # the common answer never gets here
                return await self._log(line)
            return False
        # Lifted only while an express lane's call waits (not parsed twice otherwise).
        lifts = raw is not None and len(raw) >= LIFT_MIN \
            and any(reply.lifts for reply in self._pending.values())
        try:
            message = lifted_loads(raw, decoded=True) if lifts and raw else json.loads(line)
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
            if lifts and not entry.lifts:
                message = json.loads(line)  # a typed reader's: its strings as they are
            entry.deliver(message)
            return True
        if method == "notifications/progress":
            params = message.get("params") or {}
            token = params.get("progressToken") if isinstance(params, dict) else None
            entry = self._pending.get(token) if isinstance(token, str) else None
            if entry is None:
                return False
            progress, total, text = (params.get("progress"), params.get("total"),
                                     params.get("message"))
            if not (is_number(progress) and (total is None or is_number(total))
                    and (text is None or isinstance(text, str))):
                return True  # malformed: dropped, as the SDK's session drops it
            entry.deadline.progressed(self.heard)
            if entry.progress is None:  # asked only to keep the call alive
                return True
            try:
                # (numbers as the upstream wrote them: its 1 stays 1, not 1.0)
                await entry.progress(cast(float, progress), total, text)
            except Exception:
                logger.debug("progress relay failed", exc_info=True)
            return True
        if method == _LOG and self._pending:
            return await self._log(line)
        return False

    async def exit_status(self, within: float) -> int | None:
        """The server's exit code (< 0: the signal that ended it) when it ended the
        connection itself (it died or closed its stdout), waited for ``within`` seconds;
        ``None``: the gateway ended it, or the process still runs."""
        if not self.server_ended or self.process is None:
            return None
        await wait_for_process_exit(self.process, within)
        return cast(int | None, self.process.returncode)

    async def _log(self, line: str) -> bool:
        """Relay a log line (see ``take``); False: not one, or no session yet."""
        session = self.session
        if session is None:
            return False
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict) or message.get("method") != _LOG:
            return False
        params = message.get("params")
        reading = READER.set(True)  # no host but a lane's waited on here (``held_logs``)
        try:
            await deliver_notification(session, _LOG,
                                       params if isinstance(params, dict) else None)
        finally:
            READER.reset(reading)
        return True

    def open(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        self._write = write
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        """The connection ended: every waiting request fails with CONNECTION_CLOSED."""
        self._closed = True
        for reply in list(self._pending.values()):
            reply.deliver(None)


@contextlib.asynccontextmanager
async def tapped_stdio_client(
    server: StdioServerParameters, errlog: TextIO, tap: RawTap, process: Any = None
) -> AsyncGenerator[TransportStreams, None]:
    """The SDK's ``stdio_client``, with ``tap`` reading and writing beside the session;
    ``process``: one already started the same way (spawn-first) to use instead."""
    if process is None:
        command = await executable_command(server.command)
        env = default_environment() | (server.env or {})
        try:
            process = await create_process(
                command=command, args=server.args, env=env, errlog=errlog, cwd=server.cwd)
        except OSError as exc:
            # "No such file or directory" (uvloop's without the file name) said neither
            # which file nor the fix: the PATH, a relative path, a missing #! interpreter.
            raise launch_failure(exc, command, env.get("PATH"), server.cwd) from exc
    read_stream_writer, read_stream = anyio.create_memory_object_stream[
        SessionMessage | Exception](0)
    write_stream, write_stream_reader = anyio.create_memory_object_stream[SessionMessage](0)
    shutting_down = False
    writer_done = anyio.Event()
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    tap.process = process

    async def deliver(line: str, raw: bytes | None) -> bool:
        """Hand one line (``raw``: its bytes, None for the error made for undecodable
        ones) to the tap or the session; False once the session is gone."""
        if await tap.take(line, raw):
            return True
        message = parse_line(line)
        if isinstance(message, Exception):
            tap.violation(f"upstream wrote a line on stdout that is not JSON-RPC: "
                          f"{excerpt(line)}", fatal=False)
            if (answer := invalid_response(line)) is not None:
                message = answer  # its request fails now, not at its timeout
        try:
            await read_stream_writer.send(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    async def stdout_reader() -> None:
        framer = tap.framer
        try:
            async with read_stream_writer:
                try:
                    async for chunk in stdout:
                        for raw in framer.feed(chunk):
                            line: str | None
                            read: bytes | None = raw
                            try:
                                line = raw.decode(server.encoding)
                            except UnicodeDecodeError as exc:
                                line, read = undecodable(raw, exc, tap.violation), None
                            if line is not None and not await deliver(line, read):
                                return
                    tap.server_ended = not shutting_down
                except MessageTooLarge as exc:
                    # The stream cannot be resynchronised with certainty (the rest of
                    # the line may hold anything); end the session, the supervisor
                    # restarts it.  Closing the session's stream fails its requests.
                    tap.violation(str(exc), fatal=True)
                    await read_stream_writer.aclose()
                finally:
                    tap.close()
                    await drain_stdout(process)
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
        await _stop_server_process(process, tap.stopping)
        tap.exit_code = process.returncode
        await aclose_all(read_stream, write_stream, read_stream_writer, write_stream_reader)
        await anyio.lowlevel.checkpoint()

    # A tap request writes its line straight to the pipe's asyncio writer: anyio's
    # ``send`` adds a checkpoint (a turn of the event loop) after every write.  Lines
    # stay whole and in order with the session's own writes: each write is one
    # ``transport.write`` of a complete line.
    pipe = pipe_writer(stdin)

    async def raw_write(data: bytes) -> None:
        try:
            if pipe is not None and not pipe.is_closing():
                pipe.write(data)
                await pipe.drain()  # returns at once unless the pipe is full
            else:
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


class TappedStdioTransport(_TransportBase):
    """A stdio server (fastmcp ``StdioTransport``'s settings), one session per
    ``connect_session``, over ``tapped_stdio_client``.

    It implements fastmcp's ``ClientTransport`` interface (and is typed as one) without
    deriving from it at run time: ``fastmcp.client`` loads its auth and token-storage
    libraries (~0.2 s of CPU, several MB), which a gateway with only stdio upstreams
    never needs (``upstream/transports.py`` loads the HTTP transports on first use).

    ``session_class``: the ``ClientSession`` each session is (unless the caller's
    ``transport_options`` name one); ``tap`` is the live session's ``RawTap`` (``None``
    between sessions); ``adopt``: a process started early for this server
    (``processes.spawn_early``), used by the next session instead of spawning one.
    """

    legacy_only = False  # stdio carries either protocol era
    tap: RawTap | None = None
    last_tap: RawTap | None = None  # the latest session's, kept after it ends
    adopt: Any = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    protocol_listener: ProtocolListener | None = None

    def __init__(self, command: str, args: list[str], env: dict[str, str] | None = None,
                 cwd: str | None = None, log_file: Path | TextIO | None = None,
                 session_class: type[ClientSession] = ClientSession) -> None:
        self.command, self.args, self.env, self.cwd = command, args, env, cwd
        self.log_file = log_file
        self.session_class = session_class

    def __repr__(self) -> str:
        return f"<TappedStdioTransport(command={self.command!r}, args={self.args!r})>"

    @contextlib.asynccontextmanager
    async def connect_session(  # type: ignore[override]  # options read by duck typing
        self, *, transport_options: Any = None, **session_kwargs: Any,
    ) -> AsyncIterator[ClientSession]:
        session_class = getattr(transport_options, "session_class", None) or self.session_class
        params = StdioServerParameters(command=self.command, args=self.args, env=self.env,
                                       cwd=self.cwd)
        tap = self.last_tap = RawTap(self.max_message_bytes, self.protocol_listener)
        async with contextlib.AsyncExitStack() as stack:
            log = self.log_file
            errlog = (stack.enter_context(log.open("a")) if isinstance(log, Path)
                      else log or sys.stderr)
            process, self.adopt = self.adopt, None
            read, write = await stack.enter_async_context(
                tapped_stdio_client(params, errlog, tap, process))
            session = await stack.enter_async_context(session_class(read, write, **session_kwargs))
            self.tap, tap.session = tap, session
            try:
                yield session
            finally:
                self.tap = None

    @property
    def exit_code(self) -> int | None:
        """How the latest session's server process ended (None: not stopped yet;
        negative: by that signal)."""
        return None if self.last_tap is None else self.last_tap.exit_code

    async def close(self) -> None:
        """Nothing outlives ``connect_session`` (its exit stops the server)."""
