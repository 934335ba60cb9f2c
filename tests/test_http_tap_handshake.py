"""The HTTP side door on a handshake-era upstream session (upstream/http_tap.py).

A FastMCP upstream served over streamable HTTP on 127.0.0.1, reached by gateways with
``protocol: legacy`` (an ``initialize`` session with an ``Mcp-Session-Id``): one through
the default transport (the tap POSTs raw calls itself, under ``gw-N`` ids), one through
fastmcp's plain ``StreamableHttpTransport`` (the SDK's client: the reference).  The same
raw POSTs go to both HTTP fronts (the 2026-07-28 lane) and must give the same answers;
a counting TCP relay in front of the upstream tells how many connections the calls
opened.  Cancellation, timeouts and an upstream that restarts (and forgets the
session) are checked against the upstream's own view and against the SDK's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import mcp_types as types
import pytest
from fastmcp import Context

from fast_mcp_gateway.upstream.http_tap import LINGER_LIMIT
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.tcp_relay import TcpRelay
from tests.test_http_lane import canonical
from tests.test_http_tap import (
    BIG,
    Upstream,
    front,
    gateway,
    goes_on_through_the_tap,
    host_leaves_mid_call,
    upstream_server,
)

pytestmark = pytest.mark.anyio


class Relay(TcpRelay):
    """A TCP byte relay to ``port`` on 127.0.0.1 that counts the connections it took
    (``accepted``)."""


def handshake_upstream(up: Upstream) -> Any:
    mcp = upstream_server(up)

    @mcp.tool
    def whoami(ctx: Context) -> str:
        """The request id this call arrived under (the tap's are ``gw-N``)."""
        return str(ctx.request_id)

    @mcp.tool
    async def ask_model(question: str, ctx: Context) -> str:
        """A pushed sampling request (the handshake era's server request)."""
        answer = await ctx.session.create_message(messages=[types.SamplingMessage(
            role="user", content=types.TextContent(type="text", text=question))],
            max_tokens=50)
        return f"model said: {answer.content.text}"  # type: ignore[union-attr]

    return mcp


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1 (``port`` 0: a free one) that can be
    stopped before its context ends, so that another can start at the same URL."""

    def __init__(self, app: Any, port: int = 0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                    log_config=None))
        self.done = anyio.Event()

    async def _serve(self) -> None:
        try:
            await self.server.serve([self.sock])
        finally:
            self.sock.close()
            self.done.set()

    async def stop(self) -> None:
        """As a server that goes away: not waiting for its open streams to end."""
        self.server.should_exit = self.server.force_exit = True
        with anyio.fail_after(30):
            await self.done.wait()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Served]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve)
            try:
                yield self
            finally:
                self.server.should_exit = True


@contextlib.asynccontextmanager
async def legacy_upstream(port: int = 0) -> AsyncIterator[tuple[Upstream, Served]]:
    up = Upstream("", anyio.Event(), anyio.Event(), anyio.Event())
    async with Served(handshake_upstream(up).http_app(path="/mcp"), port).serving() as served:
        up.url = f"http://127.0.0.1:{served.port}/mcp"
        yield up, served


CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("alpha_add", {"a": 2, "b": 3}, None),
    ("alpha_media", {}, None),
    ("alpha_fail", {"message": "no: ✗"}, None),        # isError
    ("alpha_add", {"a": "x", "b": 1}, None),           # the upstream's refusal
    ("alpha_chatty", {"text": "ü ✗"}, None),
    ("alpha_chatty", {"text": "logs"}, {types.LOG_LEVEL_META_KEY: "info"}),
    ("alpha_chatty", {"text": BIG}, {types.LOG_LEVEL_META_KEY: "info"}),
    ("alpha_fail", {"message": BIG}, None),
    ("alpha_progress", {"steps": 3, "tag": "t"},
     {"progressToken": "tok", types.LOG_LEVEL_META_KEY: "info"}),
    ("alpha_progress", {"steps": 2}, {"progressToken": 9}),
    ("alpha_nope", {}, None),                           # no such tool upstream
    ("alpha_ask_model", {"question": "?"}, None),       # a push a 2026 host cannot answer
]


async def test_handshake_era_calls_go_through_the_tap_on_kept_connections() -> None:
    async with legacy_upstream() as (up, _), Relay(_port(up.url)).serving() as relay:
        relayed = up.url.replace(f":{relay.target}/", f":{relay.port}/")
        async with front(gateway(relayed, tap=True, protocol="legacy")) as fast, \
                front(gateway(up.url, tap=False, protocol="legacy")) as sdk:
            tap = fast.tap
            assert tap is not None and sdk.tap is None
            who = (await fast.post("alpha_whoami", {})).json()["result"]
            assert who["structuredContent"]["result"].startswith("gw-"), who
            assert not (await sdk.post("alpha_whoami", {})).json()["result"][
                "structuredContent"]["result"].startswith("gw-")
            for name, arguments, meta in CASES:
                before = tap.served
                got, want = await fast.post(name, arguments, meta), await sdk.post(
                    name, arguments, meta)
                assert tap.served == before + (name != "alpha_nope"), name
                if meta and "progressToken" in meta:  # progress reached the host first
                    events = [json.loads(e) for e in canonical(got.content)]
                    assert [e.get("method") for e in events[:-1]].count(
                        "notifications/progress") == arguments["steps"], events
                assert got.status_code == want.status_code, name
                assert got.headers["content-type"] == want.headers["content-type"], name
                assert canonical(got.content) == canonical(want.content), (name, got.text)
                if name == "alpha_nope":  # the gateway's own refusal: no upstream call
                    assert "alpha_nope" in got.text
                if name == "alpha_ask_model":  # the SDK session asked: its error, as before
                    assert "sampling" in got.text, got.text
            # Each SSE answer was read to its end: its connection is kept, and twenty
            # calls open none (the SDK's client opens one per call).
            opened, accepted = tap.opened, relay.accepted
            assert opened <= 2 and not tap.lingers
            for n in range(20):
                got = await fast.post("alpha_add", {"a": n, "b": 1})
                assert got.json()["result"]["structuredContent"] == {"result": n + 1}
            assert tap.opened == opened and relay.accepted == accepted
            assert len(tap._idle) == 1 and not tap._busy


async def test_a_host_that_goes_away_cancels_the_upstream_request() -> None:
    async with legacy_upstream() as (up, _), \
            front(gateway(up.url, tap=True, protocol="legacy")) as fast:
        # notifications/cancelled stops the tool
        outcomes = await host_leaves_mid_call(fast, up)
        assert [o.status for o in outcomes] == ["cancelled"]
        await goes_on_through_the_tap(fast)


async def test_a_call_timeout_cancels_the_upstream_request() -> None:
    async with legacy_upstream() as (up, _), \
            front(gateway(up.url, tap=True, protocol="legacy")) as fast:
        fast.gateway.manager.services["alpha"].replicas[0]._requests.call_timeout = 0.5
        got = await fast.post("alpha_hold", {})
        result = got.json()["result"]
        assert result["isError"] is True and "did not answer within 0.5s" in result[
            "content"][0]["text"]
        with anyio.fail_after(30):
            await up.cancelled.wait()
        assert (await fast.post("alpha_add", {"a": 1, "b": 2})).json()["result"][
            "structuredContent"] == {"result": 3}
        tap = fast.tap
        assert tap is not None and tap.served == 1


async def test_an_upstream_that_restarted_is_answered_on_a_new_session() -> None:
    """The restarted upstream answers the old session's requests 404: the call that met
    it is sent again on a new session, through the tap and through the SDK's client
    alike (tests/test_session_renewal.py: real processes, every front)."""
    from tests.test_session_renewal import make_gateway

    async with contextlib.AsyncExitStack() as stack:
        up, first = await stack.enter_async_context(legacy_upstream())
        url = up.url
        fast = await stack.enter_async_context(front(gateway(url, tap=True,
                                                             protocol="legacy")))
        sdk = await stack.enter_async_context(front(make_gateway(url, lanes=True, tap=False,
                                                                 name="alpha")))
        for each in (fast, sdk):
            assert (await each.post("alpha_add", {"a": 1, "b": 1})).status_code == 200
        tap = fast.tap
        assert tap is not None and tap.served == 1 and sdk.tap is None
        await first.stop()  # the upstream stops, and starts again at the same URL
        await stack.enter_async_context(legacy_upstream(_port(url)))
        for each in (fast, sdk):
            got = await each.post("alpha_add", {"a": 2, "b": 2})
            assert got.json()["result"]["structuredContent"] == {"result": 4}, got.text
            replica = each.gateway.manager.services["alpha"].replicas[0]
            assert replica.state is UpstreamState.READY and replica.connects == 2
        assert fast.tap is not None and fast.tap is not tap and fast.tap.served >= 1


def _port(url: str) -> int:
    return int(urlsplit(url).port or 80)


# -- the wire's odd cases, against a scripted server ---------------------------------


class Scripted:
    """An HTTP/1.1 server on 127.0.0.1 that answers each POST with the next of
    ``answers`` (raw bytes; a tuple: the bytes, then the connection closed) and keeps
    what it was sent; once the script is over, the connection stays open."""

    def __init__(self, *answers: bytes | tuple[bytes, str]) -> None:
        self.answers, self.requests, self.port = list(answers), [], 0
        self.held: list[asyncio.StreamWriter] = []

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                writer.write(answer if isinstance(answer, bytes) else answer[0])
                if not isinstance(answer, bytes):
                    writer.close()
                    return
            self.held.append(writer)  # the script is over: the connection stays open

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Scripted]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            for writer in self.held:
                writer.close()
            server.close()


def sse(*messages: dict[str, Any], end: bool = True) -> bytes:
    """A chunked SSE answer of ``messages``; ``end``: with the body's last chunk."""
    chunks = b""
    for message in messages:
        event = b"event: message\r\ndata: " + json.dumps(message).encode() + b"\r\n\r\n"
        chunks += b"%x\r\n%b\r\n" % (len(event), event)
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + chunks + (b"0\r\n\r\n" if end else b""))


class _Session:
    protocol_version = "2025-11-25"


def _End(port: int) -> Any:  # a session's end, as learned from its answers
    import httpx2

    from fast_mcp_gateway.upstream.http_session_end import SessionEnd

    end = SessionEnd("scripted")
    end.session_id, end.url = "sid-1", httpx2.URL(f"http://127.0.0.1:{port}/mcp")
    return end


def _tap(port: int) -> Any:
    from fast_mcp_gateway.upstream.http_tap import HttpTap

    return HttpTap(f"http://127.0.0.1:{port}/mcp", {"x-key": "k"}, cast(Any, _Session()),
                   end=cast(Any, _End(port)))


async def settled(tap: Any) -> None:
    """Until the tap's answered streams, read off the calls' path, have ended."""
    while tap._draining:
        await asyncio.wait(set(tap._draining))


async def test_a_stream_kept_open_after_its_answer_is_not_waited_for_again() -> None:
    open_ = [sse({"jsonrpc": "2.0", "id": f"gw-{n}", "result": {"n": n}}, end=False)
             for n in (1, 2, 3)]
    again = {"jsonrpc": "2.0", "id": "gw-4", "result": {"n": 4}}
    async with Scripted(*open_).serving() as first, \
            Scripted(sse(again, end=False)).serving() as second:
        tap = _tap(first.port)
        for n in (1, 2, 3):  # one slow end (a loaded machine) is not the server's way
            assert tap.lingers is (n > LINGER_LIMIT)
            got = await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30})
            assert got == {"n": n}
            await settled(tap)
            assert not tap._idle  # closed, not kept
        assert tap.lingers
        head = first.requests[0].split(b"\r\n\r\n")[0].lower()
        assert b"mcp-session-id: sid-1" in head and b"mcp-name: t" in head
        assert b"x-key: k" in head and b"accept: application/json, text/event-stream" in head
        tap.port, tap.end = second.port, _End(second.port)
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 4}
        assert tap.served == 4 and tap.opened == 4 and not tap._idle and not tap._draining


async def test_an_answer_goes_back_before_its_stream_ends(monkeypatch: Any) -> None:
    """The rest of an answered stream is read off the call's path: a server slow to end
    it (up to DRAIN_WITHIN) delayed every call by as much."""
    from fast_mcp_gateway.upstream import http_tap

    monkeypatch.setattr(http_tap, "DRAIN_WITHIN", 3600.0)
    answer = {"jsonrpc": "2.0", "id": "gw-1", "result": {"n": 1}}
    async with Scripted(sse(answer, end=False)).serving() as server:
        tap = _tap(server.port)
        with anyio.fail_after(30):
            assert await tap.send_stamped("tools/call", {"name": "t"},
                                          {"timeout": 30}) == {"n": 1}
        assert len(tap._draining) == 1 and not tap._idle  # the stream still open
        await tap.aclose()  # the session ends: its streams' reading with it
        await settled(tap)
        assert tap._busy and all(conn.writer.is_closing() for conn in tap._busy)


async def test_the_sdks_words_for_a_lost_session_and_a_broken_stream() -> None:
    from mcp.shared.exceptions import MCPError

    gone = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    broken = (sse(end=False) + b"9\r\nevent", "closed")  # a chunk cut short, then EOF
    async with Scripted(gone, broken).serving() as server:
        tap = _tap(server.port)
        with pytest.raises(MCPError) as lost:
            await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30})
        assert (lost.value.error.code, lost.value.error.message) == (
            types.INVALID_REQUEST, "Session terminated")
        assert tap.end.lost is not None and tap.end.refused(lost.value)  # to be renewed
        with pytest.raises(MCPError) as ended:
            await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30})
        assert (ended.value.error.code, ended.value.error.message) == (
            types.CONNECTION_CLOSED, "SSE stream ended without a response")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def test_a_chunk_larger_than_max_message_bytes_is_not_read_whole() -> None:
    """A chunk's size is the server's to say: one declared at 64 MiB whose event passes
    max_message_bytes fails as too large as soon as the event does (the whole chunk
    was waited for and held in memory first: here, until the call's timeout)."""
    from mcp.shared.exceptions import MCPError

    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    huge = head + b"%x\r\n" % (64 << 20) + b"event: message\r\ndata: " + b"x" * 300_000
    async with Scripted(huge).serving() as server:
        tap = _tap(server.port)
        tap.max_message_bytes = 65_536
        with pytest.raises(MCPError) as too_large:
            await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 20})
        assert "larger than max_message_bytes (65536)" in too_large.value.error.message


async def test_an_answer_inside_a_long_chunk_keeps_its_connection() -> None:
    """An answer found inside a chunk read in pieces: the rest of the chunk and of the
    stream is drained from where the reading stopped, and the connection serves the
    next call."""
    answer = b"event: message\r\ndata: " + json.dumps(
        {"jsonrpc": "2.0", "id": "gw-1", "result": {"n": 1}}).encode() + b"\r\n\r\n"
    after = b": keep-alive\r\n\r\n" * 20_000  # past the answer, in the same chunk
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    first = head + _chunk(answer + after) + _chunk(after) + b"0\r\n\r\n"
    again = {"jsonrpc": "2.0", "id": "gw-2", "result": {"n": 2}}
    async with Scripted(first, sse(again)).serving() as server:
        tap = _tap(server.port)
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 1}
        await settled(tap)
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 2}
        assert tap.opened == 1 and not tap.lingers


async def test_a_call_that_failed_after_a_refusal_elsewhere_is_not_taken_for_refused() -> None:
    """Once the session is known forgotten (a 400 naming it, to the SDK's GET stream or
    probe: said as the SDK's stand-in), a tap call the server answered 500 (it ran, and
    failed) says the same words: it was taken for refused and sent again (run twice)."""
    from mcp.shared.exceptions import MCPError

    failed = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
              b"content-length: 21\r\n\r\nInternal Server Error")
    async with Scripted(failed).serving() as server:
        tap = _tap(server.port)
        tap.end.forgotten((-32000, "Bad Request: No valid session ID provided"), 400, "GET")
        with pytest.raises(MCPError) as ran:
            await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30})
        assert (ran.value.error.code, ran.value.error.message) == (
            types.INTERNAL_ERROR, "Server returned an error response")
        assert not tap.end.refused(ran.value)  # an answer: never sent again


async def test_an_sse_answer_longer_than_max_message_bytes_in_all_is_read() -> None:
    """An SSE answer of a declared length is bounded event by event, as the SDK bounds
    it (its events small, longer than max_message_bytes in all: refused as too large);
    the rest after the answer is read on, and the connection kept."""
    answer = b"event: message\r\ndata: " + json.dumps(
        {"jsonrpc": "2.0", "id": "gw-1", "result": {"n": 1}}).encode() + b"\r\n\r\n"
    body = answer + b": keep-alive\r\n\r\n" * 10_000  # 160 kB in all
    first = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
             b"content-length: %d\r\n\r\n%b" % (len(body), body))
    again = {"jsonrpc": "2.0", "id": "gw-2", "result": {"n": 2}}
    async with Scripted(first, sse(again)).serving() as server:
        tap = _tap(server.port)
        tap.max_message_bytes = 65_536
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 1}
        await settled(tap)
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 2}
        assert tap.opened == 1 and not tap.lingers



def read_request(conn: Any) -> bytes:
    """The body of the next request on blocking socket ``conn`` (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += conn.recv(65536)
    return body

class _ClosesIdle:
    """A blocking HTTP/1.1 server in a thread: answers one POST on a kept-alive
    connection, closes that connection when told (as a server's keep-alive timeout
    does: uvicorn's ``timeout_keep_alive``, 1 s where one is set so), then answers the
    next connection's POST."""

    def __init__(self) -> None:
        import socket
        import threading

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.close_now, self.closed = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _answer(self, conn: Any, n: int) -> None:
        body = read_request(conn)
        answer = json.dumps({"jsonrpc": "2.0", "id": json.loads(body)["id"],
                             "result": {"n": n}}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%b" % (len(answer), answer))

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            first, _ = self.listener.accept()
            self._answer(first, 1)
            self.close_now.wait()
            first.close()  # its FIN is on its way
            self.closed.set()
            second, _ = self.listener.accept()
            with second:
                self._answer(second, 2)


async def test_a_connection_the_server_closed_is_not_reused_before_the_loop_saw_it() -> None:
    """A pooled connection idle less than IDLE_SECONDS, closed by a server keeping idle
    ones a shorter time (1 s), whose FIN the event loop has not read yet (a loaded
    machine: it arrived during this loop iteration) was taken for open: the call was
    written into it and failed "closed the connection before answering", and the
    session restarted (seen: an upstream with uvicorn's timeout_keep_alive=1, calls
    ~1 s apart at load 12).  The socket itself is asked now."""
    import select

    server = _ClosesIdle()
    try:
        tap = _tap(server.port)
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 1}
        (conn,) = tap._idle
        server.close_now.set()
        assert server.closed.wait(30)
        # The FIN has reached this socket; nothing awaited since: the loop has not read it.
        sock = conn.writer.get_extra_info("socket")
        assert select.select([sock.fileno()], [], [], 30)[0]
        assert not conn.reader.at_eof()
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 2}
        assert tap.opened == 2
    finally:
        server.close_now.set()
        server.listener.close()
        await anyio.to_thread.run_sync(server.thread.join, 30)


async def test_a_connection_on_a_descriptor_past_1024_is_still_reused() -> None:
    """The socket is asked with poll: select refuses a descriptor from 1024 on (a
    gateway holding many connections), which read as closed, so no connection of
    such a gateway was ever reused."""
    import resource
    import select
    import socket
    import time

    from fast_mcp_gateway.upstream.http_pool import Connection

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    ours, peer = socket.socketpair()
    high = socket.socket(fileno=os.dup2(ours.detach(), 1500))
    reader, writer = await asyncio.open_connection(sock=high)
    try:
        conn = Connection(reader, writer)
        conn.idle_since = time.monotonic()
        assert conn.usable(time.monotonic())  # open and quiet: reused
        peer.close()
        poll = select.poll()
        poll.register(1500, select.POLLIN)
        assert poll.poll(30_000)  # the close arrived
        assert not conn.usable(time.monotonic())
    finally:
        writer.close()
        peer.close()
