"""An HTTP upstream that closes idle connections sooner than the gateway's bound.

A request written into a connection the server is closing fails (it is never written
again: the server may have run it).  That fails the request only (the session, whose
own connections are untouched, goes on: other calls in flight too), and the replica
learns the server's bound (``upstream/http_idle.IdleBound``); a ``Keep-Alive:
timeout=N`` header teaches it at once.  The closes are driven, never waited for: a
relay that cuts the connection a request is written into, a server told when a
connection's idle time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import serve_http
from tests.tcp_relay import TcpRelay
from tests.test_http_tap import Upstream, front, gateway, upstream_server
from tests.test_http_tap_handshake import _tap

pytestmark = pytest.mark.anyio


class Cutter(TcpRelay):
    """A relay to ``port``: the connection from the local port ``cut`` is given is
    closed when a request is written into it (never forwarded), as a server closing it
    for being idle as the request crossed its close; until then its server's close is
    not passed on (the test decides when it is closed, not the machine's load)."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.armed: int | None = None
        self.done = asyncio.Event()

    def cut(self, port: int) -> None:
        self.armed = port

    def cuts(self, peer: int) -> bool:
        if self.armed != peer:
            return False
        self.armed = None
        self.done.set()
        return True

    def holds(self, peer: int) -> bool:
        return self.armed == peer


@contextlib.asynccontextmanager
async def short_lived() -> AsyncIterator[Upstream]:
    """The tap tests' upstream, on a uvicorn keeping idle connections 1 s."""
    up = Upstream("", anyio.Event(), anyio.Event(), anyio.Event())
    async with serve_http(upstream_server(up).http_app(path="/mcp"), keep_alive=1) as base:
        up.url = f"{base}/mcp"
        yield up


@pytest.mark.parametrize("protocol", ["2026-07-28", "legacy"])
async def test_a_call_written_as_the_server_closes_fails_alone_and_teaches_the_bound(
        protocol: str, caplog: pytest.LogCaptureFixture) -> None:
    """It failed "closed the connection before answering" and restarted the session:
    a call in flight on another connection failed with it, the replica left ready.
    Now that call only fails; the replica reuses connections idle less than half the
    time this one was (said once, at info), and keeps that past its sessions."""
    caplog.set_level(logging.INFO, "fast_mcp_gateway.upstream.http_idle")
    async with short_lived() as up, Cutter(int(up.url.split(":")[2].split("/")[0])) \
            .serving() as relay:
        gw = gateway(f"http://127.0.0.1:{relay.port}/mcp", tap=True, protocol=protocol)
        async with front(gw) as fast:
            replica = gw.manager.services["alpha"].replicas[0]
            session, tap = replica._sup.session, fast.tap
            assert tap is not None
            held: list[Any] = []

            async def hold() -> None:
                held.append((await fast.post("alpha_hold", {})).json())

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)
                with anyio.fail_after(30):
                    await up.started.wait()
                while True:  # a connection pooled before the server closed it itself
                    got = await fast.post("alpha_add", {"a": 1, "b": 1})
                    assert got.json()["result"]["structuredContent"] == {"result": 2}
                    (conn,) = tap._idle
                    relay.cut(conn.writer.get_extra_info("sockname")[1])
                    if conn.usable(conn.idle_since):
                        break
                conn.idle_since -= 1.0  # idle 1 s (the server's bound) when reused
                # (not idempotent: not sent again)
                got = (await fast.post("alpha_chatty", {"text": "x"})).json()["result"]
                assert relay.done.is_set()
                assert got["isError"] is True, got
                assert "closed the connection before answering" in got["content"][0]["text"]
                up.release.set()
            assert held[0]["result"]["content"][0]["text"] == "released", held
            assert replica._sup.session is session and fast.tap is tap
            assert replica.state is UpstreamState.READY
            learned = replica._stats.idle.seconds
            assert 0.5 <= learned < 2.0, learned
            said = [r.getMessage() for r in caplog.records if "reused for" in r.getMessage()]
            assert len(said) == 1 and f"{learned:.2f} s" in said[0] and "alpha" in said[0]
            # The next call takes a connection idle less than that, or a new one.
            got = await fast.post("alpha_add", {"a": 3, "b": 3})
            assert got.json()["result"]["structuredContent"] == {"result": 6}


class _KeepAliveServer:
    """A raw HTTP/1.1 server that answers with ``Keep-Alive: timeout=1`` and closes a
    connection when its second request arrives after ``expired`` is set (the second
    arrived after its 1 s idle: crossing the close)."""

    def __init__(self, keep_alive: bytes = b"keep-alive: timeout=1\r\n") -> None:
        self.keep_alive = keep_alive  # (its header lines)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.expired = threading.Event()
        self.accepted = 0
        self.answered = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _serve(self, conn: socket.socket) -> None:
        served = 0
        data = b""
        with conn, contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                if served and self.expired.is_set():
                    return  # closed: the request crossed the server's close
                head, _, data = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < length:
                    data += conn.recv(65536)
                body, data = data[:length], data[length:]
                served += 1
                self.answered += 1
                request = json.loads(body) if body else {}
                answer = json.dumps({"jsonrpc": "2.0", "id": request.get("id"),
                                     "result": {"n": self.answered}}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"%bcontent-length: %d\r\n\r\n%b"
                             % (self.keep_alive, len(answer), answer))

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                self.accepted += 1
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


async def test_a_keep_alive_timeout_header_sets_the_bound_before_any_failure() -> None:
    """A connection idle 1 s, as long as the server said it keeps one, was reused and
    the call failed; the bound is now half the server's word, from its first answer."""
    server = _KeepAliveServer()
    try:
        tap = _tap(server.port)
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 1}
        (conn,) = tap._idle
        conn.idle_since -= 1.0
        server.expired.set()
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 2}
        assert tap.opened == 2 and server.accepted == 2
        assert tap.pool.idle.seconds == 0.5
    finally:
        server.close()


async def test_the_sdk_client_learns_the_header_and_the_next_one_keeps_it() -> None:
    """The SDK's HTTP client (probes, the full path, where the tap steps aside) reads
    the header too; each session's client is made with the replica's bound."""
    from fast_mcp_gateway.upstream.http_transports import FastHttpTransport

    server = _KeepAliveServer()
    try:
        transport = FastHttpTransport(f"http://127.0.0.1:{server.port}/mcp")
        async with transport._client() as client:
            assert client._transport._pool._keepalive_expiry == 2.0
            got = await client.post(f"http://127.0.0.1:{server.port}/mcp", content=b"{}")
            assert got.json()["result"] == {"n": 1}
        assert transport.idle is not None and transport.idle.seconds == 0.5
        async with transport._client() as client:
            assert client._transport._pool._keepalive_expiry == 0.5
    finally:
        server.close()


async def test_the_log_line_names_an_https_servers_default_port(
        caplog: pytest.LogCaptureFixture) -> None:
    """A header read from an ``https://`` server on its default port names it :443."""
    import httpx2

    from fast_mcp_gateway.upstream.http_idle import IdleBound

    bound = IdleBound("secure")
    request = httpx2.Request("POST", "https://mcp.example/mcp")
    with caplog.at_level(logging.INFO, logger="fast_mcp_gateway.upstream.http_idle"):
        await bound.heard(httpx2.Response(200, headers={"Keep-Alive": "timeout=1"},
                                          request=request))
    assert bound.seconds == 0.5
    assert "HTTP server mcp.example:443 says Keep-Alive: timeout=1" in caplog.text


@pytest.mark.parametrize(("header", "seconds"), [
    ("timeout=0", 0.25), ("timeout=0.1", 0.25),  # (the floor)
    ("timeout=-5", 2.0), ("timeout=abc", 2.0), ("timeout=nan", 2.0), ("timeout=inf", 2.0),
    ("timeout=99999999999", 2.0), ("max=100", 2.0), ("", 2.0),
    ("max=5, timeout=3", 1.5), ('timeout="1"', 0.5),
    ("timeout=abc, timeout=1", 0.5), ("timeout=5, timeout=1", 0.5),
])
def test_a_keep_alive_header_teaches_its_least_valid_timeout(header: str,
                                                             seconds: float) -> None:
    """A quoted timeout, or a lower one after another (several header lines, joined)
    or after a malformed one, was ignored: the bound stayed 2 s."""
    from fast_mcp_gateway.upstream.http_idle import IdleBound

    bound = IdleBound("x")
    bound.advertised(header, "127.0.0.1:1")
    assert bound.seconds == seconds


async def test_the_tap_reads_every_keep_alive_line() -> None:
    """Two ``Keep-Alive`` lines: the tap kept the last one only (``timeout=5``)."""
    server = _KeepAliveServer(b"keep-alive: timeout=1\r\nkeep-alive: timeout=5\r\n")
    try:
        tap = _tap(server.port)
        assert await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30}) == {"n": 1}
        assert tap.pool.idle.seconds == 0.5
    finally:
        server.close()


async def test_the_gateways_own_transport_makes_its_clients_with_the_bound_too() -> None:
    """``default_transport``'s HTTP transport makes its SDK clients through
    ``HttpFacts.client``: they were made with the fixed 2 s and never read a
    ``Keep-Alive`` header (only a transport without a client factory did)."""
    from fast_mcp_gateway.config.loader import parse_config
    from fast_mcp_gateway.upstream.transports import default_transport

    server = _KeepAliveServer()
    try:
        url = f"http://127.0.0.1:{server.port}/mcp"
        config = parse_config({"servers": {"alpha": {"url": url}}}, source="test")
        transport: Any = default_transport(config.servers["alpha"], None)
        async with transport._client() as client:
            got = await client.post(url, content=b"{}")
            assert got.json()["result"] == {"n": 1}
        assert transport.idle is not None and transport.idle.seconds == 0.5
        async with transport._client() as client:
            assert client._transport._pool._keepalive_expiry == 0.5
    finally:
        server.close()
