"""Hosts' resource subscriptions of a server with several replicas: one replica is
subscribed for them, and when it is down (or a restart carried them to one that does
not come up) a replica that is up takes them over.

The replicas are ``tests/servers/watched.py`` (stdio subprocesses that record the
subscribe and unsubscribe requests they get); the host reaches the gateway over real
HTTP on 127.0.0.1.  Each test failed on the code it was written against.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from fast_mcp_gateway.upstream.model import RestartPolicy
from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import PY, SERVERS, WITHIN, make_gateway, serve_http, until
from tests.test_subscription_lifetimes import SUBSCRIBE, WATCHED, seen
from tests.test_subscriptions_across_reloads import Updates, reload

pytestmark = pytest.mark.anyio
GOOD = {"command": PY, "args": [str(SERVERS / "watched.py")]}
DOWN = {"command": PY, "args": ["-c", "raise SystemExit(3)"]}   # never comes up


def watched(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"watched": {"protocol": "legacy", "instances": list(instances)}}


async def test_a_restart_that_carried_subscriptions_to_a_replica_that_is_down(
        tmp_path: Path) -> None:
    """A reload that restarted a server of two replicas carried hosts' subscriptions to
    its first replica, whatever came of it: one that did not come up left the host with
    no updates while the other served every call.  The replica that is up takes them
    over, and the host gets its updates."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": watched(GOOD, GOOD)}))
    gateway = make_gateway(watched(GOOD, GOOD), config=config)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops, \
            Client(f"{base}/mcp", mode="legacy", message_handler=updates) as host:
        await host.session.subscribe_resource(WATCHED)
        config.write_text(json.dumps({"servers": watched(DOWN, GOOD)}))
        assert (await reload(gateway))["restarted"] == ["watched"]
        first, second = gateway.manager.services["watched"].replicas
        assert await second.wait_until(lambda: second.state is UpstreamState.READY, WITHIN)
        assert first.state is not UpstreamState.READY
        assert await seen(ops, 1) == [SUBSCRIBE]   # the second replica: the one up
        await ops.call_tool("watched_bump", {})
        await until(lambda: updates.uris == [WATCHED])
        assert not first.subscriptions()   # not replayed should it come up


async def test_the_subscriptions_of_a_replica_that_went_down_move_to_one_up() -> None:
    """The same without a restart: the replica holding the subscription crashed and is
    not back yet (its restart waits out a long backoff); the other, up, takes it over.
    Once the first is back, another host's subscription goes to the replica holding the
    URI (it went to the first, the primary: both were subscribed then)."""
    slow = RestartPolicy(initial=3600.0, maximum=3600.0, jitter=0.0)
    gateway = make_gateway(watched(GOOD, GOOD), restart=slow)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops, \
            Client(f"{base}/mcp", mode="legacy", message_handler=updates) as host:
        await host.session.subscribe_resource(WATCHED)
        holder, other = gateway.manager.services["watched"].replicas
        assert holder.subscriptions() == {"watch://counter"}   # the primary's
        crashed = holder.pid
        assert crashed is not None
        os.kill(crashed, signal.SIGKILL)
        assert await holder.wait_until(lambda: holder.state is not UpstreamState.READY,
                                       WITHIN)
        assert await seen(ops, 1) == [SUBSCRIBE]   # the replica up: the only one now
        await ops.call_tool("watched_bump", {})
        await until(lambda: updates.uris == [WATCHED])
        assert other.subscriptions() == {"watch://counter"}
        assert not holder.subscriptions()
        holder.reconnect()   # back before its backoff is over
        assert await holder.wait_until(lambda: holder.state is UpstreamState.READY, WITHIN)
        async with Client(f"{base}/mcp", mode="legacy") as second:
            await second.session.subscribe_resource(WATCHED)
            assert other.subscriptions() == {"watch://counter"}
            assert not holder.subscriptions()
