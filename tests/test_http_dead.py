"""An HTTP upstream that died behind something still accepting connections.

A proxy (or a port-forward, a tunnel) whose server has gone accepts each connection
and closes it once a request is written into it, before any byte of an answer.  The
tap's drop of one request's own connection leaves the session (``session_intact``:
an idle close crossing a request); a drop on a connection it had just opened is no
idle close, and the replica must notice the server is gone (restart the session)
rather than fail calls one by one while it stays ``ready``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream.http_idle import IDLE_SECONDS
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, WITHIN, until
from tests.tcp_relay import TcpRelay
from tests.test_http_tap import front, upstream

pytestmark = pytest.mark.anyio


class Proxy(TcpRelay):
    """A relay to ``port``; once ``dead`` is set its server is gone: each request
    written to it (on any connection, old or new) is answered by a close.  ``kill``
    closes one connection now (its server crashed under it)."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.dead = False
        self.dropped = 0

    def cuts(self, peer: int) -> bool:
        self.dropped += self.dead
        return self.dead


def gateway(url: str, protocol: str) -> Gateway:
    # (no health probe meanwhile: the call itself must tell)
    config = parse_config({"servers": {"alpha": {"url": url, "protocol": protocol,
                                                 "health": {"interval": 3600}}}},
                          source="test")
    settings = GatewaySettings(connect_timeout=10.0, db=None, startup_wait=600.0,
                               call_timeout=60)
    return Gateway(config, settings, restart=FAST_RESTART,
                   transport_factory=default_transport)


@contextlib.asynccontextmanager
async def proxied(protocol: str) -> AsyncIterator[tuple[Any, Proxy, Any, Any]]:
    """The upstream, a ``Proxy`` in front of it, a gateway front on that, and its
    replica, once a first call went through."""
    async with upstream() as up, Proxy(int(up.url.split(":")[2].split("/")[0])) \
            .serving() as proxy, \
            front(gateway(f"http://127.0.0.1:{proxy.port}/mcp", protocol)) as fast:
        replica = fast.gateway.manager.services["alpha"].replicas[0]
        got = await fast.post("alpha_add", {"a": 1, "b": 1})
        assert got.json()["result"]["structuredContent"] == {"result": 2}
        yield up, proxy, fast, replica


@pytest.mark.parametrize("protocol", ["2026-07-28", "legacy"])
async def test_a_server_gone_behind_a_proxy_restarts_the_session(protocol: str) -> None:
    """Each call failed 'closed the connection before answering' on a connection the
    tap had just opened, the session kept: the replica stayed ready, and every call
    went on failing so until the next health probe (30 s by default)."""
    async with proxied(protocol) as (_up, proxy, fast, replica):
        session = replica._sup.session
        proxy.dead = True
        tap = fast.tap
        assert tap is not None
        for conn in tap._idle:  # (the dead server's pooled connections: gone)
            conn.idle_since -= 10
        got = (await fast.post("alpha_add", {"a": 2, "b": 2})).json()
        assert got["result"]["isError"] is True, got
        assert proxy.dropped >= 1
        await until(lambda: replica._sup.session is not session
                    or replica.state is not UpstreamState.READY)


@pytest.mark.parametrize("protocol", ["2026-07-28", "legacy"])
async def test_a_connection_dropped_long_into_a_call_teaches_no_idle_bound(
        protocol: str) -> None:
    """A reused connection the server closed under a call that had run a while (it
    crashed, or restarted) taught the replica that the server keeps idle connections
    half as long as this one had been idle before the call: to the floor, for as long
    as the replica lives (a new connection per call after any pause).  An idle close
    crosses a request at once; this one is no such close."""
    async with proxied(protocol) as (up, proxy, fast, replica):
        tap = fast.tap
        assert tap is not None and len(tap._idle) == 1
        held: list[Any] = []

        async def hold() -> None:
            held.append((await fast.post("alpha_hold", {})).json())

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            with anyio.fail_after(WITHIN):
                await up.started.wait()
            (conn,) = tap._busy  # the pooled one, reused
            assert conn.idled is not None
            with contextlib.suppress(AttributeError):  # (the old code has no such field)
                conn.taken -= 10 * IDLE_SECONDS  # written as long ago as a long call was
            proxy.kill(conn.writer.get_extra_info("sockname")[1])
        up.release.set()
        assert held[0]["result"]["isError"] is True, held
        assert replica._stats.idle.seconds == IDLE_SECONDS
