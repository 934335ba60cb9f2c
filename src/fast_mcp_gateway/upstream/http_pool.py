"""The HTTP side door's connections, and the parts of its exchanges both eras share.

For ``http_tap.py``: where the tap applies at all (``http`` or ``https``, no proxy,
no credentials, no ``auth`` but the gateway's bearer), the header lines it writes
(never one httpx would refuse), its keep-alive connections to the upstream (``Pool``:
reused while idle less than the replica's ``http_idle.IdleBound``; over TLS with the
session's client's SSL context), the reading of an answer's messages (lifted for an
express lane, ``lifting.py``), progress for a call's token, and the words of a
handshake-era cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.upstream.deadline import (
    Deadline,
    DeadlineReached,
    extends,
    host_reason,
)
from fast_mcp_gateway.upstream.framing import is_number
from fast_mcp_gateway.upstream.http_idle import IDLE_SECONDS as IDLE_SECONDS  # (read here too)
from fast_mcp_gateway.upstream.http_idle import IdleBound
from fast_mcp_gateway.upstream.http_wire import Response, body_chunks
from fast_mcp_gateway.upstream.lifting import lifted_loads, lifting

if TYPE_CHECKING:
    import ssl

logger = logging.getLogger(__name__)

Progress = ProgressFnT

MAX_IDLE = 32
CONNECT_WITHIN = 30.0  # a connection (its TLS handshake too) made within: the SDK client's
HEAD_LIMIT = 100 * 1024  # a response head read at most: httpx's (httpcore's h11 limit)


class Declined(Exception):
    """Not for the tap (a redirect: the POST was not served; a header it cannot write
    as is): the session sends the request."""


def proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy, as the SDK's client
    (httpx) reads it: ``ALL_PROXY``, or ``HTTP_PROXY`` for an ``http`` URL,
    ``HTTPS_PROXY`` for an ``https`` one, less ``NO_PROXY`` by httpx's matching
    (``_compat.env_proxied``; urllib's differs: ``NO_PROXY=.example.com`` sent the tap
    straight to ``example.com``, which httpx sends through the proxy)."""
    from fast_mcp_gateway._compat import env_proxied  # (httpx's, loaded when asked)

    return env_proxied(url)


def tap_applies(url: str, auth: Any) -> bool:
    """Whether an upstream at ``url`` can get an ``HttpTap`` (see its module doc); a
    URL with credentials in it (httpx sends them as Basic auth) keeps the SDK's client,
    and so does an ``auth`` the tap cannot carry (the gateway's ``BearerAuth`` it can:
    ``http_tap_bearer.py``)."""
    parts = urlsplit(url)
    return (parts.scheme in ("http", "https") and parts.username is None and parts.password is None
            and (auth is None or getattr(auth, "tap_carries", False)) and not proxied(url))


def header_lines(headers: dict[str, str]) -> bytes:
    """``headers`` as HTTP/1.1 lines; ``Declined`` for a name or value httpx would
    refuse to send (CR, LF, NUL, not latin-1): no header is ever smuggled in."""
    lines = []
    for key, value in headers.items():
        line = f"{key}: {value}"
        if any(c in line for c in "\r\n\0") or ":" in key or not key.strip():
            raise Declined
        try:
            lines.append(line.encode("latin-1") + b"\r\n")
        except UnicodeEncodeError:
            raise Declined from None
    return b"".join(lines)


class Connection:
    """One keep-alive HTTP/1.1 connection to the upstream."""

    __slots__ = ("idle_since", "idled", "reader", "taken", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0
        self.idled: float | None = None  # how long it was idle when reused (new: None)
        self.taken = 0.0  # when it was reused (its request written at once)

    def usable(self, now: float, bound: float = IDLE_SECONDS) -> bool:
        return (now - self.idle_since < bound and not self.reader.at_eof()
                and not self.writer.is_closing() and not _readable(self.writer))

    def close(self) -> None:
        """Closed at once.  A TLS connection is aborted, not closed: asyncio's close
        sends close_notify and keeps the socket until the server's own close_notify,
        up to 30 s (``ssl_shutdown_timeout``) -- a socket held per timed-out or
        cancelled call against a server that does not answer (a hung one: every call
        times out), and left unclosed when the gateway stops.  httpx's pool (the SDK's
        path) closes its TLS connections so as well, without close_notify."""
        with contextlib.suppress(Exception):
            transport = self.writer.transport
            if transport.get_extra_info("sslcontext") is not None:
                transport.abort()  # (the server sees the FIN: a cancellation still is one)
            else:
                self.writer.close()


def _readable(writer: asyncio.StreamWriter) -> bool:
    """Whether an idle connection's socket has something to read: the server's FIN
    (a server keeping idle connections less than ``IDLE_SECONDS``: uvicorn's
    ``timeout_keep_alive`` set to 1) arrived while the event loop had not read it yet
    (``at_eof`` says nothing until it has: a loaded machine), or bytes no request asked
    for.  Either way the connection is not reused; one ``poll`` (~1.3 us), as httpcore
    asks before it reuses one (``select`` refuses a descriptor from 1024 on: a gateway
    with many connections would have reused none)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        if _POLL is None:  # (Windows)
            return bool(select.select((sock.fileno(),), (), (), 0)[0])
        poll = _POLL()
        poll.register(sock.fileno(), select.POLLIN)
        return bool(poll.poll(0))
    except (OSError, ValueError):  # closed meanwhile
        return True


_POLL = getattr(select, "poll", None)


class Pool:
    """The tap's keep-alive connections to one upstream: the idle ones (a LIFO, reused
    while still open and idle less than ``idle.seconds``) and those in use; over TLS
    (``tls``: the SSL context, its ALPN ``http/1.1``) when given.  ``url`` (no
    credentials, no query) is named when a connection cannot be made."""

    def __init__(self, idle: IdleBound, tls: ssl.SSLContext | None = None,
                 url: str = "") -> None:
        self.idle = idle
        self.tls, self.url = tls, url
        if tls is not None:
            tls.set_alpn_protocols(["http/1.1"])  # (httpx sets the same on it: HTTP/1.1)
        self.free: list[Connection] = []
        self.busy: set[Connection] = set()
        self.opened = 0  # connections opened (tests and diagnostics)
        self.resent = 0  # requests written again on a new connection (``stale``)
        self.closed = False

    async def take(self, host: str, port: int, fresh: bool = False) -> Connection:
        """A pooled connection that is still open (not ``fresh``), else a new one.  A
        connection that fails after the write fails the call (the server may have
        started it), unless it is ``stale`` and the request repeatable; ``lost`` learns
        from it."""
        now = time.monotonic()
        bound = self.idle.seconds
        while self.free and not fresh:
            conn = self.free.pop()
            if conn.usable(now, bound):
                conn.idled, conn.taken = now - conn.idle_since, now
                self.busy.add(conn)
                return conn
            conn.close()  # closed by the server meanwhile, or idle too long
        try:  # (the TLS handshake, if any, is part of the open: paid once per connection)
            async with asyncio.timeout(CONNECT_WITHIN):
                reader, writer = await asyncio.open_connection(
                    host, port, limit=HEAD_LIMIT, ssl=self.tls,
                    server_hostname=host if self.tls is not None else None)
        except TimeoutError as exc:  # (as the SDK's client says it: the session restarts)
            import httpx2

            raise httpx2.ConnectTimeout(f"{host}:{port}: no connection (and TLS handshake) "
                                        f"within {CONNECT_WITHIN:g} s",
                                        request=self.request()) from exc
        except OSError as exc:  # (ssl.SSLError too: a certificate that does not verify)
            import httpx2

            # described as "cannot connect to <url>: ..." (upstream/model.describe_error:
            # the same words as on the SDK's path, the certificate's advice included)
            raise httpx2.ConnectError(f"{host}:{port}: {describe(exc)}",
                                      request=self.request()) from exc
        self.opened += 1
        conn = Connection(reader, writer)
        self.busy.add(conn)
        return conn

    def request(self) -> Any:
        """An ``httpx2.Request`` for ``url`` (``None``: none given), for the errors that
        name the server (``model.describe_error`` reads its URL)."""
        import httpx2

        return httpx2.Request("POST", self.url) if self.url else None

    def release(self, conn: Connection, reusable: bool) -> None:
        self.busy.discard(conn)
        if reusable and not self.closed and len(self.free) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            conn.idled = None
            self.free.append(conn)
        else:
            conn.close()

    def stale(self, conn: Connection, exc: BaseException) -> bool:
        """Whether a request written on ``conn`` that failed with ``exc`` before its
        answer's head met a reused connection's close before any byte of the answer
        (EOF or a reset): the server closed it idle, most likely without reading the
        request (``http_idle.REPEATABLE``)."""
        return conn.idled is not None and not self.closed and (
            isinstance(exc, ConnectionError) or (
                isinstance(exc, asyncio.IncompleteReadError) and not exc.partial))

    async def again(self, conn: Connection, exc: BaseException, wire: bytes,
                    repeatable: bool, where: str) -> Connection:
        """The request ``wire``, whose head's read on ``conn`` failed with ``exc``,
        written once more on a new connection (returned) if it is ``repeatable`` and
        ``conn`` was ``stale`` (the bound learned first); else ``exc`` is raised."""
        if not (repeatable and self.stale(conn, exc)):
            raise exc
        self.lost(conn, exc, where)
        self.release(conn, False)
        host, _, port = where.rpartition(":")
        conn = await self.take(host, int(port), fresh=True)
        self.resent += 1
        conn.writer.write(wire)
        return conn

    def lost(self, conn: Connection, exc: BaseException, where: str) -> None:
        """A request written on ``conn`` failed with ``exc`` before its answer's head:
        one that was ``stale`` was closed by the server for being idle
        (``IdleBound.closed_after``) -- if the close came at once (within the bound):
        the server's idle close crossed the request on the wire.  One closed later (a
        server that crashed or restarted under a long call) says nothing of how long
        the server keeps an idle connection."""
        if self.stale(conn, exc) and time.monotonic() - conn.taken < self.idle.seconds:
            assert conn.idled is not None
            self.idle.closed_after(conn.idled, where)

    def close(self) -> None:
        """Idle connections are closed, and so are those in use (their calls fail)."""
        self.closed = True
        for conn in (*self.free, *self.busy):
            conn.close()
        self.free.clear()


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def failure(exc: BaseException) -> str:
    """What a request's connection did instead of answering, in words."""
    if isinstance(exc, asyncio.LimitOverrunError):  # (the head's lines, by the limit)
        return (f"sent a response head larger than {HEAD_LIMIT // 1024} KiB (the most the "
                "gateway reads, as on the SDK's path): the server needs fixing")
    if isinstance(exc, asyncio.IncompleteReadError):
        if exc.partial[:5] not in (b"", b"HTTP/"[:len(exc.partial)]):
            return ("answered in something other than HTTP/1.1 (an HTTP/2-only server? "
                    "the gateway speaks HTTP/1.1 to servers: enable HTTP/1.1 there)")
        return "closed the connection before answering"
    return describe(exc)


def outcome(message: dict[str, Any]) -> dict[str, Any]:
    """A response's ``result``, or its error as ``MCPError``."""
    error = message.get("error")
    if error is not None:
        raise MCPError.from_error_data(types.ErrorData.model_validate(error))
    result = message.get("result")
    return result if isinstance(result, dict) else {}


def json_error(data: bytes) -> types.ErrorData | None:
    """The JSON-RPC error in an error status's JSON body, if it is one."""
    with contextlib.suppress(ValueError, TypeError):
        message = json.loads(data)
        if isinstance(message, dict) and isinstance(message.get("error"), dict):
            return types.ErrorData.model_validate(message["error"])
    return None


def parse(data: bytes) -> dict[str, Any]:
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


def cancel_reason(reached: DeadlineReached | None, timeout: float,
                   max_total: float | None) -> str:
    """The reason the SDK's session gives with the cancellation of such a request
    (``Requests``' path: ``progress_bounded`` around ``send_raw_request``): its own
    timeout's words, or a caller's cancellation (progress_bounded's scope included): the
    host's own reason when it gave one (``deadline.host_reason``)."""
    if reached is None:
        return host_reason("caller cancelled")
    if not extends(timeout, max_total):
        return f"timed out after {timeout}s"
    if reached.limit == "max_total":
        return f"timed out after {max_total}s"
    return host_reason("caller cancelled")


def alive(deadline: Deadline, on_progress: Progress | None,
           heard: Callable[[], None] | None) -> Progress:
    """``on_progress`` (if any), after pushing ``deadline`` out."""
    async def relay(progress: float, total: float | None, message: str | None) -> None:
        deadline.progressed(heard)
        if on_progress is not None:
            await on_progress(progress, total, message)

    return relay


async def progress(params: Any, request_id: int | str, on_progress: Progress | None) -> None:
    if on_progress is None or not isinstance(params, dict) \
            or params.get("progressToken") != request_id:
        return
    progress, total, text = params.get("progress"), params.get("total"), params.get("message")
    if not (is_number(progress) and (total is None or is_number(total))
            and (text is None or isinstance(text, str))):
        return  # malformed: dropped, as the SDK's session drops it
    try:
        # (numbers as the upstream wrote them: its 1 stays 1, not 1.0)
        await on_progress(cast(float, progress), total, text)
    except Exception:
        logger.exception("progress callback raised")


async def drained(conn: Connection, response: Response, limit: int, within: float
                  ) -> bool | None:
    """Read an answered stream's rest to its end (the server ends it after the answer;
    what follows the answer the SDK never reads either: dropped); whether ``conn`` may be
    reused, ``None`` if the stream was still open ``within`` seconds on."""
    try:
        async with asyncio.timeout(within), contextlib.aclosing(
                body_chunks(conn.reader, response, limit)) as rest:
            async for _ in rest:
                pass
    except TimeoutError:
        return None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return False
    return response.keep_alive


def kept_alive(seconds: float = IDLE_SECONDS) -> Any:
    """The SDK's HTTP client's pool limits: an idle connection is dropped after
    ``seconds`` (the replica's ``IdleBound`` when its client is made), as the tap
    drops its own.  httpx keeps one 5 s, as long
    as uvicorn, hypercorn and Node keep theirs open: a request written as the server
    closes its end failed "closed the connection without an answer", and the session
    was restarted (one safe to repeat is now sent again: ``http_resend.py``)."""
    import httpx2

    return httpx2.Limits(keepalive_expiry=seconds)
