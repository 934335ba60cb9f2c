"""One upstream URI subscribed by hosts in two forms: ``file://ns//a`` (a ``file:///``
template expanded as listed) and ``file://ns/a`` (as URL parsers, and the lists of file
resources, write it).  Both go upstream as ``file:///notes/a``, to one subscription.

Each host is sent the update in the form it subscribed with; the upstream stays
subscribed while either form is held: the first form's last host letting go
unsubscribed it, and the other form's hosts got no more updates.  The upstream is
``tests/servers/watched.py`` (stdio, with a ``file:///notes/{name}`` template), hosts
reach the gateway over real HTTP on 127.0.0.1.  Failed on the code it was written
against.
"""

from __future__ import annotations

import pytest
from fastmcp import Client
from mcp.client.subscriptions import listen

from tests.fixtures import make_gateway, serve_http, stdio_entry, until
from tests.test_subscription_lifetimes import seen
from tests.test_subscriptions_across_reloads import Updates, next_update

pytestmark = pytest.mark.anyio

EXPANDED, PARSED = "file://watched//notes/a", "file://watched/notes/a"
SUBSCRIBE, UNSUBSCRIBE = "subscribe file:///notes/a", "unsubscribe file:///notes/a"


def templated_gateway() -> object:
    return make_gateway({"watched": stdio_entry(
        "watched.py", protocol="legacy", env={"WATCHED_TEMPLATE": "file:///notes/{name}"})})


async def test_both_forms_of_a_file_uri_get_updates_until_the_last_lets_go() -> None:
    gateway = templated_gateway()
    expanded, parsed = Updates(), Updates()
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops, \
            Client(f"{base}/mcp", mode="legacy", message_handler=expanded) as one, \
            Client(f"{base}/mcp", mode="legacy", message_handler=parsed) as other:
        templates = [t.uriTemplate for t in await one.list_resource_templates()]
        assert templates == ["file://watched//notes/{name}"]
        await one.session.subscribe_resource(EXPANDED)
        await other.session.subscribe_resource(PARSED)
        await ops.call_tool("watched_bump", {"uri": "file:///notes/a"})
        await until(lambda: expanded.uris and parsed.uris)
        assert set(expanded.uris) == {EXPANDED} and set(parsed.uris) == {PARSED}
        await one.session.unsubscribe_resource(EXPANDED)
        assert await seen(ops) == [SUBSCRIBE, SUBSCRIBE]   # still held as PARSED
        before = len(parsed.uris)
        await ops.call_tool("watched_bump", {"uri": "file:///notes/a"})
        await until(lambda: len(parsed.uris) > before)
        assert set(parsed.uris) == {PARSED}
        await other.session.unsubscribe_resource(PARSED)
        assert await seen(ops, 3) == [SUBSCRIBE, SUBSCRIBE, UNSUBSCRIBE]


async def test_a_listen_stream_keeps_its_form_when_a_host_of_the_other_leaves() -> None:
    gateway = templated_gateway()
    async with serve_http(gateway.http_app("http")) as base, Client(f"{base}/mcp") as ops, \
            Client(f"{base}/mcp") as modern:
        async with listen(modern.session, resource_subscriptions=[PARSED]) as stream:
            assert stream.honored.resource_subscriptions == [PARSED]
            async with Client(f"{base}/mcp", mode="legacy") as leaving:
                await leaving.session.subscribe_resource(EXPANDED)
            await until(lambda: EXPANDED not in gateway.hub._subscribers)
            assert await seen(ops) == [SUBSCRIBE, SUBSCRIBE]
            await ops.call_tool("watched_bump", {"uri": "file:///notes/a"})
            assert (await next_update(stream)).uri == PARSED
        assert await seen(ops, 3) == [SUBSCRIBE, SUBSCRIBE, UNSUBSCRIBE]
