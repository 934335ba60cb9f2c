"""A request written into a reused connection the server closed idle, sent once more.

A server keeping idle connections less than the gateway's bound (uvicorn's
``timeout_keep_alive=1``, which says nothing of it) closes one as the next request
crosses its close on the wire: the request meets EOF before any byte of an answer, and
was most likely never read.  A request safe to repeat (any but ``tools/call``, and a
``tools/call`` of a tool failover sends again: read-only, idempotent) is written once
more on a new connection, and the host never sees that first failure; any other
``tools/call`` fails as before, and never reaches the server twice.  The closes are
the server's own, waited for as they come; the crossing is the check before reuse
told nothing yet (a FIN still on the wire).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.routing.service import ROUTE_META_KEY
from fast_mcp_gateway.upstream import http_pool
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import WITHIN, serve_http
from tests.test_http_idle import _KeepAliveServer
from tests.test_http_tap import Upstream, front, gateway, upstream_server
from tests.test_http_tap_handshake import _tap

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def counting(arrived: dict[str, int]) -> AsyncIterator[Upstream]:
    """The tap tests' upstream on a uvicorn keeping idle connections 1 s, with a safe
    (idempotent) and an unsafe tool that count their runs in ``arrived``."""
    up = Upstream("", anyio.Event(), anyio.Event(), anyio.Event())
    mcp = upstream_server(up)

    @mcp.tool(annotations={"idempotentHint": True})
    def put(key: str) -> str:
        arrived["put"] = arrived.get("put", 0) + 1
        return f"put {key}"

    @mcp.tool
    def append(key: str) -> str:
        arrived["append"] = arrived.get("append", 0) + 1
        return f"appended {key}"

    async with serve_http(mcp.http_app(path="/mcp"), keep_alive=1) as base:
        up.url = f"{base}/mcp"
        yield up


async def closed_by_the_server(tap: Any) -> Any:
    """The tap's one pooled connection, once the server closed it for being idle
    (read to its end: nothing else comes on it), taken for reuse all the same: the
    close crossing the next request."""
    (conn,) = tap._idle
    with anyio.fail_after(WITHIN):
        assert await conn.reader.read() == b""
    return conn


@pytest.mark.parametrize("protocol", ["2026-07-28", "legacy"])
async def test_a_safe_call_meeting_an_idle_close_is_sent_again_an_unsafe_one_is_not(
        protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The idempotent call's attempt failed ("closed the connection before answering",
    as the unsafe call's still does), and failover sent it again after its backoff (or
    the host saw the failure: ``retry.attempts: 1``); now it is answered at once, on a
    new connection, and ran once."""
    arrived: dict[str, int] = {}
    async with counting(arrived) as up:
        gw = gateway(up.url, tap=True, protocol=protocol)
        async with front(gw) as fast:
            replica = gw.manager.services["alpha"].replicas[0]
            tap, session = fast.tap, replica._sup.session
            assert tap is not None
            got = await fast.post("alpha_put", {"key": "a"})
            assert got.json()["result"]["content"][0]["text"] == "put a"
            stale = await closed_by_the_server(tap)
            monkeypatch.setattr(http_pool.Connection, "usable",
                                lambda conn, now, bound=0.0: conn is stale)
            opened = tap.opened
            got = (await fast.post("alpha_put", {"key": "b"})).json()["result"]
            assert got.get("isError") is not True, got
            assert got["content"][0]["text"] == "put b"
            # (not a failed attempt that failover sent again after its backoff, counted
            # against the replica's health and breaker)
            assert ROUTE_META_KEY not in (got.get("_meta") or {}), got
            assert arrived["put"] == 2 and tap.opened == opened + 1
            learned = replica._stats.idle.seconds
            assert learned < 2.0, learned  # (still learned from it: half its idle ~1 s)

            stale = await closed_by_the_server(tap)
            got = (await fast.post("alpha_append", {"key": "c"})).json()["result"]
            assert got["isError"] is True, got
            assert "closed the connection before answering" in got["content"][0]["text"]
            assert "append" not in arrived  # never run, and not sent again
            assert replica._sup.session is session and fast.tap is tap
            assert replica.state is UpstreamState.READY


async def test_any_request_but_tools_call_is_sent_again_on_a_new_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A raw server closing a reused connection when the request arrives (read, never
    answered): ``tasks/get`` is written again and answered; a ``tools/call`` outside a
    routed call (its tool's idempotency unknown) is not."""
    server = _KeepAliveServer()
    try:
        tap = _tap(server.port)
        assert await tap.send_stamped("tasks/get", {"taskId": "t"}, {"timeout": 30}) \
            == {"n": 1}
        # (reused however long it idled: the server closes it as the request arrives)
        monkeypatch.setattr(http_pool.Connection, "usable", lambda conn, now, bound=0.0: True)
        server.expired.set()
        assert await tap.send_stamped("tasks/get", {"taskId": "t"}, {"timeout": 30}) \
            == {"n": 2}
        assert tap.opened == 2 and server.accepted == 2
        with pytest.raises(Exception, match="closed the connection before answering"):
            await tap.send_stamped("tools/call", {"name": "t"}, {"timeout": 30})
        assert server.answered == 2 and server.accepted == 2
    finally:
        server.close()


async def test_a_cancellation_meeting_an_idle_close_is_sent_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A handshake-era call's cancellation (``notifications/cancelled``, safe to send
    twice) was POSTed on a pooled connection the server had closed idle meanwhile: it
    failed (logged at debug only) and the server's tool ran on; now it is sent again
    on a new connection and the tool is cancelled."""
    async with counting({}) as up, \
            front(gateway(up.url, tap=True, protocol="legacy")) as fast:
        tap = fast.tap
        assert tap is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(fast.post, "alpha_hold", {})
            with anyio.fail_after(WITHIN):
                await up.started.wait()
            got = await fast.post("alpha_put", {"key": "a"})  # on a connection of its own
            assert got.json()["result"]["content"][0]["text"] == "put a"
            stale = await closed_by_the_server(tap)
            monkeypatch.setattr(http_pool.Connection, "usable",
                                lambda conn, now, bound=0.0: conn is stale)
            tg.cancel_scope.cancel()  # the host drops its connection: the call cancelled
        with anyio.fail_after(WITHIN):
            await up.cancelled.wait()
