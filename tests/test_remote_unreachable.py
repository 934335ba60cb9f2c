"""A remote server that is not there yet (connection refused: started after the gateway,
or restarting for a deploy) is retried until it comes up, never parked as a crash loop:
it was parked as ``failed`` after ``crash_limit`` refusals (about 9 s with the default
policy) and stayed so, whatever the server did next, until an operator's reconnect.
Real HTTP on 127.0.0.1: the port is bound from the start, and listens only later."""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
from typing import Any

import anyio
import pytest
import uvicorn
from fastmcp import Client, FastMCP

from fast_mcp_gateway.upstream.model import RestartPolicy, UpstreamState, unreachable
from tests.fixtures import FAST_RESTART, make_gateway

pytestmark = pytest.mark.anyio
GUARD = 50  # seconds: a hang guard only


def _late_server() -> FastMCP[Any]:
    mcp = FastMCP("late")

    @mcp.tool
    def hello() -> str:
        return "hello from late"

    return mcp


async def test_a_remote_server_that_comes_up_late_is_connected() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: every connect is refused
    port = sock.getsockname()[1]
    gateway = make_gateway({"late": {"url": f"http://127.0.0.1:{port}/mcp"}})
    try:
        async with Client(gateway.server, mode="legacy") as client:
            late = gateway.manager.get("late").replicas[0]
            # More refusals than FAST_RESTART's crash_limit: a crash loop is parked by now.
            assert await late.wait_until(
                lambda: late.attempts > FAST_RESTART.crash_limit + 1, GUARD), late.last_error
            assert late.state is not UpstreamState.FAILED, late.last_error
            assert "connection refused" in (late.last_error or "")
            sock.listen(64)
            app = _late_server().http_app(transport="http", path="/mcp")
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, [sock])
                try:
                    assert await late.wait_until(
                        lambda: late.state is UpstreamState.READY, GUARD), late.last_error
                    result = await client.call_tool("late_hello", {})
                    assert result.content[0].text == "hello from late"  # type: ignore[union-attr]
                finally:
                    server.should_exit = True
    finally:
        sock.close()


def test_what_counts_as_unreachable() -> None:
    import httpx2

    refused = httpx2.ConnectError("All connection attempts failed")
    assert unreachable(refused)
    try:
        try:
            raise refused
        except httpx2.ConnectError as inner:
            raise RuntimeError("connect: initialize failed") from inner
    except RuntimeError as outer:
        assert unreachable(outer)
    assert unreachable(BaseExceptionGroup("attempt", [ValueError("x"), refused]))
    assert not unreachable(None)
    assert not unreachable(httpx2.ReadTimeout("slow"))
    assert not unreachable(RuntimeError("the server exited with code 1"))
    # TLS that does not fit (httpx says ConnectError): a misconfiguration, parked as any.
    try:
        try:
            raise ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
        except ssl.SSLError as tls:
            raise httpx2.ConnectError("[SSL: WRONG_VERSION_NUMBER]") from tls
    except httpx2.ConnectError as wrapped:
        assert not unreachable(wrapped)


def test_the_backoff_of_a_server_retried_for_days_stays_at_its_cap() -> None:
    # Never parked, an unreachable server's attempts grow without bound: 2.0**1024
    # overflowed after ~8.5 h at the 30 s cap and took the whole gateway down.
    policy, rng = RestartPolicy(), random.Random(1)
    for attempt in (10, 1024, 10**6):
        assert policy.delay(attempt, rng) <= policy.maximum * (1 + policy.jitter)


async def test_a_server_that_never_connected_stays_reconnecting_between_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.supervisor")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: every connect is refused
    port = sock.getsockname()[1]
    gateway = make_gateway({"late": {"url": f"http://127.0.0.1:{port}/mcp"}})
    try:
        async with Client(gateway.server, mode="legacy"):
            late = gateway.manager.get("late").replicas[0]
            assert await late.wait_until(lambda: late.attempts > 4, GUARD), late.last_error
            # One state while it retries: no starting/reconnecting flip (a log line, a
            # health row and a catalog rebuild each) per attempt, forever.
            moves = [r.getMessage() for r in caplog.records if "upstream late" in r.getMessage()]
            assert any("-> reconnecting" in m for m in moves), moves
            assert not any("-> starting" in m for m in moves), moves
    finally:
        sock.close()


async def test_a_server_that_was_up_reconnects_without_the_backoff_of_earlier_drops() -> None:
    asked: list[int] = []

    class Recorded(RestartPolicy):
        def delay(self, attempt: int, rng: random.Random) -> float:
            asked.append(attempt)
            return super().delay(attempt, rng)

    policy = Recorded(initial=0.01, maximum=0.05, jitter=0.0, crash_limit=1000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    gateway = make_gateway({"late": {"url": f"http://127.0.0.1:{port}/mcp"}}, restart=policy)
    try:
        async with Client(gateway.server, mode="legacy") as client:
            late = gateway.manager.get("late").replicas[0]
            assert await late.wait_until(lambda: late.attempts >= 3, GUARD), late.last_error
            sock.listen(64)
            app = _late_server().http_app(transport="http", path="/mcp")
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None,
                                                   timeout_graceful_shutdown=0))
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, [sock])
                assert await late.wait_until(
                    lambda: late.state is UpstreamState.READY, GUARD), late.last_error
                before = len(asked)
                server.should_exit = True  # the server goes away after it was up
            # A call finds it gone (else the next health check, up to 30 s on).
            with contextlib.suppress(Exception):
                await client.call_tool("late_hello", {})
            assert await late.wait_until(lambda: len(asked) > before, GUARD), late.state
            # Its first reconnect backs off from the start, not from the refusals before.
            assert asked[before - 1] >= 2 and asked[before] == 0, asked
    finally:
        sock.close()
