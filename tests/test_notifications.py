"""Change notifications across the gateway: subscriptions, listen streams, long names."""

from __future__ import annotations

import re

import anyio
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler

from tests.fixtures import long_named_server, make_gateway, memory_entry, watched_server

pytestmark = pytest.mark.anyio


class _Updates(MessageHandler):
    def __init__(self) -> None:
        self.uris: list[str] = []
        self.event = anyio.Event()

    async def on_resource_updated(self, message: types.ResourceUpdatedNotification) -> None:
        self.uris.append(str(message.params.uri))
        self.event.set()


async def test_resource_subscriptions_are_forwarded_both_ways() -> None:
    gateway = make_gateway({"watch": memory_entry("watch", protocol="legacy")},
                           {"watch": watched_server()})
    updates = _Updates()
    async with Client(gateway.server, mode="legacy", message_handler=updates) as client:
        caps = client.initialize_result.capabilities
        assert caps.resources is not None and caps.resources.subscribe is True
        await client.session.subscribe_resource("watch://watch/counter")
        await client.call_tool("watch_bump", {})
        with anyio.fail_after(10):
            await updates.event.wait()
        assert updates.uris == ["watch://watch/counter"]
        (content,) = await client.read_resource("watch://watch/counter")
        assert content.text == "1"
        await client.session.unsubscribe_resource("watch://watch/counter")


async def test_subscribing_to_a_server_without_subscriptions_is_a_clear_error() -> None:
    from tests.fixtures import alpha_server

    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with Client(gateway.server, mode="legacy") as client:
        with pytest.raises(Exception, match="does not support resource subscriptions"):
            await client.session.subscribe_resource("data://alpha/config")


async def test_list_changed_from_a_2026_upstream_listen_stream() -> None:
    gateway = make_gateway({"watch": memory_entry("watch", protocol="2026-07-28")},
                           {"watch": watched_server()})
    async with Client(gateway.server) as client:
        upstream = gateway.manager.get("watch").replicas[0]
        assert upstream.protocol_version == "2026-07-28"
        await client.call_tool("watch_grow", {"name": "sprout"})
        seen = await upstream.wait_until(
            lambda: any(t.name == "sprout" for t in upstream.catalog.tools), 10)
        assert seen, "the gateway never refreshed after the upstream's listen event"
        assert (await client.call_tool("watch_sprout", {})).content[0].text == "sprout works"


async def test_over_long_names_are_shortened_and_still_callable() -> None:
    gateway = make_gateway({"reports": memory_entry("reports")}, {"reports": long_named_server()})
    async with Client(gateway.server) as client:
        names = [t.name for t in await client.list_tools() if t.name.startswith("reports_")]
        assert len(names) == 2
        assert all(len(n) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names)
        results = {(await client.call_tool(n, {})).data for n in names}
        assert results == {"alpha", "beta"}
