"""What ``SubscriptionMover`` (``front/moving.py``) does at each catalog build, counted.

The upstreams are stdio subprocesses: ``tests/servers/watched.py`` (records the
subscribe and unsubscribe requests it gets) and ``tests/servers/shifty.py`` (changes a
tool's description on request, saying its list changed).  Hosts reach the gateway over
real HTTP on 127.0.0.1.  Each test failed on the code it was written against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from mcp.client.subscriptions import listen

from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import make_gateway, serve_http, stdio_entry, until
from tests.test_subscription_lifetimes import SUBSCRIBE, WATCHED, seen

pytestmark = pytest.mark.anyio


async def test_builds_that_change_no_held_uris_route_resolve_nothing(tmp_path: Path) -> None:
    """A server changing its lists in a loop (here a tool's description) made the mover
    resolve every held URI and wake every listen stream at each of its builds.  Builds
    that change neither where a held URI is served nor a server's readiness resolve
    nothing and wake no stream."""
    servers = {"watched": stdio_entry("watched.py", protocol="legacy"),
               "sh": stdio_entry("shifty.py", env={"SHIFTY_STATE": str(tmp_path / "d")})}
    gateway = make_gateway(servers)
    hub, mover, manager = gateway.hub, gateway.host_requests.mover, gateway.manager
    resolved: list[str] = []
    wakes: list[None] = []
    origin, woken = mover._origin, hub.standings_changed

    def counted_origin(uri: str, visible: Any) -> Any:
        resolved.append(uri)
        return origin(uri, visible)

    def counted_wake() -> None:
        wakes.append(None)
        woken()

    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp") as ops, Client(f"{base}/mcp") as host, \
            Client(f"{base}/mcp", mode="legacy") as old:
        await old.session.subscribe_resource(WATCHED)
        async with listen(host.session, resource_subscriptions=[WATCHED]) as stream:
            assert stream.honored.resource_subscriptions == [WATCHED]
            await until(lambda: all(s.state is UpstreamState.READY
                                    for s in manager.services.values())
                        and mover.followed == manager.view.generation)
            before = manager.view.generation
            mover._origin = counted_origin   # type: ignore[method-assign]
            hub.standings_changed = counted_wake   # type: ignore[method-assign]
            for n in range(5):
                await ops.call_tool("sh_shift", {"description": f"Look a word up ({n})."})
                # its list_changed is handled on its own: wait for that build
                await until(lambda n=n: manager.view.generation > before + n)
            await until(lambda: mover.followed == manager.view.generation)
            assert resolved == [] and wakes == []
            assert await seen(ops) == [SUBSCRIBE, SUBSCRIBE]   # nothing moved
