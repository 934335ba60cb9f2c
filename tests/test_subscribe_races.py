"""A host's ``resources/subscribe`` in flight while another host lets go of the URI.

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

from tests.fixtures import WITHIN, make_gateway, serve_http, stdio_entry
from tests.test_subscription_lifetimes import SUBSCRIBE, WATCHED, seen

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
