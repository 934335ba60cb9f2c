"""A host's subscription in flight while another host lets go of the URI, or while a
catalog build moves it.

The hub counted a host as holding a URI only once its upstream subscribe had been
answered: a host that let go of the URI meanwhile (the last one to hold it, as the hub
saw it) unsubscribed the upstream, after the new host's subscribe had reached it -- the
new host was answered "subscribed" and got no update ever.  A real upstream
(``tests/servers/watched.py``, stdio, answering its second subscribe only when told)
and hosts over real HTTP on 127.0.0.1; no timing.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client
from mcp.client.subscriptions import ResourceUpdated, listen

from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import WITHIN, make_gateway, serve_http, stdio_entry, until
from tests.test_subscription_lifetimes import SUBSCRIBE, UNSUBSCRIBE, WATCHED, seen

pytestmark = pytest.mark.anyio


async def test_a_subscribe_in_flight_keeps_the_upstream_subscribed() -> None:
    gateway = make_gateway({"watched": stdio_entry("watched.py", "--hold-second-subscribe",
                                                   protocol="legacy")})
    updated = anyio.Event()

    async def updates(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.set()

    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops, \
            Client(f"{base}/mcp", mode="legacy") as leaving, \
            Client(f"{base}/mcp", mode="legacy", message_handler=updates) as coming:
        await leaving.session.subscribe_resource(WATCHED)
        async with anyio.create_task_group() as group:
            group.start_soon(coming.session.subscribe_resource, WATCHED)
            assert await seen(ops, 2) == [SUBSCRIBE, SUBSCRIBE]  # held upstream
            await leaving.session.unsubscribe_resource(WATCHED)
            await ops.call_tool("watched_let_subscribe", {})
        assert await seen(ops) == [SUBSCRIBE, SUBSCRIBE], "the upstream let go"
        await ops.call_tool("watched_bump", {})
        with anyio.fail_after(WITHIN):
            await updated.wait()


async def test_a_refused_subscribe_keeps_what_other_hosts_hold() -> None:
    """A host's subscribe the upstream refused took the URI out of what the replica
    holds subscribed (replayed on its next session: a reconnect, a restart), while
    another host held it: after the next reconnect that host got no update."""
    gateway = make_gateway({"watched": stdio_entry(
        "watched.py", "--refuse-second-subscribe", protocol="legacy")})
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops, \
            Client(f"{base}/mcp", mode="legacy") as holding, \
            Client(f"{base}/mcp", mode="legacy") as refused:
        await holding.session.subscribe_resource(WATCHED)
        with pytest.raises(Exception, match="refused on purpose"):
            await refused.session.subscribe_resource(WATCHED)
        assert await seen(ops) == [SUBSCRIBE, SUBSCRIBE]
        assert gateway.manager.services["watched"].subscriptions() == {"watch://counter"}


SHARED = "watch://watched/counter"   # root's own URI; as a link, watched's


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_a_subscribe_racing_a_build_that_moves_its_uri_ends_where_it_is_served(
        era: str) -> None:
    """``SHARED`` is root's (``namespace: ""``) while root is up, else watched's (a
    link into its namespace).  A host subscribes while root is disabled: watched is
    asked, and holds its answer while root comes back (the build that gives ``SHARED``
    to root, gated by watched's answer).  A listen stream's URI, held by the hub only
    once watched answered, stayed at watched (the mover had looked at what was held
    before): root's updates never reached the host.  Both eras end at root, watched
    let go of."""
    gateway = make_gateway({
        "root": stdio_entry("watched.py", protocol="legacy", namespace="",
                            env={"WATCHED_URI": SHARED}),
        "watched": stdio_entry("watched.py", "--hold-first-subscribe", protocol="legacy")})
    manager, mover = gateway.manager, gateway.host_requests.mover
    root = manager.services["root"]
    updated = anyio.Event()

    async def updates(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.set()

    def settled() -> bool:
        return mover.followed == manager.view.generation

    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops, \
            Client(f"{base}/mcp", mode=era, message_handler=updates) as host:
        await until(lambda: root.state is UpstreamState.READY
                    and SHARED in manager.view.resources and settled())
        root.set_enabled(False)
        await until(lambda: SHARED not in manager.view.resources and settled())
        answered = anyio.Event()
        async with anyio.create_task_group() as group:

            async def subscribe() -> None:
                if era == "legacy":
                    await host.session.subscribe_resource(SHARED)
                    answered.set()
                    return
                async with listen(host.session, resource_subscriptions=[SHARED]) as stream:
                    assert stream.honored.resource_subscriptions == [SHARED]
                    answered.set()
                    with anyio.fail_after(WITHIN):
                        assert isinstance(await stream.__anext__(), ResourceUpdated)
                    updated.set()

            group.start_soon(subscribe)
            assert await seen(ops, 1) == [SUBSCRIBE]   # asked; its answer held
            root.set_enabled(True)
            await until(lambda: root.state is UpstreamState.READY
                        and SHARED in manager.view.resources and settled())
            await ops.call_tool("watched_let_subscribe", {})
            with anyio.fail_after(WITHIN):
                await answered.wait()
            assert (await ops.call_tool("seen", {"count": 1})).data == [f"subscribe {SHARED}"]
            assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
            assert [home.server for _, home in gateway.hub.homes()] == ["root"]
            await ops.call_tool("bump", {})
            with anyio.fail_after(WITHIN):
                await updated.wait()
