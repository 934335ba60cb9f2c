"""The request-head guard on both of uvicorn's HTTP parsers (``http/slow_clients.py``):
a head that does not arrive within ``header_timeout`` closes the connection, an
oversized one is refused, and nothing else changes (bodies, keep-alive, pipelining).

Real uvicorn on 127.0.0.1, in-process, with a small ASGI app; every wait is on an
event (a close or an answer seen on the socket)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import uvicorn
from anyio.abc import SocketStream

from fast_mcp_gateway.http import slow_clients
from fast_mcp_gateway.http.slow_clients import (
    HOST_GONE,
    MAX_HEAD_BYTES,
    HeadWithBody,
    HostGone,
    protocol_with_timeout,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5
WITHIN = 60.0  # a generous bound for anything on a loaded machine
PARSERS = ["h11", pytest.param("httptools", marks=pytest.mark.skipif(
    slow_clients.HeaderTimeoutHttpToolsProtocol is None, reason="httptools not installed"))]


RELEASE: dict[str, anyio.Event] = {}  # /stream waits on RELEASE["stream"] after its head
GONE: dict[str, Any] = {}  # each request's HostGone, by path
HELD: dict[str, Any] = {}  # each request's HeadWithBody, by path


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the body's length once the whole body is in (/hold: once released)."""
    if scope["type"] == "http":
        GONE[scope["path"]] = scope.get("extensions", {}).get(HOST_GONE)
        HELD[scope["path"]] = scope.get("extensions", {}).get(slow_clients.HEAD_WITH_BODY)
    if scope["type"] == "http" and scope["path"] == "/hold":
        if (entered := RELEASE.get("hold-entered")) is not None:
            entered.set()
        await RELEASE["hold"].wait()
    if scope["type"] == "http" and scope["path"] == "/held":  # a head held, then no body
        slow_clients.hold_head(scope, 600.0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        RELEASE["held-entered"].set()
        await RELEASE["held"].wait()
        return
    if scope["type"] == "http" and scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await RELEASE["stream"].wait()
        await send({"type": "http.response.body", "body": b"late"})
        return
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = f"{scope['path']} {size}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def _server(parser: str) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    protocol = protocol_with_timeout(TIMEOUT, parser=parser)
    server = uvicorn.Server(uvicorn.Config(_app, log_level="warning", log_config=None,
                                           http=protocol, timeout_keep_alive=600,
                                           h11_max_incomplete_event_size=MAX_HEAD_BYTES))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield port
        finally:
            server.should_exit = True
    sock.close()


async def _read_until_closed(stream: SocketStream) -> bytes:
    received = b""
    with anyio.fail_after(WITHIN):
        while True:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                return received


async def _read_answers(stream: SocketStream, count: int) -> bytes:
    received = b""
    with anyio.fail_after(WITHIN):
        while received.count(b"HTTP/1.1 200") < count or not received.endswith(
                _last_body(received)):
            received += await stream.receive()
    return received


def _last_body(received: bytes) -> bytes:
    """The answer's body ends the buffer once it is all in (the app answers 'path n')."""
    head, _, body = received.rpartition(b"HTTP/1.1 ")[2].partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), -1)
    return body if len(body) == length else b"\x00never"


def _request(path: str, body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("sent", [b"", b"POST /sl", b"GET / HTTP/1.1\r\nHost: x\r\nX-Sl"],
                         ids=["nothing", "partial-request-line", "partial-headers"])
async def test_an_unfinished_head_is_closed_after_the_timeout(parser: str, sent: bytes) -> None:
    async with _server(parser) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        started = time.monotonic()
        if sent:
            await stream.send(sent)
        await _read_until_closed(stream)
        assert time.monotonic() - started >= TIMEOUT * 0.9  # the timer, not a refusal


@pytest.mark.parametrize("parser", PARSERS)
async def test_keep_alive_and_pipelining_still_work_then_idle_closes(parser: str) -> None:
    async with _server(parser) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(_request("/one", b"abc"))
        assert b"/one 3" in await _read_answers(stream, 1)
        await stream.send(_request("/two", b"hello") + _request("/three"))  # pipelined
        answers = await _read_answers(stream, 2)
        assert b"/two 5" in answers and b"/three 0" in answers
        # Idle after the answers: the next head is due within the timeout too (keep-alive
        # is 600 s here, so the close is the guard's).
        assert await _read_until_closed(stream) == b""


@pytest.mark.parametrize("parser", PARSERS)
async def test_a_slow_body_is_not_the_heads_business(parser: str) -> None:
    async with _server(parser) as port, await anyio.connect_tcp("127.0.0.1", port) as slow:
        await slow.send(_request("/slow", b"12345")[:-3])  # the head and 2 body bytes
        # A connection opened after it, sending nothing, is closed by its own deadline,
        # which comes after any deadline armed for the slow one's head.
        async with await anyio.connect_tcp("127.0.0.1", port) as idle:
            await _read_until_closed(idle)
        await slow.send(b"345")
        assert b"/slow 5" in await _read_answers(slow, 1)


@pytest.mark.parametrize("parser", PARSERS)
async def test_an_oversized_head_is_refused_and_a_large_body_is_not(parser: str) -> None:
    async with _server(parser) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100) for i in range(200))
            assert len(filler) > MAX_HEAD_BYTES
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + filler)  # never finished
            answer = await _read_until_closed(stream)
            assert answer.startswith(b"HTTP/1.1 400")
        # The same head, finished, in one write: refused too (both parsers answered 200:
        # a head that arrived whole in one read was not counted).
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n")
            answer = await _read_until_closed(stream)
            assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            head = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100) for i in range(60))
            body = b"z" * 300_000  # far over the head bound: only the head counts
            await stream.send(b"POST /big HTTP/1.1\r\nHost: x\r\n" + head
                              + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            assert b"/big 300000" in await _read_answers(stream, 1)


@pytest.mark.parametrize("parser", PARSERS)
async def test_a_pipelined_head_behind_a_running_answer_is_bounded(parser: str) -> None:
    """A request's answer still running (a long call), the next request's head, sent
    behind it on the same connection, is bounded too: httptools' protocol reads on
    while an answer runs, and counted no head then (100 MB of headers were taken in,
    held in memory for as long as the first answer took; no deadline either)."""
    RELEASE["hold"], RELEASE["hold-entered"] = anyio.Event(), anyio.Event()
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100) for i in range(200))
    try:
        async with _server(parser) as port, \
                await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(_request("/hold"))
            with anyio.fail_after(WITHIN):
                await RELEASE["hold-entered"].wait()
            await stream.send(b"GET /next HTTP/1.1\r\nHost: x\r\n" + filler)  # unfinished
            if parser == "h11":  # h11 reads nothing more until the answer is out
                RELEASE["hold"].set()
            try:
                answer = await _read_until_closed(stream)  # httptools: while /hold runs
            finally:
                RELEASE["hold"].set()  # before the server stops: it waits for /hold
            assert b"HTTP/1.1 400" in answer, answer[:300]  # and closed
    finally:
        RELEASE["hold"].set()
        RELEASE.pop("hold-entered", None)


def test_the_parser_is_chosen_as_asked() -> None:
    assert issubclass(protocol_with_timeout(1.0, parser="h11"),
                      slow_clients.HeaderTimeoutH11Protocol)
    chosen = protocol_with_timeout(2.0)
    assert chosen.header_timeout == 2.0  # type: ignore[attr-defined]
    expected = slow_clients.HeaderTimeoutHttpToolsProtocol or slow_clients.HeaderTimeoutH11Protocol
    assert issubclass(chosen, expected)
    with pytest.raises(ValueError, match="h11 or httptools"):
        protocol_with_timeout(1.0, parser="zttp")


@pytest.mark.parametrize("parser", PARSERS)
async def test_a_head_whose_body_waits_is_sent_at_once(parser: str) -> None:
    RELEASE["stream"] = anyio.Event()
    async with _server(parser) as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        with anyio.fail_after(WITHIN):
            while b"\r\n\r\n" not in received:  # the head, while the body is held back
                received += await stream.receive()
        assert received.startswith(b"HTTP/1.1 200") and b"late" not in received
        RELEASE["stream"].set()
        with anyio.fail_after(WITHIN):
            while b"0\r\n\r\n" not in received:  # chunked: the last chunk
                received += await stream.receive()
        assert b"late" in received


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


async def test_head_and_body_leave_in_one_write() -> None:
    loop = asyncio.get_running_loop()
    raw = _Recorder()
    held = HeadWithBody(raw, loop)  # type: ignore[arg-type]
    held.write(b"HEAD\r\n\r\n")
    assert raw.writes == []
    held.write(b"body")
    held.write(b"more")
    assert raw.writes == [b"HEAD\r\n\r\nbody", b"more"]
    await asyncio.sleep(0)  # the flush scheduled for the head finds nothing held
    assert raw.writes == [b"HEAD\r\n\r\nbody", b"more"]
    assert held.get_extra_info("peername") == "info peername"
    # A head followed by a close (no body): written before the close.
    raw2 = _Recorder()
    held2 = HeadWithBody(raw2, loop)  # type: ignore[arg-type]
    held2.write(b"HEAD")
    held2.close()
    assert raw2.writes == [b"HEAD"] and raw2.closed


async def test_a_head_held_within_seconds_waits_for_its_body_that_long_at_most() -> None:
    loop = asyncio.get_running_loop()
    raw = _Recorder()
    held = HeadWithBody(raw, loop)  # type: ignore[arg-type]
    held.within = 600.0  # the session lane's SSE answer (hold_head)
    held.write(b"HEAD\r\n\r\n")
    await asyncio.sleep(0)  # not written at the next turn of the loop: held
    assert raw.writes == []
    held.write(b"event")
    assert raw.writes == [b"HEAD\r\n\r\nevent"]
    # No body within the bound: the head leaves alone.
    written = asyncio.Event()
    raw2 = _Recorder()
    raw2.write = lambda data: (raw2.writes.append(data), written.set())  # type: ignore[method-assign]
    held2 = HeadWithBody(raw2, loop)  # type: ignore[arg-type]
    held2.within = 0.01
    held2.write(b"HEAD")
    await asyncio.wait_for(written.wait(), WITHIN)
    assert raw2.writes == [b"HEAD"]


async def test_a_held_head_closed_leaves_no_timer_behind() -> None:
    """A held head whose answer closes before any body (the host gone, the app ending
    without one) is written and its timer cancelled: the timer kept the transport and
    its protocol alive ``within`` seconds (the session lane's 1 s) after the close."""
    loop = asyncio.get_running_loop()
    raw = _Recorder()
    gone = weakref.ref(raw)
    held = HeadWithBody(raw, loop)  # type: ignore[arg-type]
    held.within = 600.0
    held.write(b"HEAD")
    held.close()
    assert raw.writes == [b"HEAD"] and raw.closed
    del held, raw
    gc.collect()
    assert gone() is None


@pytest.mark.skipif(slow_clients.HeaderTimeoutHttpToolsProtocol is None,
                    reason="httptools not installed")
async def test_a_host_going_away_before_its_answer_is_told_to_the_app() -> None:
    GONE.clear()
    RELEASE["hold"], RELEASE["hold-entered"] = anyio.Event(), anyio.Event()
    told: list[str] = []
    left = anyio.Event()
    async with _server("httptools") as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /done HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(WITHIN):  # answered: its host may leave without a word
            while b"/done 0" not in await stream.receive():
                pass
        done = GONE["/done"]
        assert isinstance(done, HostGone)
        done.watch(lambda: told.append("/done"))
        await stream.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(WITHIN):
            await RELEASE["hold-entered"].wait()  # the app has its HostGone once it runs
        del RELEASE["hold-entered"]
        hold = GONE["/hold"]
        assert isinstance(hold, HostGone) and not hold.gone
        hold.watch(lambda: (told.append("/hold"), left.set()))
        await stream.aclose()
        with anyio.fail_after(WITHIN):  # the connection closed with /hold unanswered
            await left.wait()
        RELEASE["hold"].set()
    assert told == ["/hold"] and hold.gone and not done.gone
    late: list[str] = []
    hold.watch(lambda: late.append("now"))  # watching a host already gone: told at once
    assert late == ["now"]


@pytest.mark.skipif(slow_clients.HeaderTimeoutHttpToolsProtocol is None,
                    reason="httptools not installed")
async def test_a_host_going_away_while_its_head_is_held_leaves_no_timer() -> None:
    """The session lane's head held (``hold_head``), its host gone before any event: the
    head's timer is cancelled with the connection, not left to fire ``within`` later
    (1 s in the lane) holding the transport and the request's objects till then."""
    GONE.clear()
    RELEASE["held"], RELEASE["held-entered"] = anyio.Event(), anyio.Event()
    left = anyio.Event()
    async with _server("httptools") as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(WITHIN):
            await RELEASE["held-entered"].wait()
        gone = GONE["/held"]
        assert isinstance(gone, HostGone)
        held = HELD["/held"]
        assert isinstance(held, HeadWithBody) and held.within == 600.0
        gone.watch(left.set)
        await stream.aclose()
        with anyio.fail_after(WITHIN):
            await left.wait()
        assert held._flush is not None and held._flush.cancelled()
        RELEASE["held"].set()


async def test_the_h11_protocol_offers_no_host_gone() -> None:
    GONE.clear()
    async with _server("h11") as port, await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET /done HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(WITHIN):
            while b"/done 0" not in await stream.receive():
                pass
    assert GONE["/done"] is None  # the lane then watches receive() itself


@pytest.mark.parametrize("parser", PARSERS)
async def test_tls_spoken_to_the_plain_port_is_refused_and_said_once_a_minute(
        parser: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client given an https:// URL for the gateway's plain-HTTP port: uvicorn logged
    only "Invalid HTTP request received." -- nothing about TLS or what to do."""
    import ssl

    monkeypatch.setattr(slow_clients, "_tls_said", {"at": -slow_clients.TLS_SAID_EVERY,
                                                    "since": 0})
    caplog.set_level(logging.WARNING)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)  # a ClientHello's start
    async with _server(parser) as port:
        context = ssl.create_default_context()
        with pytest.raises((ssl.SSLError, OSError, anyio.BrokenResourceError)):
            with anyio.fail_after(WITHIN):
                await anyio.connect_tcp("127.0.0.1", port, tls=True, ssl_context=context,
                                        tls_hostname="127.0.0.1")
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(hello)
            assert (await _read_until_closed(stream)).startswith(b"HTTP/1.1 400")
        # Plain HTTP on the same port is served as ever.
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(_request("/after"))
            assert b"/after 0" in await _read_answers(stream, 1)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    tls = [m for m in said if "TLS handshake" in m]
    assert len(tls) == 1, said  # the second within the minute is counted, not said
    assert f"give it http://127.0.0.1:{port}/... instead" in tls[0]
    assert "MCP_GATEWAY_PUBLIC_URL" in tls[0]
    assert not any("Invalid HTTP request" in m for m in said), said
    assert slow_clients._tls_said["since"] == 1
