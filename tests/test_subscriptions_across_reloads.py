"""Hosts' resource subscriptions across what replaces an upstream's session: a reload
that restarts the server, a crash of its process, a reload that removes it, and a reload
that narrows what a listening token may reach.

The upstream is ``tests/servers/watched.py`` (a stdio subprocess that records the
subscribe and unsubscribe requests it gets); hosts reach the gateway over real HTTP on
127.0.0.1.  Each test failed on the code it was written against, unless it says so.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from mcp.client.subscriptions import ResourceUpdated, listen

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import WITHIN, make_gateway, serve_http, stdio_entry, until
from tests.test_subscription_lifetimes import (
    MINE,
    OPS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    WATCHED,
    ended,
    seen,
)

pytestmark = pytest.mark.anyio
OTHER = "watch://other/counter"


def entries(*names: str, edition: int = 1) -> dict[str, Any]:
    """Watched servers named ``names``; another ``edition`` is a restart of each."""
    return {name: stdio_entry("watched.py", protocol="legacy",
                              env={"WATCHED_EDITION": str(edition)}) for name in names}


def watched_and_other(tmp_path: Path) -> tuple[Gateway, Any, dict[str, Any]]:
    """A gateway of the watched servers 'watched' and 'other', its servers.yaml's
    ``writer`` and those two entries."""
    config = tmp_path / "servers.yaml"
    write = writer(config)
    servers = entries("watched", "other")
    return (make_gateway(servers, options={"auth": write(servers)}, config=config), write,
            servers)


def writer(config: Path) -> Any:
    """``write(servers, mine=...)``: ``config`` as a servers.yaml of ``servers`` whose
    auth has the admin token ``OPS`` and ``MINE`` (scope tools, limited to the servers
    ``mine`` if given); returns the auth section written."""
    def write(servers: dict[str, Any], mine: list[str] | None = None) -> dict[str, Any]:
        token: dict[str, Any] = {"name": "mo", "token": MINE, "scopes": ["tools"]}
        if mine is not None:
            token["servers"] = mine
        auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}, token]}
        config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": servers}))
        return auth

    return write


class Updates(MessageHandler):
    """A handshake-era host's ``resources/updated`` notices, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    async def on_resource_updated(self, message: Any) -> None:
        self.uris.append(str(message.params.uri))


async def reload(gateway: Any) -> dict[str, Any]:
    report = await gateway.reload_config()
    assert report.error is None, report
    return dict(report.model_dump())


async def next_update(stream: Any) -> Any:
    with anyio.fail_after(WITHIN):
        return await stream.__anext__()


async def test_a_restart_keeps_a_handshake_hosts_subscription(tmp_path: Path) -> None:
    """A reload that restarted the server made a new session that was never subscribed:
    the subscribed host silently got no more updates.  The new process is subscribed to
    what the old one was; the host gets its updates, and its leaving unsubscribes the
    new process."""
    config = tmp_path / "servers.yaml"
    write = writer(config)
    gateway = make_gateway(entries("watched"), options={"auth": write(entries("watched"))},
                           config=config)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops:
        async with Client(f"{base}/mcp", auth=MINE, mode="legacy",
                          message_handler=updates) as mo:
            await mo.session.subscribe_resource(WATCHED)
            write(entries("watched", edition=2))
            assert (await reload(gateway))["restarted"] == ["watched"]
            assert await seen(ops, 1) == [SUBSCRIBE]   # the new process's
            await ops.call_tool("watched_bump", {})
            await until(lambda: updates.uris == [WATCHED])
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]


async def test_a_restart_keeps_a_listen_streams_subscription(tmp_path: Path) -> None:
    """The same for a 2026-07-28 host's listen stream; when the stream ends, the new
    process (the server's session now) is unsubscribed."""
    config = tmp_path / "servers.yaml"
    write = writer(config)
    gateway = make_gateway(entries("watched"), options={"auth": write(entries("watched"))},
                           config=config)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=MINE) as mo:
        async with listen(mo.session, resource_subscriptions=[WATCHED]) as stream:
            assert stream.honored.resource_subscriptions == [WATCHED]
            write(entries("watched", edition=2))
            assert (await reload(gateway))["restarted"] == ["watched"]
            assert await seen(ops, 1) == [SUBSCRIBE]
            await ops.call_tool("watched_bump", {})
            event = await next_update(stream)
            assert isinstance(event, ResourceUpdated) and event.uri == WATCHED, event
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
        assert gateway.hub.streams == 0


async def test_a_restart_keeps_a_2026_upstreams_listen_subscription(tmp_path: Path) -> None:
    """The same for an upstream of the 2026-07-28 era (``tests/servers/pusher.py``),
    which gets no ``resources/subscribe``: the new session's listen stream names the
    URI from its first opening."""
    def pusher(edition: int) -> dict[str, Any]:
        return {"pusher": stdio_entry("pusher.py", protocol="2026-07-28",
                                      env={"PUSHER_EDITION": str(edition)})}

    config = tmp_path / "servers.yaml"
    write = writer(config)
    gateway = make_gateway(pusher(1), options={"auth": write(pusher(1))}, config=config)
    uri = "pusher://pusher/counter"
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=MINE) as mo:
        assert gateway.manager.services["pusher"].is_modern
        async with listen(mo.session, resource_subscriptions=[uri]) as stream:
            assert stream.honored.resource_subscriptions == [uri]
            write(pusher(2))
            assert (await reload(gateway))["restarted"] == ["pusher"]
            new = gateway.manager.services["pusher"].replicas[0]
            assert await new.wait_until(lambda: new.listening("pusher://counter"), WITHIN)
            await ops.call_tool("pusher_bump", {})
            event = await next_update(stream)
            assert isinstance(event, ResourceUpdated) and event.uri == uri, event


async def test_a_crashed_upstream_is_subscribed_again() -> None:
    """A server whose process was killed (-9) is restarted by its supervisor: the new
    session is subscribed to what the old one was (passed before the change too: the
    replica's change tracker replays its subscriptions on each session)."""
    gateway = make_gateway(entries("watched"))
    updates = Updates()
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp") as ops,
        Client(f"{base}/mcp", mode="legacy", message_handler=updates) as host,
    ):
        await host.session.subscribe_resource(WATCHED)
        replica = gateway.manager.services["watched"].replicas[0]
        crashed = replica.pid
        assert crashed is not None
        os.kill(crashed, signal.SIGKILL)
        assert await replica.wait_until(
            lambda: replica.state is UpstreamState.READY and replica.pid != crashed, WITHIN)
        assert await seen(ops, 1) == [SUBSCRIBE]
        await ops.call_tool("watched_bump", {})
        await until(lambda: updates.uris == [WATCHED])


async def test_a_crashed_2026_upstream_listens_again() -> None:
    """The same for a 2026-07-28 upstream: the new session's listen stream names the
    URI (passed before the change too)."""
    gateway = make_gateway({"pusher": stdio_entry("pusher.py", protocol="2026-07-28")})
    uri = "pusher://pusher/counter"
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp") as ops,
        Client(f"{base}/mcp") as host,
        listen(host.session, resource_subscriptions=[uri]) as stream,
    ):
        assert stream.honored.resource_subscriptions == [uri]
        replica = gateway.manager.services["pusher"].replicas[0]
        crashed = replica.pid
        assert crashed is not None
        os.kill(crashed, signal.SIGKILL)
        assert await replica.wait_until(
            lambda: replica.pid not in (None, crashed) and replica.listening("pusher://counter"),
            WITHIN)
        await ops.call_tool("pusher_bump", {})
        event = await next_update(stream)
        assert isinstance(event, ResourceUpdated) and event.uri == uri, event


async def test_a_reload_that_removes_the_server_drops_its_subscriptions(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reload that removed a server left a listen stream of its URIs open, delivering
    nothing, until its host left.  The stream is ended gracefully at the removal; a
    handshake-era host, never told (no such notice in that era), still holds the URI,
    with no home (nothing held upstream: taken up again if it is served again), and
    nothing is logged as a failure."""
    caplog.set_level(logging.WARNING)
    gateway, write, _ = watched_and_other(tmp_path)
    hub = gateway.hub
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=MINE) as mo:
        async with Client(f"{base}/mcp", auth=OPS, mode="legacy") as ops:
            await ops.session.subscribe_resource(WATCHED)
            await ops.session.subscribe_resource(OTHER)
            async with listen(mo.session, resource_subscriptions=[WATCHED]) as stream:
                assert stream.honored.resource_subscriptions == [WATCHED]
                write(entries("other"))
                assert (await reload(gateway))["removed"] == ["watched"]
                assert await ended(stream) == []
            assert hub.streams == 0
            assert set(hub._subscribers) == {WATCHED, OTHER}
            assert [uri for uri, _ in hub._homes] == [OTHER] and not hub._holdings
        # The host left: 'other', which it still held, is let go of as before.
        assert (await mo.call_tool("other_seen", {"count": 2})).data == [SUBSCRIBE,
                                                                         UNSUBSCRIBE]
    assert not hub._subscribers and not hub._homes
    failures = [r for r in caplog.records if r.name.startswith(
        ("fast_mcp_gateway.front", "fast_mcp_gateway.routing", "fast_mcp_gateway.upstream"))]
    assert not failures, caplog.text


async def test_a_host_unsubscribing_from_a_removed_servers_uri_is_answered(
        tmp_path: Path) -> None:
    """A handshake-era host that unsubscribes from a URI of a server a reload removed,
    as it had subscribed, was told "Unknown resource".  Its unsubscription is answered
    (nothing to let go of upstream); one more is unknown, as for any URI it does not
    hold."""
    gateway, write, _ = watched_and_other(tmp_path)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=MINE, mode="legacy") as mo:
        await mo.session.subscribe_resource(WATCHED)
        write(entries("other"))
        assert (await reload(gateway))["removed"] == ["watched"]
        await mo.session.unsubscribe_resource(WATCHED)
        with pytest.raises(Exception, match="Unknown resource"):
            await mo.session.unsubscribe_resource(WATCHED)
        assert not gateway.hub._subscribers and not gateway.hub._homes


async def test_a_handshake_hosts_uri_is_taken_up_again_when_its_server_is_back(
        tmp_path: Path) -> None:
    """A handshake-era host subscribed to a URI whose server a reload removed got no
    more updates when a later reload gave the server back (its subscription had been
    forgotten, and the host was never told: the era has no such notice), while a listen
    stream took the URI up again.  The new process is subscribed, its updates reach the
    host, and the host's unsubscription lets go of it there (no leak: it was written,
    as ``..._is_let_go_of``, for a host subscribing again by itself)."""
    gateway, write, servers = watched_and_other(tmp_path)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=MINE, mode="legacy", message_handler=updates) as mo:
        await mo.session.subscribe_resource(WATCHED)
        write(entries("other"))
        assert (await reload(gateway))["removed"] == ["watched"]
        write(servers)
        assert (await reload(gateway))["added"] == ["watched"]
        assert await seen(mo, 1) == [SUBSCRIBE]   # the new process
        await mo.call_tool("watched_bump", {})
        await until(lambda: updates.uris == [WATCHED])
        await mo.session.subscribe_resource(WATCHED)   # again: one subscription
        await mo.session.unsubscribe_resource(WATCHED)
        assert await seen(mo, 3) == [SUBSCRIBE, SUBSCRIBE, UNSUBSCRIBE]
        assert not gateway.hub._subscribers and not gateway.hub._homes


async def test_a_handshake_hosts_uri_follows_to_the_server_given_its_namespace(
        tmp_path: Path) -> None:
    """The same when one reload removes the server and gives its namespace to another
    (which serves the URI from then on): that one is subscribed, its updates reach the
    host, and the host's leaving lets go of it."""
    gateway, write, servers = watched_and_other(tmp_path)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops:
        async with Client(f"{base}/mcp", auth=MINE, mode="legacy",
                          message_handler=updates) as mo:
            await mo.session.subscribe_resource(WATCHED)
            write({"other": {**servers["other"], "namespace": "watched"}})
            report = await reload(gateway)
            assert report["removed"] == ["watched"] and report["restarted"] == ["other"]
            assert await seen(ops, 1) == [SUBSCRIBE]   # 'other', serving WATCHED now
            await ops.call_tool("watched_bump", {})
            await until(lambda: updates.uris == [WATCHED])
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
    assert not gateway.hub._subscribers and not gateway.hub._homes


async def test_a_uri_whose_host_left_while_its_server_was_gone_is_not_taken_up(
        tmp_path: Path) -> None:
    """A handshake-era host that leaves while its URI's server is removed holds nothing
    any more: when a reload gives the server back, its process is not subscribed."""
    gateway, write, servers = watched_and_other(tmp_path)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops:
        async with Client(f"{base}/mcp", auth=MINE, mode="legacy") as mo:
            await mo.session.subscribe_resource(WATCHED)
            write(entries("other"))
            assert (await reload(gateway))["removed"] == ["watched"]
        await until(lambda: not gateway.hub._subscribers)
        write(servers)
        assert (await reload(gateway))["added"] == ["watched"]
        service, mover = gateway.manager.services["watched"], gateway.host_requests.mover
        await until(lambda: service.state is UpstreamState.READY
                    and mover.followed == gateway.manager.view.generation)
        assert await seen(ops) == []
    assert not gateway.hub._homes


async def test_a_listen_stream_whose_token_lost_every_server_is_closed(
        tmp_path: Path) -> None:
    """A 2026-07-28 listen stream whose token a reload narrowed to servers none of its
    URIs is of stayed open delivering nothing, holding its slot and the upstream's
    subscription.  It is ended gracefully, as a removed token's stream is, and the
    upstream unsubscribed."""
    config = tmp_path / "servers.yaml"
    write = writer(config)
    servers = entries("watched", "other")
    gateway = make_gateway(servers, options={"auth": write(servers, ["watched"])},
                           config=config)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=MINE) as mo:
        async with listen(mo.session, resource_subscriptions=[WATCHED]) as stream:
            assert stream.honored.resource_subscriptions == [WATCHED]
            write(servers, ["other"])
            await reload(gateway)
            assert await ended(stream) == []
        assert gateway.hub.streams == 0
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]


async def test_a_narrowed_listen_stream_lets_go_of_the_uris_it_lost(tmp_path: Path) -> None:
    """A stream that keeps a URI it may still reach stays open; the upstream of a URI
    its token lost is unsubscribed at the reload (nobody else holds it), not when the
    stream ends."""
    gateway, write, servers = watched_and_other(tmp_path)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=MINE) as mo:
        async with listen(mo.session, resource_subscriptions=[WATCHED, OTHER]) as stream:
            assert stream.honored.resource_subscriptions == [WATCHED, OTHER]
            write(servers, ["other"])
            await reload(gateway)
            assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
            await ops.call_tool("other_bump", {})
            event = await next_update(stream)
            assert isinstance(event, ResourceUpdated) and event.uri == OTHER, event
            assert gateway.hub.streams == 1
        result = await ops.call_tool("other_seen", {"count": 2})
        assert result.data == [SUBSCRIBE, UNSUBSCRIBE]
        assert await seen(ops) == [SUBSCRIBE, UNSUBSCRIBE]   # nothing more


async def test_a_uri_a_listen_stream_lost_is_taken_up_again_when_it_is_back(
        tmp_path: Path) -> None:
    """A 2026-07-28 listen stream that lost a URI at a reload (its server removed) and
    kept another never got the first again when a later reload gave the server back:
    the host's acknowledged filter still named it, and nothing told it otherwise.  The
    URI is subscribed again while the stream is open, its updates delivered, and let
    go of when the stream ends."""
    gateway, write, servers = watched_and_other(tmp_path)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=MINE) as mo:
        async with listen(mo.session, resource_subscriptions=[WATCHED, OTHER]) as stream:
            assert stream.honored.resource_subscriptions == [WATCHED, OTHER]
            write(entries("other"))
            assert (await reload(gateway))["removed"] == ["watched"]
            await until(lambda: WATCHED not in gateway.hub._holdings)   # let go of
            write(servers)
            assert (await reload(gateway))["added"] == ["watched"]
            assert await seen(ops, 1) == [SUBSCRIBE]   # the new process
            await ops.call_tool("watched_bump", {})
            event = await next_update(stream)
            assert isinstance(event, ResourceUpdated) and event.uri == WATCHED, event
            assert gateway.hub.streams == 1
        assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
        result = await ops.call_tool("other_seen", {"count": 2})
        assert result.data == [SUBSCRIBE, UNSUBSCRIBE]


async def test_a_uri_a_narrowed_token_gets_back_is_taken_up_again(tmp_path: Path) -> None:
    """The same for a URI lost because a reload narrowed the token's ``servers``: a
    later reload that gives the server back to the token gives the stream its URI."""
    gateway, write, servers = watched_and_other(tmp_path)
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, Client(f"{base}/mcp", auth=MINE) as mo:
        async with listen(mo.session, resource_subscriptions=[WATCHED, OTHER]) as stream:
            assert stream.honored.resource_subscriptions == [WATCHED, OTHER]
            write(servers, ["other"])
            await reload(gateway)
            assert await seen(ops, 2) == [SUBSCRIBE, UNSUBSCRIBE]
            write(servers, ["other", "watched"])
            await reload(gateway)
            assert await seen(ops, 3) == [SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE]
            await ops.call_tool("watched_bump", {})
            event = await next_update(stream)
            assert isinstance(event, ResourceUpdated) and event.uri == WATCHED, event
        assert await seen(ops, 4) == [SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE, UNSUBSCRIBE]


async def test_a_handshake_hosts_uri_is_taken_up_again_when_its_token_gets_it_back(
        tmp_path: Path) -> None:
    """A URI whose server a reload removed and whose caller's token a reload narrowed
    is not taken up again when the server is back (its caller may not use it); a later
    reload that gives the token the server back, and changes no server, takes it up."""
    gateway, write, servers = watched_and_other(tmp_path)
    updates = Updates()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", auth=OPS) as ops, \
            Client(f"{base}/mcp", auth=MINE, mode="legacy", message_handler=updates) as mo:
        await mo.session.subscribe_resource(WATCHED)
        write(entries("other"), ["other"])
        assert (await reload(gateway))["removed"] == ["watched"]
        write(servers, ["other"])
        assert (await reload(gateway))["added"] == ["watched"]
        service, mover = gateway.manager.services["watched"], gateway.host_requests.mover
        await until(lambda: service.state is UpstreamState.READY
                    and mover.followed == gateway.manager.view.generation)
        assert await seen(ops) == []
        write(servers, ["other", "watched"])
        await reload(gateway)
        assert await seen(ops, 1) == [SUBSCRIBE]
        await ops.call_tool("watched_bump", {})
        await until(lambda: updates.uris == [WATCHED])
