"""uvicorn's HTTP protocols with a deadline and a size bound for a request's head.

uvicorn has no header or body read timeout: a client that opens a connection and sends
nothing, or half a request line, holds it (and its memory) for ever.  Its keep-alive
timeout starts only after a response and any byte cancels it.  Both protocols here close
a connection whose request head has not fully arrived ``header_timeout`` seconds after
the connection opened or the previous response completed.

``protocol_with_timeout`` picks httptools (uvicorn's C parser: ~0.1 ms less per request
than h11 on the benchmark) when it is importable, h11 otherwise.  h11 bounds an
unfinished head itself (uvicorn's ``h11_max_incomplete_event_size``) and llhttp, under
httptools, has no bound; neither bounds a head that arrives whole in one read, so both
protocols answer 400 and close once a head passes ``max_head_bytes``, counted before
the parser sees it.  Always pass the class as ``http=``:
``http="auto"`` would bypass both guards.

A connection whose first bytes are a TLS handshake (a client given an ``https://`` URL
for this plain-HTTP port) is answered 400 and closed with one WARNING a minute saying
so and what to do (uvicorn said only "Invalid HTTP request received.").

The httptools class also tells a request's app when its host goes away (``HostGone``,
in the scope's ``extensions``), so that the HTTP express lane needs no task per call
waiting on ``receive()`` for ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT = 30.0
MAX_HEAD_BYTES = 16384
"""The largest request head accepted (request line and headers), as h11's default."""
TLS_SAID_EVERY = 60.0
"""Seconds between two warnings of TLS spoken to the plain-HTTP port."""
HOST_GONE = "fast_mcp_gateway.host_gone"
"""The key of a request's ``HostGone`` in its scope's ``extensions`` (httptools here)."""
HEAD_WITH_BODY = "fast_mcp_gateway.head_with_body"
"""The key of a request's ``HeadWithBody`` in its scope's ``extensions`` (httptools)."""


class HostGone:
    """One request's connection was lost before its answer completed: what an app
    reading ``receive()`` would learn as ``http.disconnect``, told to one callback
    without a task waiting on ``receive()``.  ``watch`` runs the callback at once if
    the host is already gone."""

    __slots__ = ("callback", "gone")

    def __init__(self) -> None:
        self.callback: Callable[[], object] | None = None
        self.gone = False

    def watch(self, callback: Callable[[], object] | None) -> None:
        """Call ``callback`` when the host goes away (``None``: stop watching)."""
        self.callback = callback
        if self.gone and callback is not None:
            callback()

    def fire(self) -> None:
        if not self.gone:
            self.gone = True
            if self.callback is not None:
                self.callback()


class _HeadDeadline:
    """The deadline and the size bound for a request head, as both protocols keep them
    (``loop``, ``transport``, ``send_400_response`` and ``_on_header_timeout`` are the
    protocol's)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_head_bytes: int = MAX_HEAD_BYTES
    _header_timer: asyncio.TimerHandle | None = None
    _awaiting_head = True  # between a response (or the connection) and the next head
    _in_body = False  # the parser is within a request's body (httptools: not a head)
    _head_bytes = 0  # bytes received towards that head
    _head_tail = b""  # its last bytes: a blank line may straddle two reads
    loop: asyncio.AbstractEventLoop
    transport: Any
    send_400_response: Callable[[str], None]  # annotations only: the protocol's own

    def _tls_handshake(self, data: bytes) -> bool:
        """Whether ``data``, at the start of a request head, is a TLS record (a
        handshake: ``0x16 0x03``; no HTTP method starts so): then answered 400, the
        connection closed, and the log told what happened (``_say_tls``)."""
        if not (self._awaiting_head and not self._in_body and self._head_bytes == 0
                and data[:1] == b"\x16" and data[1:2] == b"\x03"):
            return False
        _say_tls(self.transport)
        if not self.transport.is_closing():
            self.send_400_response("This port speaks plain HTTP, not TLS: use http://.")
        return True

    def _await_head(self) -> None:
        self._awaiting_head, self._head_bytes, self._head_tail = True, 0, b""
        self._arm()

    def _head_too_large(self, data: bytes) -> bool:
        """Whether ``data`` takes the awaited head past ``max_head_bytes`` (then the
        connection is answered 400 and closed): counted before the parser sees it, so
        that a whole head in one read is bounded too (each parser accepted any head that
        arrived complete, ~60 KB in one read).  A read past the bound is searched, within
        the bound, for the blank line that ends the head (a body may follow it)."""
        if not self._awaiting_head or self._in_body:
            return False
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._head_tail = data[-3:] if len(data) >= 3 else (self._head_tail + data)[-3:]
            return False
        window = self._head_tail + data[:max(room, 0)]
        if b"\r\n\r\n" in window or b"\n\n" in window:
            return False
        if not self.transport.is_closing():
            self.send_400_response("Request head too large.")
        return True

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._on_header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        raise NotImplementedError


_tls_said = {"at": -TLS_SAID_EVERY, "since": 0}  # when last said, how many not said since


def _say_tls(transport: Any) -> None:
    now, said = time.monotonic(), _tls_said
    if now - said["at"] < TLS_SAID_EVERY:
        said["since"] += 1
        return
    host, port = (transport.get_extra_info("sockname") or ("?", "?"))[:2]
    peer = (transport.get_extra_info("peername") or ("?",))[0]
    more = f" ({said['since']} more since the last such line)" if said["since"] else ""
    said["at"], said["since"] = now, 0
    where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    logger.warning(
        "a client at %s began a TLS handshake on this plain-HTTP port (an https:// URL): "
        "the gateway serves http:// only; give it http://%s/... instead, or put a reverse "
        "proxy that terminates TLS in front (and set MCP_GATEWAY_PUBLIC_URL to its "
        "https:// URL)%s", peer, where, more)


class HeaderTimeoutH11Protocol(_HeadDeadline, H11Protocol):
    """``H11Protocol`` that closes a connection idle or mid-head past ``header_timeout``."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._tls_handshake(data) or self._head_too_large(data):
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request head is parsed
            self._awaiting_head = False
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()  # the next request's head must arrive in time too

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class HeadWithBody:
    """The transport one response is written to: its head (uvicorn's first write) is
    held until the body's first write, so that a small answer leaves in one segment.

    uvicorn writes the status line and headers, then the body, each with its own
    ``send()`` system call; on loopback each is a wake-up of the host's reader as well.
    A body that does not follow at once (a stream waiting for its first event) does
    not hold the head back: it is written at the next turn of the loop, or, for an app
    that set ``within`` before its head (the session lane's SSE answer, whose first
    event is most often its answer), ``within`` seconds later at most.
    """

    __slots__ = ("_flush", "_held", "_loop", "transport", "within")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._held: bytes | None = None
        self._flush: asyncio.Handle | None = None
        self._loop = loop
        self.within = 0.0  # seconds the head may wait for the body's first write

    def write(self, data: bytes) -> None:
        if self._flush is None and self._held is None:  # the head: hold it
            self._held = data
            self._flush = self._loop.call_later(self.within, self.flush) if self.within \
                else self._loop.call_soon(self.flush)
            return
        if self._held is not None:
            data, self._held = self._held + data, None
            assert self._flush is not None
            self._flush.cancel()
        self.transport.write(data)

    def flush(self) -> None:
        if self._flush is not None:  # a close: the timer would keep this (and the
            self._flush.cancel()     # transport) alive for ``within`` seconds
        if self._held is not None:
            held, self._held = self._held, None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def hold_head(scope: MutableMapping[str, Any], seconds: float) -> None:
    """Let the head of ``scope``'s answer wait ``seconds`` at most for its body's first
    write (``HeadWithBody.within``; set before the head is sent).  Not under httptools
    (h11): nothing."""
    held = scope.get("extensions", {}).get(HEAD_WITH_BODY)
    if isinstance(held, HeadWithBody):
        held.within = seconds


def _httptools_protocol() -> type[Any] | None:
    """``HeaderTimeoutHttpToolsProtocol``, or ``None`` without httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class HeaderTimeoutHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        """``HttpToolsProtocol`` that closes a connection idle or mid-head past
        ``header_timeout``, and refuses (400, close) a head over ``max_head_bytes``."""

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)
            cycle = self.cycle
            if cycle is not None and cycle.disconnected:  # the answer did not complete
                extensions = cycle.scope.get("extensions", {})
                held = extensions.get(HEAD_WITH_BODY)
                if isinstance(held, HeadWithBody):
                    held.flush()  # nothing to write to: its timer cancelled
                gone: object = extensions.get(HOST_GONE)
                if isinstance(gone, HostGone):
                    gone.fire()

        def data_received(self, data: bytes) -> None:
            if not (self._tls_handshake(data) or self._head_too_large(data)):
                super().data_received(data)

        def on_headers_complete(self) -> None:
            self._awaiting_head, self._in_body = False, True
            self._disarm()
            cycle = self.cycle
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions[HOST_GONE] = HostGone()
            super().on_headers_complete()
            if self.cycle is not cycle:  # a request to answer (not an upgrade)
                held = extensions[HEAD_WITH_BODY] = HeadWithBody(self.transport, self.loop)
                self.cycle.transport = held  # type: ignore[assignment]

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # The next head is counted from here, though its deadline starts only
            # once the answer is complete: uvicorn reads on while an answer runs (it
            # pauses only at a pipelined head's end), and a pipelined head sent then
            # was unbounded (llhttp's and uvicorn's copies of it, for as long as the
            # answer took).  Its timer waits for the answer (a long call is no slow head).
            self._in_body = False
            if not self._awaiting_head:
                self._awaiting_head, self._head_bytes, self._head_tail = True, 0, b""

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # A pipelined request already parsed (and now started) needs no deadline.
            if not self.transport.is_closing() and (
                    self.cycle is None or self.cycle.response_complete):
                if self._awaiting_head and not self._in_body:
                    self._arm()  # counting since its request's end: not again from 0
                else:
                    self._await_head()

        def _on_header_timeout(self) -> None:
            self._header_timer = None
            if self._awaiting_head and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutHttpToolsProtocol


HeaderTimeoutHttpToolsProtocol = _httptools_protocol()
"""The httptools guard, or ``None`` when httptools is not installed."""


def protocol_with_timeout(seconds: float, *, parser: str = "auto") -> type[asyncio.Protocol]:
    """A guarded protocol class bound to ``seconds`` (uvicorn instantiates the class it
    is given): httptools when installed (``parser="auto"``), else (or ``"h11"``) h11."""
    if parser not in ("auto", "h11", "httptools"):
        raise ValueError(f"parser must be auto, h11 or httptools, not {parser!r}")
    base: type[Any] = HeaderTimeoutH11Protocol
    if parser != "h11" and HeaderTimeoutHttpToolsProtocol is not None:
        base = HeaderTimeoutHttpToolsProtocol
    elif parser == "httptools":
        raise ValueError("parser='httptools' needs httptools installed "
                         "(pip install httptools)")
    return type(base.__name__, (base,), {"header_timeout": seconds})
