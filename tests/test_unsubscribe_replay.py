"""A host's unsubscribe that lands while a new session replays the subscriptions.

A replica's subscriptions are replayed on each new handshake-era session (a reconnect,
a restart), one by one.  A host letting go of a URI the replay had not reached yet was
sent upstream as ``resources/unsubscribe`` of a URI that session had never been asked
to subscribe to (a server may refuse it; it had nothing to undo).  Now only what was
asked of the session is unsubscribed there, and the replay skips what was let go of.
A real upstream (``tests/servers/watched.py``, stdio, answering a process's first
subscribe only when told), hosts over real HTTP on 127.0.0.1; no timing.
"""

from __future__ import annotations

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import make_gateway, serve_http, stdio_entry, until
from tests.test_subscription_lifetimes import WATCHED, seen

pytestmark = pytest.mark.anyio
NOTE = "file://watched/notes/b"  # as hosts name it; upstream: file:///notes/b (sorted first)


async def test_an_unsubscribe_before_the_replay_reached_it_is_not_sent() -> None:
    gateway = make_gateway({"watched": stdio_entry(
        "watched.py", "--hold-first-subscribe", protocol="legacy",
        env={"WATCHED_TEMPLATE": "file:///notes/{name}"})})
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops, \
            Client(f"{base}/mcp", mode="legacy") as host:
        replica = gateway.manager.services["watched"].replicas[0]
        first = replica.pid
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.session.subscribe_resource, NOTE)   # held upstream
            assert await seen(ops, 1) == ["subscribe file:///notes/b"]
            await ops.call_tool("watched_let_subscribe", {})
        await host.session.subscribe_resource(WATCHED)
        assert await seen(ops, 2) == ["subscribe file:///notes/b", "subscribe watch://counter"]

        replica.reconnect()   # a new process: the replay's first subscribe is held there
        await until(lambda: replica.pid not in (None, first)
                    and replica.state is UpstreamState.READY)
        assert await seen(ops, 1) == ["subscribe file:///notes/b"]
        await host.session.unsubscribe_resource(WATCHED)   # not replayed yet
        assert await seen(ops) == ["subscribe file:///notes/b"], \
            "the new session was told to unsubscribe what it was never asked to subscribe to"
        await ops.call_tool("watched_let_subscribe", {})
        await until(lambda: replica.subscriptions() == {"file:///notes/b"})
        assert await seen(ops) == ["subscribe file:///notes/b"]   # nor replayed
