"""Hosts' resource subscriptions when a reload gives an exposed URI to another server
(two servers' namespaces swapped) while hosts hold it.

Both servers restart, each process starting on its own: which one is up first is up to
them (under load, either).  The restarted 'watched' (namespace 'was' now) carries the
subscription; if it is up first, its first session takes it up and the move to 'other'
lets go of it there; if 'other' is up first, the move lets go of it before 'watched'
has a session, and 'watched' is never subscribed.  The first test assumed the first
order and failed when the second came (its ``was_seen`` never got the two requests it
waited for, in a full run): each test now holds the other server's process before it
serves (``WATCHED_RELEASE``, a file) until its own order is reached.

The upstreams are ``tests/servers/watched.py`` (stdio subprocesses recording the
subscribe and unsubscribe requests they get); hosts reach the gateway over real HTTP
on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from mcp.client.subscriptions import ResourceUpdated, listen

from fast_mcp_gateway import Gateway
from tests.fixtures import WITHIN, serve_http, until
from tests.test_subscriptions_across_reloads import (
    MINE,
    OPS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    WATCHED,
    Updates,
    next_update,
    reload,
    seen,
    watched_and_other,
)

pytestmark = pytest.mark.anyio


def swapped(servers: dict[str, Any], held: str, release: Path) -> dict[str, Any]:
    """``servers`` with 'other' in the namespace 'watched' had, and 'watched' in 'was':
    ``WATCHED`` is other's, and the tools ``watched_*`` too (``was_*`` are watched's);
    the server ``held`` serves once ``release`` exists (its connect window, 10 s in
    tests, is as long as the other's start may take: an idle process is not given more)."""
    swapped = {"watched": {**servers["watched"], "namespace": "was"},
               "other": {**servers["other"], "namespace": "watched"}}
    swapped[held] = {**swapped[held], "timeouts": {"connect": WITHIN},
                     "env": {**swapped[held]["env"], "WATCHED_RELEASE": str(release)}}
    return swapped


async def swap(gateway: Gateway, write: Any, servers: dict[str, Any], held: str,
               first_up: Any, tmp_path: Path) -> None:
    """Reload into ``swapped`` servers, ``held`` serving only once ``first_up()`` (the
    other's awaited order) returned."""
    release = tmp_path / "release"
    write(swapped(servers, held, release))
    async with anyio.create_task_group() as tg:

        async def reloaded() -> None:
            report = await reload(gateway)
            assert sorted(report["restarted"]) == ["other", "watched"], report

        tg.start_soon(reloaded)
        await first_up()
        release.touch()


async def test_a_uri_a_reload_gives_to_another_server_is_subscribed_there(
        tmp_path: Path) -> None:
    """A reload that gave an exposed URI to another server while hosts held it left the
    old server subscribed upstream (sending updates the gateway dropped) and never
    subscribed the new one: hosts of both eras got no more updates.  The new server is
    subscribed once for both, the old one unsubscribed (here up first: its first
    session took up the subscription it carried); its updates reach both hosts, and
    their leaving unsubscribes it."""
    gateway, write, servers = watched_and_other(tmp_path)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=MINE) as mo:
        async with Client(f"{base}/mcp", auth=MINE, mode="legacy",
                          message_handler=updates) as old:
            await old.session.subscribe_resource(WATCHED)
            async with listen(mo.session, resource_subscriptions=[WATCHED]) as stream:
                assert stream.honored.resource_subscriptions == [WATCHED]

                async def was_subscribed() -> None:   # its first session's replay
                    was = gateway.manager.services
                    await until(lambda: was["watched"].config.namespace == "was")
                    result = await ops.call_tool("was_seen", {"count": 1})
                    assert result.data == [SUBSCRIBE]

                await swap(gateway, write, servers, "other", was_subscribed, tmp_path)
                # 'watched' restarted: the subscription it carried is let go of.
                result = await ops.call_tool("was_seen", {"count": 2})
                assert result.data == [SUBSCRIBE, UNSUBSCRIBE]
                assert await seen(ops, 1) == [SUBSCRIBE]   # 'other', serving WATCHED
                await ops.call_tool("watched_bump", {})
                event = await next_update(stream)
                assert isinstance(event, ResourceUpdated) and event.uri == WATCHED, event
                await until(lambda: updates.uris == [WATCHED])
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
    assert not gateway.hub._homes


async def test_a_uri_given_away_before_its_old_server_is_up_never_subscribes_it(
        tmp_path: Path) -> None:
    """The same when the new server is up first: the URI is moved to it before the old
    one (restarted) has a session, and the old one is never subscribed -- nothing to
    let go of there (passed before too: the order the first test's failure met)."""
    gateway, write, servers = watched_and_other(tmp_path)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=MINE) as mo:
        async with Client(f"{base}/mcp", auth=MINE, mode="legacy",
                          message_handler=updates) as old:
            await old.session.subscribe_resource(WATCHED)
            async with listen(mo.session, resource_subscriptions=[WATCHED]) as stream:
                assert stream.honored.resource_subscriptions == [WATCHED]

                async def moved() -> None:   # to 'other', up and subscribed
                    await until(lambda: [home.server for _, home in gateway.hub.homes()]
                                == ["other"])

                await swap(gateway, write, servers, "watched", moved, tmp_path)
                assert await seen(ops) == [SUBSCRIBE]   # 'other', serving WATCHED
                was = gateway.manager.services["watched"]
                assert not was.subscriptions()   # nothing replayed on its first session
                assert (await ops.call_tool("was_seen", {"count": 0})).data == []
                await ops.call_tool("watched_bump", {})
                event = await next_update(stream)
                assert isinstance(event, ResourceUpdated) and event.uri == WATCHED, event
                await until(lambda: updates.uris == [WATCHED])
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
        assert (await ops.call_tool("was_seen", {"count": 0})).data == []
    assert not gateway.hub._homes
