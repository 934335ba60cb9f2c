"""The streamable-HTTP upstream transport, with a raw side door for the express lanes.

Relaying a ``tools/call`` through the SDK's streamable-HTTP client cost more gateway
CPU than anything else on the HTTP path: the request is written into an anyio memory
stream, a post-writer task spawns a task per request, httpx builds a request model,
parses the URL, runs its event hooks and its connection pool, the response is
validated into JSON-RPC models and handed back through another memory stream.  A
2026-07-28 request needs none of that: it is sessionless and self-contained, one
POST whose answer (JSON, or an SSE stream of notifications ending in the answer)
belongs to it alone.

``HttpTap`` is the ``RawTap`` of an HTTP upstream (``stdio_tap.py`` is the stdio
one): while the SDK session (``http_transports.FastHttpTransport``) stays the one
owner of the connection's era, catalog, probes and every other request, a raw
``tools/call`` on a 2026-07-28 session is POSTed by the tap itself on a persistent
HTTP/1.1 keep-alive connection of its own, with the envelope, headers
(``Mcp-Method``, ``Mcp-Name``, ``Mcp-Param-*``, the configured ones) and timeout the
session would use, and its answer read as JSON:

* progress for the call's token goes to the caller's callback; any other
  notification on the call's stream (logs) is handed to the session, in the
  caller's context, as if the SDK had read it (``CURRENT_CALL`` finds the call);
* a timeout or the caller's cancellation closes the connection (the 2026-07-28
  cancellation signal), then ``REQUEST_TIMEOUT`` / the cancellation;
* error statuses and bodies map to the errors the SDK's transport makes of them;
  a connection that fails is an ``httpx2.TransportError`` (a transport fault, as on
  the SDK's path).

It steps aside -- the session sends the request as before -- on a handshake-era
session (a session id, server requests on the stream), for ``https`` URLs and URLs
with credentials, when an HTTP proxy applies to the URL (``HTTP_PROXY``/``ALL_PROXY``
without ``NO_PROXY``), for a configured ``auth``, for a header httpx would refuse to
send (CR, LF, NUL, not latin-1), and for a redirect (the request was not served; the
SDK follows same-origin ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any, cast
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, encode_header_value
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway._compat import deliver_notification, send_raw_request, stamp_request
from fast_mcp_gateway.upstream.deadline import Deadline, extends, progress_bounded
from fast_mcp_gateway.upstream.framing import (
    ASCII_JSON,
    DEFAULT_MAX_MESSAGE_BYTES,
    UTF8_JSON,
    is_number,
)
from fast_mcp_gateway.upstream.http_wire import (
    Response,
    body_chunks,
    read_body,
    read_head,
    sse_messages,
)
from fast_mcp_gateway.upstream.lifting import lifted_loads, lifting, unlifted

logger = logging.getLogger(__name__)

Progress = ProgressFnT

IDLE_SECONDS = 2.0
"""A pooled connection idle longer is closed, not reused: servers close idle
keep-alive connections (uvicorn, hypercorn and Node after 5 s), and a request written
into one the server is closing fails (it is never sent again: the server may have run
it, as httpx never resends one either)."""
MAX_IDLE = 32
MAX_HEADER_SETS = 256  # distinct stamped header sets remembered (tool names, mostly)
_HEAD_LIMIT = 64 * 1024
_USER_AGENT = b"fast-mcp-gateway"


class _Declined(Exception):
    """Not for the tap (a redirect: the POST was not served; a header it cannot write
    as is): the session sends the request."""


def proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through an HTTP proxy (httpx would)."""
    proxies = urllib.request.getproxies_environment()
    host = urlsplit(url).hostname or ""
    if not ({"http", "all"} & set(proxies)):
        return False
    return not urllib.request.proxy_bypass(host)


def tap_applies(url: str, auth: Any) -> bool:
    """Whether an upstream at ``url`` can get an ``HttpTap`` (see the module doc); a
    URL with credentials in it (httpx sends them as Basic auth) keeps the SDK's client."""
    parts = urlsplit(url)
    return (parts.scheme == "http" and parts.username is None and parts.password is None
            and auth is None and not proxied(url))


def _header_lines(headers: dict[str, str]) -> bytes:
    """``headers`` as HTTP/1.1 lines; ``_Declined`` for a name or value httpx would
    refuse to send (CR, LF, NUL, not latin-1): no header is ever smuggled in."""
    lines = []
    for key, value in headers.items():
        line = f"{key}: {value}"
        if any(c in line for c in "\r\n\0") or ":" in key or not key.strip():
            raise _Declined
        try:
            lines.append(line.encode("latin-1") + b"\r\n")
        except UnicodeEncodeError:
            raise _Declined from None
    return b"".join(lines)


class _Connection:
    """One keep-alive HTTP/1.1 connection to the upstream."""

    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < IDLE_SECONDS and not self.reader.at_eof()
                and not self.writer.is_closing())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class HttpTap:
    """Raw ``tools/call`` requests of one HTTP upstream session (see the module doc).

    ``request`` has ``RawTap.request``'s contract: the ``result`` as JSON, or
    ``MCPError`` as the session would raise it.
    """

    fatal: str | None = None  # never set: an HTTP connection has no framing to break
    stamped = True  # takes requests already stamped (send_stamped): Requests looks for it

    def __init__(self, url: str, headers: dict[str, str], session: ClientSession,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.session = session
        self.max_message_bytes = max_message_bytes
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        fixed = {"host": parts.netloc.rpartition("@")[2], "user-agent": _USER_AGENT.decode(),
                 "accept": "application/json, text/event-stream",
                 "content-type": "application/json",
                 **{k.lower(): v for k, v in headers.items()}}
        self._head = f"POST {target} HTTP/1.1\r\n".encode() + _header_lines(fixed)
        self._fixed = frozenset(fixed)
        self._extra: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False
        self.served = 0  # requests the tap answered itself (tests and diagnostics)
        self.heard: Callable[[], None] | None = None  # told of progress (supervisor's)

    # -- the contract ---------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any], timeout: float,  # noqa: ASYNC109 - also goes upstream
                      on_progress: Progress | None = None,
                      max_total: float | None = None) -> dict[str, Any]:
        """Send one stamped request; its ``result`` as JSON, or ``MCPError``."""
        data: dict[str, Any] = {"method": method, "params": params}
        opts: CallOptions = {"timeout": timeout}
        stamp_request(self.session, data, opts)  # the headers the session would send
        return await self.send_stamped(method, params, opts, on_progress, max_total)

    async def send_stamped(self, method: str, params: dict[str, Any], opts: CallOptions,
                           on_progress: Progress | None = None,
                           max_total: float | None = None) -> dict[str, Any]:
        """``request`` for ``params`` and ``opts`` this tap's session has just stamped
        (``stamp_request``: the envelope in ``params``, the headers and timeout in
        ``opts``): the caller stamped them already, and a second stamp (the session's
        ``Mcp-Param`` resolution included) would only make the same headers again.
        ``opts["timeout"]`` runs from the request's start or its last progress, up to
        ``max_total`` in all (``upstream/deadline.py``)."""
        session = self.session
        if self._closed:
            raise MCPError(code=types.CONNECTION_CLOSED, message="Connection closed")
        timeout = opts.get("timeout", math.inf)  # no deadline unless one is given
        if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            try:
                result = await self._post(method, params, opts.get("headers") or {},
                                          timeout, on_progress, max_total)
            except _Declined:
                pass
            else:
                self.served += 1
                return result
        headers = opts.setdefault("headers", {})
        if isinstance(name := params.get("name"), str):
            headers.setdefault(MCP_NAME_HEADER, encode_header_value(name))

        async def send(progress: Progress | None, within: float) -> dict[str, Any]:
            opts["timeout"] = within
            if progress is not None:
                opts["on_progress"] = progress
            return await send_raw_request(session, method, params, opts)

        return await progress_bounded(timeout, max_total, on_progress, send, self.heard)

    async def aclose(self) -> None:
        """The session ended: idle connections are closed, calls in flight fail."""
        self._closed = True
        for conn in (*self._idle, *self._busy):
            conn.close()
        self._idle.clear()

    # -- one POST -------------------------------------------------------------------

    async def _post(self, method: str, params: dict[str, Any], headers: dict[str, str],
                    timeout: float, on_progress: Progress | None,  # noqa: ASYNC109
                    max_total: float | None) -> dict[str, Any]:
        request_id = next(self._ids)
        alive = extends(timeout, max_total)  # its progress keeps it alive: always asked for
        if on_progress is not None or alive:
            params = {**params, "_meta": {**(params.get("_meta") or {}),
                                          "progressToken": request_id}}
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            body = UTF8_JSON.encode(message).encode()
        except UnicodeEncodeError:  # a lone surrogate: escaped, still valid JSON
            body = ASCII_JSON.encode(message).encode()
        wire = b"%b%bcontent-length: %d\r\n\r\n%b" % (
            self._head, self._extra_lines(headers), len(body), body)
        conn: _Connection | None = None
        done = False
        deadline = Deadline(self._loop, timeout, max_total)
        if alive or (on_progress is not None and self.heard is not None):
            # (not alive: progress the host asked for still tells the replica works)
            on_progress = _alive(deadline, on_progress, self.heard)
        try:
            conn, response = await self._exchange(wire)
            result, done = await self._answer(conn, response, request_id, on_progress)
            return result
        except asyncio.CancelledError:
            if deadline.reached():
                raise deadline.error() from None
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            if self._closed:
                raise MCPError(code=types.CONNECTION_CLOSED, message="Connection closed") from exc
            what = ("closed the connection before answering"
                    if isinstance(exc, asyncio.IncompleteReadError) else _describe(exc))
            raise httpx2.ReadError(f"HTTP upstream {self.host}:{self.port} {what}") from exc
        finally:
            deadline.stop()
            if conn is not None:
                self._busy.discard(conn)
                if done and not self._closed and len(self._idle) < MAX_IDLE:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                else:  # cancelled, timed out, failed or not keep-alive: closing it
                    conn.close()  # is also the 2026-07-28 cancellation signal

    def _extra_lines(self, headers: dict[str, str]) -> bytes:
        """The stamp's own header lines (version, method, name...), made once per set;
        a set with ``Mcp-Param-*`` values (a call's arguments) is never kept."""
        key = tuple(headers.items())
        lines = self._extra.get(key)
        if lines is None:
            lines = _header_lines({k: v for k, v in headers.items()
                                   if k.lower() not in self._fixed})
            if any(k[:10].lower() == "mcp-param-" for k in headers):
                return lines
            if len(self._extra) >= MAX_HEADER_SETS:
                self._extra.clear()
            self._extra[key] = lines
        return lines

    async def _exchange(self, wire: bytes) -> tuple[_Connection, Response]:
        """Write the request on a pooled connection that is still open (else a new
        one) and read the response head.  Never written twice: a connection that fails
        after the write fails the call (the server may have started it)."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now):
                return conn, await self._send(conn, wire)
            conn.close()  # closed by the server meanwhile, or idle too long
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port,
                                                           limit=_HEAD_LIMIT)
        except OSError as exc:
            # described as "cannot connect: <this>" (upstream/model.describe_error)
            raise httpx2.ConnectError(f"{self.host}:{self.port}: {_describe(exc)}") from exc
        conn = _Connection(reader, writer)
        return conn, await self._send(conn, wire)

    async def _send(self, conn: _Connection, wire: bytes) -> Response:
        """Write on ``conn`` and read the answer's head; ``conn`` is closed if that
        fails or is cancelled (closing is the 2026-07-28 cancellation signal)."""
        self._busy.add(conn)
        try:
            conn.writer.write(wire)
            return await read_head(conn.reader)
        except BaseException:
            self._busy.discard(conn)
            conn.close()
            raise

    async def _answer(self, conn: _Connection, response: Response, request_id: int,
                      on_progress: Progress | None) -> tuple[dict[str, Any], bool]:
        """The call's result (or ``MCPError``), and whether ``conn`` may be reused."""
        status, kind = response.status, response.content_type
        if 300 <= status < 400 and "location" in response.headers:
            raise _Declined
        if status == 202:
            raise MCPError(code=types.INVALID_REQUEST,
                           message="server answered a request with 202 Accepted")
        if kind == "text/event-stream" and status < 300:
            async with contextlib.aclosing(
                    body_chunks(conn.reader, response, self.max_message_bytes)) as body:
                result = await self._events(body, request_id, on_progress)
            return result, False  # the stream is left unread past the answer
        data = await read_body(conn.reader, response, self.max_message_bytes)
        reusable = response.keep_alive
        if status >= 400:
            error = _json_error(data) if kind == "application/json" else None
            if error is not None:
                raise MCPError.from_error_data(error)
            if status == 404:
                raise MCPError(code=types.METHOD_NOT_FOUND, message="Not Found")
            raise MCPError(code=types.INTERNAL_ERROR,
                           message="Server returned an error response")
        if kind != "application/json":
            raise MCPError(code=types.INVALID_REQUEST,
                           message=f"Unexpected content type: {kind}")
        return _outcome(_parse(data)), reusable

    async def _events(self, body: AsyncIterator[bytes], request_id: int,
                      on_progress: Progress | None) -> dict[str, Any]:
        """Read an SSE answer: notifications until the response."""
        async for data in sse_messages(body, self.max_message_bytes):
            message = _parse(data)
            method = message.get("method")
            if method is None:
                if message.get("id") == request_id:
                    return _outcome(message)
                continue  # another request's answer cannot be on this stream
            if lifting.get():
                message = unlifted(message)  # a notification goes on as it came
            if "id" in message:
                logger.warning("HTTP upstream %s:%s sent a %s request on a 2026-07-28 "
                               "call's stream; ignored", self.host, self.port, method)
                continue
            params = message.get("params")
            if method == "notifications/progress":
                await _progress(params, request_id, on_progress)
            else:  # logs and the rest: as if the SDK had read them, in this context
                await deliver_notification(self.session, method, params)
        raise MCPError(code=types.CONNECTION_CLOSED,
                       message="SSE stream ended without a response")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _parse(data: bytes) -> dict[str, Any]:
    """One message; an express lane's answer with its long strings lifted (lifting.py)."""
    try:
        message = lifted_loads(data) if lifting.get() else json.loads(data)
    except ValueError as exc:
        raise MCPError(code=types.PARSE_ERROR,
                       message=f"Failed to parse the upstream's JSON: {exc}") from None
    if not isinstance(message, dict):
        raise MCPError(code=types.PARSE_ERROR,
                       message="Failed to parse the upstream's JSON: not a JSON-RPC message")
    return message


def _outcome(message: dict[str, Any]) -> dict[str, Any]:
    error = message.get("error")
    if error is not None:
        raise MCPError.from_error_data(types.ErrorData.model_validate(error))
    result = message.get("result")
    return result if isinstance(result, dict) else {}


def _json_error(data: bytes) -> types.ErrorData | None:
    with contextlib.suppress(ValueError, TypeError):
        message = json.loads(data)
        if isinstance(message, dict) and isinstance(message.get("error"), dict):
            return types.ErrorData.model_validate(message["error"])
    return None


def _alive(deadline: Deadline, on_progress: Progress | None,
           heard: Callable[[], None] | None) -> Progress:
    """``on_progress`` (if any), after pushing ``deadline`` out."""
    async def relay(progress: float, total: float | None, message: str | None) -> None:
        deadline.progressed(heard)
        if on_progress is not None:
            await on_progress(progress, total, message)

    return relay


async def _progress(params: Any, request_id: int, on_progress: Progress | None) -> None:
    if on_progress is None or not isinstance(params, dict) \
            or params.get("progressToken") != request_id:
        return
    progress, total, text = params.get("progress"), params.get("total"), params.get("message")
    if not (is_number(progress) and (total is None or is_number(total))
            and (text is None or isinstance(text, str))):
        return  # malformed: dropped, as the SDK's session drops it
    try:
        await on_progress(float(cast(float, progress)),
                          None if total is None else float(total), text)
    except Exception:
        logger.exception("progress callback raised")


def tap_for(url: str, headers: dict[str, str], auth: Any, session: ClientSession,
            max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> HttpTap | None:
    """The ``HttpTap`` of a new session of the upstream at ``url``, or ``None`` where it
    does not apply (``tap_applies``; configured headers only the SDK may refuse)."""
    if not tap_applies(url, auth):
        return None
    with contextlib.suppress(_Declined):
        return HttpTap(url, headers, session, max_message_bytes)
    return None
