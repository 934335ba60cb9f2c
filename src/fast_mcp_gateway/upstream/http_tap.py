"""The streamable-HTTP upstream transport, with a raw side door for the express lanes.

Relaying a ``tools/call`` through the SDK's streamable-HTTP client cost more gateway
CPU than anything else on the HTTP path (memory streams, a task per POST, httpx's
request model, hooks and pool, JSON-RPC models), and a handshake-era answer (an SSE
stream the SDK leaves unread past the answer) a new connection per call.

``HttpTap`` is the ``RawTap`` of an HTTP upstream (``stdio_tap.py`` is the stdio
one): while the SDK session (``http_transports.FastHttpTransport``) stays the one
owner of the connection's era, catalog, probes and every other request, a raw request
(``tools/call``, ``request_raw``'s) is POSTed by the tap itself on a persistent
HTTP/1.1 keep-alive connection of its own (``http_pool.py``), with the envelope,
headers (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``, ``Mcp-Param-*``, the
configured ones) and timeout the session would use, and its answer read as JSON:

* progress for the call's token goes to the caller's callback; any other
  notification on the call's stream (logs) is handed to the session, in the
  caller's context, as if the SDK had read it (``CURRENT_CALL`` finds the call);
* error statuses and bodies map to the errors the SDK's transport makes of them;
  a connection that fails before the answer's head is an ``httpx2.TransportError``,
  ``ConnectionDropped`` once the request was written on a reused connection (or an
  answer begun): it fails that request only (``session_intact``), or one safe to repeat
  is written again on a new one (``http_idle.REPEATABLE``).  A reused connection that
  failed so teaches the replica's ``IdleBound`` (``http_idle.py``), as a ``Keep-Alive``
  header does.

An SSE answer (a call that reports progress or logs) is read to the stream's end (the
server ends it after the answer) off the call's path, the answer already returned, so
that its connection is kept; one still open ``DRAIN_WITHIN`` on is closed instead, and
after ``LINGER_LIMIT`` in a row the tap stops waiting for that server's (``lingers``).
A call cancelled or timed out before its answer never has its connection kept.

On a 2026-07-28 session the request is self-contained; a timeout or the caller's
cancellation closes the connection (that era's cancellation signal).  On a
handshake-era session (one with an ``Mcp-Session-Id``, learned from the session's
answers by ``http_session_end.SessionEnd``) the POST also carries the session's id,
under a request id of the tap's own (``gw-N``: the SDK session's are integers, and the
server keys requests in flight by id per session), and:

* a server request on the call's stream (sampling, elicitation, ``roots/list``,
  ``ping``) and a ``notifications/cancelled`` are handed to the session's dispatcher
  (``_compat.deliver_message``), in the caller's context: the session answers the
  request with its own callbacks and the SDK's transport POSTs the answer back, as
  for any server request;
* a timeout or the caller's cancellation POSTs ``notifications/cancelled`` for the
  request id (as the SDK client does, with its reason), then closes the connection;
* a 404 is the server's JSON-RPC error, or ``Session terminated`` as the SDK says it,
  and ``SessionEnd`` is told (``forgotten``: the replica opens a new session and sends
  the call again there); a stream that ends before the answer is resumed with
  ``GET`` and ``Last-Event-ID`` when it gave event ids, as the SDK does (a server that
  polls, SEP-1699: ``http_aside.resumed``), else it is ``CONNECTION_CLOSED`` ("SSE
  stream ended without a response", the session stays, ``session_intact``).

An ``https`` URL is served over TLS with the SSL context of the session's own client
(``_compat.tls_context``: the same trust; SNI, host name check, ALPN ``http/1.1``).
The answer is read by ``http_answer.py``.  A server with ``auth:`` has its bearer on
the tap's requests too (``http_tap_bearer.py``: the SDK path's token, renewed and the
request sent again once after a 401).
It steps aside -- the session sends the request -- on a handshake-era session without
an id (or one learned at another URL: a redirect), for URLs with credentials, a proxy
from the environment, an ``auth`` other than the gateway's ``BearerAuth``, an ``https``
client with no context to lend (HTTP/2), a header httpx would refuse (CR, LF, NUL), and
a redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, encode_header_value
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway._compat import send_raw_request, stamp_request
from fast_mcp_gateway.upstream import framing
from fast_mcp_gateway.upstream.deadline import Deadline, extends, progress_bounded
from fast_mcp_gateway.upstream.framing import ASCII_JSON, DEFAULT_MAX_MESSAGE_BYTES, UTF8_JSON
from fast_mcp_gateway.upstream.http_answer import answer, events
from fast_mcp_gateway.upstream.http_aside import cancel
from fast_mcp_gateway.upstream.http_idle import IdleBound, repeatable
from fast_mcp_gateway.upstream.http_pool import (
    Connection,
    Declined,
    Pool,
    alive,
    cancel_reason,
    drained,
    failure,
    header_lines,
    outcome,
    tap_applies,
)
from fast_mcp_gateway.upstream.http_tap_bearer import TapBearer
from fast_mcp_gateway.upstream.http_wire import Response, StreamMarks, read_head

if TYPE_CHECKING:
    import ssl

    from fast_mcp_gateway.upstream.bearer import BearerAuth
    from fast_mcp_gateway.upstream.http_session_end import SessionEnd

logger = logging.getLogger(__name__)

Progress = ProgressFnT

MAX_HEADER_SETS = 256  # distinct stamped header sets remembered (tool names, mostly)
_USER_AGENT = b"fast-mcp-gateway"
_ID_PREFIX = "gw-"  # a handshake-era session's tap ids: the SDK session's are integers
DRAIN_WITHIN = 0.5  # an answered stream still open then is closed, not pooled; after
LINGER_LIMIT = 3  # so many in a row, the server's are not waited for (``lingers``)


class ConnectionDropped(httpx2.ReadError):
    """A written request's own connection failed before its answer: the session is
    intact (``Requests`` fails the request only, and does not restart the session).
    Not for a connection just opened that closed before the answer's head: no idle
    close, the server (or what stands before it) has gone, and the session restarts."""

    session_intact = True


class HttpTap:
    """Raw requests of one HTTP upstream session (see the module doc).

    ``request`` has ``RawTap.request``'s contract: the ``result`` as JSON, or
    ``MCPError`` as the session would raise it.  ``end``: the session's ``SessionEnd``
    (a handshake-era session's id; ``None``: 2026-07-28 sessions only); ``tls``: an
    ``https`` URL's SSL context; ``auth``: the transport's ``BearerAuth``, if any."""

    fatal: str | None = None  # never set: an HTTP connection has no framing to break
    stamped = True  # takes requests already stamped (send_stamped): Requests looks for it

    def __init__(self, url: str, headers: dict[str, str], session: ClientSession,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 end: SessionEnd | None = None, idle: IdleBound | None = None,
                 tls: ssl.SSLContext | None = None, auth: BearerAuth | None = None) -> None:
        parts = urlsplit(url)
        if (parts.scheme == "https") != (tls is not None):
            raise Declined  # (an https URL without the session's SSL context)
        self.scheme, self.host = parts.scheme, parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if tls else 80)
        self._where = f"{self.host}:{self.port}"
        self.session = session
        self.end = end
        self.max_message_bytes = max_message_bytes
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        fixed = {"host": parts.netloc.rpartition("@")[2], "user-agent": _USER_AGENT.decode(),
                 "accept": "application/json, text/event-stream",
                 "content-type": "application/json",
                 **{k.lower(): v for k, v in headers.items()}}
        self.post_head = f"POST {self._target} HTTP/1.1\r\n".encode() + header_lines(fixed)
        self.get_head = f"GET {self._target} HTTP/1.1\r\n".encode() + header_lines(
            {**fixed, "accept": "text/event-stream"})  # (the resumption's, http_aside)
        self._fixed = frozenset(fixed)
        self._extra: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self.pool = Pool(idle or IdleBound(self._where), tls,
                         f"{parts.scheme}://{fixed['host']}{parts.path}")
        self._idle, self._busy = self.pool.free, self.pool.busy  # (tests look)
        self._closed = False
        self._sid: tuple[str | None, bool] = (None, False)  # an id seen, and if it is here
        self.served = 0  # requests the tap answered itself (tests and diagnostics)
        self.lingers = False  # the server keeps answered streams open: not waited for
        self._lingered = 0  # answered streams in a row still open DRAIN_WITHIN on
        self._draining: set[asyncio.Task[None]] = set()  # answered streams being read
        self.heard: Callable[[], None] | None = None  # told of progress (supervisor's)
        self.bearer = None if auth is None else TapBearer(self, auth)

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
        modern = session.protocol_version in MODERN_PROTOCOL_VERSIONS
        session_id = None if modern else self._session_id()
        if modern or session_id is not None:
            headers = opts.get("headers") or {}
            if session_id is not None:  # what the SDK's path adds (below, its transport)
                headers = {**headers, "mcp-session-id": session_id}
                if isinstance(name := params.get("name"), str):
                    headers.setdefault(MCP_NAME_HEADER, encode_header_value(name))
            args = (method, params, headers, timeout, on_progress, max_total, session_id)
            bearer = self.bearer
            try:
                result = await (self._post(*args) if bearer is None
                                else bearer.sent(self, self._post, args))
            except Declined:
                pass
            except MCPError as exc:  # its own answer: a refusal is known, not guessed
                exc.tapped = True  # type: ignore[attr-defined]
                exc.session_intact = not self._closed  # type: ignore[attr-defined]
                raise
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
        self.pool.close()
        for task in list(self._draining):
            task.cancel()

    @property
    def closed(self) -> bool:  # (the session ended: ``aclose``)
        return self._closed

    @property
    def opened(self) -> int:  # connections it opened (tests and diagnostics)
        return self.pool.opened

    def _session_id(self) -> str | None:
        """A handshake-era session's id, where the tap may send it: learned from the
        session's answers at the URL the tap posts to (not at a redirect's)."""
        end = self.end
        given = None if end is None else end.session_id
        if given is None:
            return None
        seen, here = self._sid
        if given != seen:
            url = cast("SessionEnd", end).url
            here = (url is not None and url.scheme == self.scheme and url.host == self.host
                    and (url.port or (443 if self.pool.tls else 80)) == self.port
                    and url.raw_path == self._target.encode())
            self._sid = (given, here)
        return given if here else None

    # -- one POST -------------------------------------------------------------------

    async def _post(self, method: str, params: dict[str, Any], headers: dict[str, str],
                    timeout: float, on_progress: Progress | None,  # noqa: ASYNC109
                    max_total: float | None, session_id: str | None) -> dict[str, Any]:
        number = next(self._ids)
        request_id: int | str = number if session_id is None else f"{_ID_PREFIX}{number}"
        extended = extends(timeout, max_total)  # progress keeps it alive: always asked for
        if on_progress is not None or extended:
            params = {**params, "_meta": {**(params.get("_meta") or {}),
                                          "progressToken": request_id}}
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            body = UTF8_JSON.encode(message).encode()
        except ValueError:  # a lone surrogate, NaN (SDK: null): escaped, still valid JSON
            body = ASCII_JSON.encode(framing.finite(message)).encode()
        wire = b"%b%bcontent-length: %d\r\n\r\n%b" % (
            self.post_head, self._extra_lines(headers), len(body), body)
        conn: Connection | None = None
        response: Response | None = None
        done = answered = False
        deadline = Deadline(self._loop, timeout, max_total)
        if extended or (on_progress is not None and self.heard is not None):
            # (not alive: progress the host asked for still tells the replica works)
            on_progress = alive(deadline, on_progress, self.heard)
        try:
            conn = await self.pool.take(self.host, self.port)
            conn.writer.write(wire)  # from here on, the server may have the request
            try:
                response = await read_head(conn.reader)
            except (OSError, asyncio.IncompleteReadError) as exc:  # once more, if stale
                conn = await self.pool.again(conn, exc, wire, repeatable(method),
                                             self._where)
                response = await read_head(conn.reader)
            if "keep-alive" in response.headers:  # the server's idle bound (Node's)
                self.pool.idle.advertised(response.headers["keep-alive"], self._where)
            got, reusable = await answer(self, conn, response, request_id, on_progress,
                                         session_id)
            answered = True
            if reusable is None:  # a stream, answered: read to its end, if it ends
                if self.lingers:
                    reusable = False
                else:  # ... off the call's path: the connection goes with it
                    self._drain(conn, response)
                    conn = None
            done = bool(reusable)
            return outcome(got)  # (an error answer's connection is kept as well)
        except asyncio.CancelledError:
            reached = deadline.reached()
            if session_id is not None and conn is not None and not answered:
                # The handshake era's signal (the SDK's own words), then the close.
                why = cancel_reason(deadline.error() if reached else None, timeout,
                                     max_total)
                with anyio.CancelScope(shield=True):
                    if not self._closed:  # (else nothing runs there any more)
                        await cancel(self, request_id, session_id, why)
            if reached:
                raise deadline.error() from None
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            if self._closed:
                raise MCPError(code=types.CONNECTION_CLOSED, message="Connection closed") from exc
            said, asked = f"HTTP upstream {self._where} {failure(exc)}", self.pool.request()
            if conn is not None and response is None:
                if conn.idled is None:  # just opened: no idle close, the server's fault
                    raise httpx2.ReadError(said, request=asked) from exc
                self.pool.lost(conn, exc, self._where)  # closed for being idle: learned
            raise ConnectionDropped(said, request=asked) from exc
        finally:
            deadline.stop()
            if conn is not None:  # cancelled, timed out, failed or not keep-alive: closing
                self.pool.release(conn, done)  # also the 2026-07-28 cancellation signal

    def _extra_lines(self, headers: dict[str, str]) -> bytes:
        """The stamp's own header lines (version, method, name...), made once per set;
        a set with ``Mcp-Param-*`` values (a call's arguments) is never kept."""
        key = tuple(headers.items())
        lines = self._extra.get(key)
        if lines is None:
            lines = header_lines({k: v for k, v in headers.items()
                                  if k.lower() not in self._fixed})
            if any(k[:10].lower() == "mcp-param-" for k in headers):
                return lines
            if len(self._extra) >= MAX_HEADER_SETS:
                self._extra.clear()
            self._extra[key] = lines
        return lines

    async def events(self, body: AsyncIterator[bytes], request_id: int | str,
                     on_progress: Progress | None, handshake: bool,
                     marks: StreamMarks | None = None) -> dict[str, Any] | None:
        """Read an SSE answer (``http_answer.events``)."""
        return await events(self, body, request_id, on_progress, handshake, marks)

    def _drain(self, conn: Connection, response: Response) -> None:
        """Read an answered stream to its end off the call's path (its answer is on its
        way to the host meanwhile), then pool ``conn`` or close it (``lingers``)."""
        async def drain() -> None:
            reusable: bool | None = False
            try:
                reusable = await drained(conn, response, self.max_message_bytes,
                                         DRAIN_WITHIN)
            finally:
                self._lingered = self._lingered + 1 if reusable is None else 0
                if self._lingered >= LINGER_LIMIT and not self.lingers:
                    self.lingers = True  # this server's way, not one slow end
                    logger.info("HTTP upstream %s:%s keeps streams open after their "
                                "answers: its connections are closed after each answer, "
                                "not reused", self.host, self.port)
                self.pool.release(conn, bool(reusable))

        task = self._loop.create_task(drain())
        self._draining.add(task)  # (cancelled before it ran, ``aclose`` closed ``conn``)
        task.add_done_callback(self._draining.discard)


def tap_for(url: str, headers: dict[str, str], auth: Any, session: ClientSession,
            max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
            end: SessionEnd | None = None, idle: IdleBound | None = None,
            tls: ssl.SSLContext | None = None) -> HttpTap | None:
    """The ``HttpTap`` of a new session of the upstream at ``url``, or ``None`` where it
    does not apply (``tap_applies``; configured headers only the SDK may refuse; an
    ``https`` URL without ``tls``, the session's client's SSL context); ``auth``: the
    transport's (the gateway's ``BearerAuth`` is carried, any other steps aside)."""
    if not tap_applies(url, auth):
        return None
    with contextlib.suppress(Declined):
        return HttpTap(url, headers, session, max_message_bytes, end, idle, tls, auth)
    return None
