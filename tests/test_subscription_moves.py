"""What ``SubscriptionMover`` (``front/moving.py``) does at each catalog build, counted.

The upstreams are stdio subprocesses: ``tests/servers/watched.py`` (records the
subscribe and unsubscribe requests it gets) and ``tests/servers/shifty.py`` (changes a
tool's description on request, saying its list changed).  Hosts reach the gateway over
real HTTP on 127.0.0.1.  Each test failed on the code it was written against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from mcp.client.subscriptions import ResourceUpdated, listen

from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import make_gateway, serve_http, stdio_entry, until
from tests.test_subscription_lifetimes import (
    OPS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    WATCHED,
    ended,
    seen,
)
from tests.test_subscriptions_across_reloads import Updates, next_update

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


SHARED = "watch://watched/counter"   # root's own URI, and watched's (its namespace's)
ROOT_SAW = f"subscribe {SHARED}"
A, B = "a-token-of-root-only-0123", "b-token-of-watched-only-0123"


def two_homes(config: Path | None = None) -> Any:
    """'root' (``namespace: ""``) lists ``SHARED``; 'watched' (namespace 'watched') is
    what ``SHARED`` names as a link.  Token A may use root only, B watched only, OPS
    either.  ``config``: written as its servers.yaml (to reload)."""
    servers = {"root": stdio_entry("watched.py", protocol="legacy", namespace="",
                                   env={"WATCHED_URI": SHARED}),
               "watched": stdio_entry("watched.py", protocol="legacy")}
    auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                       {"name": "a", "token": A, "scopes": ["tools"], "servers": ["root"]},
                       {"name": "b", "token": B, "scopes": ["tools"], "servers": ["watched"]}]}
    if config is None:
        return make_gateway(servers, options={"auth": auth})
    config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": servers}))
    return make_gateway(servers, options={"auth": auth}, config=config)


async def test_callers_a_uri_resolves_differently_for_are_subscribed_apart() -> None:
    """``SHARED`` is root's for token A and, as a link, watched's for token B: the URI
    had one home, so B's subscription displaced A's (root unsubscribed: A got no more
    updates) and the mover moved B's to root (B may not use it: B got none).  Each
    caller's subscription lives where it resolves for that caller; both get their
    server's updates, and each host's leaving lets go of its own."""
    gateway = two_homes()
    a_updates, b_updates = Updates(), Updates()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops:
        async with Client(f"{base}/mcp", auth=A, mode="legacy",
                          message_handler=a_updates) as a, \
                Client(f"{base}/mcp", auth=B, mode="legacy",
                       message_handler=b_updates) as b:
            await a.session.subscribe_resource(SHARED)
            await b.session.subscribe_resource(SHARED)
            assert (await ops.call_tool("seen", {"count": 1})).data == [ROOT_SAW]
            assert await seen(ops, 1) == [SUBSCRIBE]
            await ops.call_tool("bump", {})
            await until(lambda: a_updates.uris == [SHARED])
            await ops.call_tool("watched_bump", {})
            await until(lambda: b_updates.uris == [SHARED])
            assert a_updates.uris == [SHARED]
            assert (await ops.call_tool("seen", {"count": 1})).data == [ROOT_SAW]
        assert (await ops.call_tool("seen", {"count": 2})).data == [
            ROOT_SAW, f"unsubscribe {SHARED}"]
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
    assert not gateway.hub._homes


async def test_listen_streams_a_uri_resolves_differently_for_get_their_servers_updates(
        tmp_path: Path) -> None:
    """The same for 2026-07-28 listen streams: neither displaces the other's, and each
    is sent the updates of the server it holds the URI at only (an update is a
    ``ServedUpdate`` of its server)."""
    config = tmp_path / "servers.yaml"
    gateway = two_homes(config)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=A) as a, \
            Client(f"{base}/mcp", auth=B) as b, \
            listen(a.session, resource_subscriptions=[SHARED]) as a_stream:
        assert a_stream.honored.resource_subscriptions == [SHARED]
        async with listen(b.session, resource_subscriptions=[SHARED]) as b_stream:
            assert b_stream.honored.resource_subscriptions == [SHARED]
            await ops.call_tool("bump", {})
            assert isinstance(await next_update(a_stream), ResourceUpdated)
            await ops.call_tool("watched_bump", {})
            assert isinstance(await next_update(b_stream), ResourceUpdated)
            # b's stream ends once 'watched' is removed: root's update is not left in it
            saved = json.loads(config.read_text())
            del saved["servers"]["watched"]
            config.write_text(json.dumps(saved))
            assert (await gateway.reload_config()).removed == ["watched"]
            assert await ended(b_stream) == []
        assert (await ops.call_tool("seen", {"count": 1})).data == [ROOT_SAW]
