"""A handshake-era host's ``resources/subscribe`` across reloads that narrow and widen
its token's ``servers``.

Its updates were filtered out at once (``test_restricted_names.py``), but the gateway
stayed subscribed upstream: the server went on sending updates nobody got, for as long
as the host stayed.  The upstream is ``tests/servers/watched.py`` (stdio, recording the
subscribe and unsubscribe requests it gets); hosts reach the gateway over real HTTP on
127.0.0.1.  The first test failed on the code it was written against.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from tests.fixtures import make_gateway, serve_http, until
from tests.test_subscription_lifetimes import MINE, OPS, SUBSCRIBE, UNSUBSCRIBE, WATCHED, seen
from tests.test_subscriptions_across_reloads import Updates, entries, reload, writer

pytestmark = pytest.mark.anyio


async def test_a_narrowed_hosts_subscription_is_let_go_of_and_taken_up_when_widened(
        tmp_path: Path) -> None:
    """The narrowed token's subscription is let go of upstream at the reload (nobody
    else holds it); the host still holds it (it was never told), so a reload giving the
    token the server back subscribes it again, and its updates reach the host."""
    config = tmp_path / "servers.yaml"
    write = writer(config)
    servers = entries("watched", "other")
    gateway = make_gateway(servers, options={"auth": write(servers)}, config=config)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, \
            Client(f"{base}/mcp", auth=MINE, mode="legacy", message_handler=updates) as mo:
        await mo.session.subscribe_resource(WATCHED)
        write(servers, ["other"])
        await reload(gateway)
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
        assert WATCHED in gateway.hub._subscribers and not gateway.hub._homes
        write(servers, ["other", "watched"])
        await reload(gateway)
        assert await seen(ops, 3) == [SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE]
        await ops.call_tool("watched_bump", {})
        await until(lambda: updates.uris == [WATCHED])
        await mo.session.unsubscribe_resource(WATCHED)
        assert await seen(ops, 4) == [SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE, UNSUBSCRIBE]
    assert not gateway.hub._subscribers and not gateway.hub._homes


async def test_a_narrowed_hosts_subscription_another_host_holds_stays(tmp_path: Path) -> None:
    """Another host (here one whose token is not narrowed) holding the URI at the same
    server keeps the upstream subscribed: it still gets its updates, the narrowed one
    none.  Once it leaves, nobody holding the URI may use the server: it is let go of
    then, and taken up again when the narrowed token gets the server back."""
    config = tmp_path / "servers.yaml"
    write = writer(config)
    servers = entries("watched", "other")
    gateway = make_gateway(servers, options={"auth": write(servers)}, config=config)
    mine, theirs = Updates(), Updates()
    mover = gateway.host_requests.mover
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=MINE, mode="legacy", message_handler=mine) as mo:
        async with Client(f"{base}/mcp", auth=OPS, mode="legacy",
                          message_handler=theirs) as ops:
            await mo.session.subscribe_resource(WATCHED)
            await ops.session.subscribe_resource(WATCHED)
            write(servers, ["other"])
            await reload(gateway)
            await until(lambda: mover.followed == gateway.manager.view.generation)
            await ops.call_tool("watched_bump", {})
            await until(lambda: WATCHED in theirs.uris)   # once per host subscribed
            assert await seen(ops) == [SUBSCRIBE, SUBSCRIBE]
        async with Client(f"{base}/mcp", auth=OPS) as ops:
            assert await seen(ops, 3) == [SUBSCRIBE, SUBSCRIBE, UNSUBSCRIBE]
            assert WATCHED in gateway.hub._subscribers and not gateway.hub._homes
            assert mine.uris == []
            write(servers, ["other", "watched"])
            await reload(gateway)
            assert await seen(ops, 4) == [SUBSCRIBE, SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE]
            await ops.call_tool("watched_bump", {})
            await until(lambda: mine.uris)
            assert set(mine.uris) == {WATCHED}
