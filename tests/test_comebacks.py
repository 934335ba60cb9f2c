"""A call with no replica usable waits for one on its way back (routing/service.py
``_comebacks``) only where waiting can help: a server that is down (every attempt
refused) is answered at once, as before, not after its next attempt (up to the 30 s
backoff cap: within the default call timeout, so every call to it hung that long).
Real TCP on 127.0.0.1."""

from __future__ import annotations

import random
import socket
import time

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.upstream.model import RestartPolicy, UpstreamState
from tests.fixtures import make_gateway

pytestmark = pytest.mark.anyio
GUARD = 50  # seconds: a hang guard only


class _Slowing(RestartPolicy):
    """Quick retries until ``slow`` is set, then a long backoff (a server down a while)."""

    slow = False

    def delay(self, attempt: int, rng: random.Random) -> float:
        return 20.0 if self.slow else 0.01


async def test_a_call_to_a_server_that_stays_down_fails_at_once() -> None:
    policy = _Slowing(crash_limit=1000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: every connect is refused
    port = sock.getsockname()[1]
    gateway = make_gateway({"gone": {"url": f"http://127.0.0.1:{port}/mcp"}},
                           restart=policy, call_timeout=60.0)
    try:
        async with Client(gateway.server, mode="legacy"):
            service = gateway.manager.get("gone")
            replica = service.replicas[0]
            assert await replica.wait_until(lambda: replica.attempts >= 2, GUARD)
            assert replica.state is UpstreamState.RECONNECTING, replica.state
            assert "refused" in (replica.last_error or ""), replica.last_error
            policy.slow = True  # the next attempt is 20 s away (within a call timeout)
            assert await replica.wait_until(
                lambda: replica.next_retry_at is not None
                and replica.next_retry_at - time.time() > 10, GUARD), replica.state
            failed: UpstreamError | None = None
            with anyio.move_on_after(8):  # far below the 10+ s to the next attempt
                try:
                    await service.call_tool("hello", {}, None)
                except UpstreamError as exc:
                    failed = exc
            assert failed is not None, "the call waited for the next reconnect attempt"
            assert "reconnecting" in str(failed), failed
    finally:
        sock.close()
