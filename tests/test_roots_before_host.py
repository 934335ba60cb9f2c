"""Roots asked by an upstream outside any call (``upstream/roots.py``): before the stdio
host's handshake (server-filesystem), and of a 2026-07-28 host, which is never asked then.

``mcp-gateway serve`` starts its stdio upstreams before any host line is read, so a
server that lists its client's roots once initialized (server-filesystem) may ask before
the host has said what its roots are.  It got ``[]`` and kept its command-line
directories, where the same host connected directly narrows it to the host's roots: the
host's roots held only if the upstream happened to start after the host's handshake.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.fixtures import SERVERS, until

pytestmark = pytest.mark.anyio
PY = sys.executable


def _gateway(tmp_path: Path, lane: bool, **fs: Any) -> StdioTransport:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"fs": {
        "command": PY, "args": [str(SERVERS / "rooted.py"), "file:///from/args"],
        "env": {"ROOTED_LOG": str(tmp_path / "rooted.log")}, **fs}}}), encoding="utf-8")
    return StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config", str(config),
                               "--no-db"],
                          env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower()},
                          keep_alive=False, log_file=tmp_path / "gateway.log")


def _listings(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "rooted.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("lane", [True, False])
async def test_an_upstream_that_asked_before_the_host_gets_the_hosts_roots(
        tmp_path: Path, lane: bool) -> None:
    host_roots = ["file:///work/project"]
    client: Client[Any] = Client(_gateway(tmp_path, lane), mode="legacy", roots=host_roots,
                                 auto_initialize=False)
    async with client:
        # The upstream asks once initialized: no host yet, so it was answered [].
        await until(lambda: _listings(tmp_path) == [[]])
        await client.initialize()
        # The host's handshake is done: the upstream is told the roots changed, asks
        # again, and narrows itself to the host's roots, as it would connected directly.
        listed = await client.call_tool("fs_listed", {"count": 2})
        assert json.loads(listed.content[0].text) == ["file:///work/project"]
        allowed = await client.call_tool("fs_allowed", {})
        assert json.loads(allowed.content[0].text) == ["file:///work/project"]


async def test_a_per_client_session_of_the_stdio_host_is_told_its_roots_changed(
        tmp_path: Path) -> None:
    """A per_client session over stdio is the one host's: answered by the same rule, and
    the host's ``notifications/roots/list_changed`` reaches it too (it reached the
    shared sessions only)."""
    roots = ["file:///work/one"]
    client: Client[Any] = Client(_gateway(tmp_path, True, isolation="per_client"),
                                 mode="legacy", roots=lambda context: list(roots))
    async with client:
        listed = await client.call_tool("fs_listed", {"count": 1})   # its own session
        assert json.loads(listed.content[0].text) == ["file:///work/one"]
        # The catalog session's answers are done too (it may have asked before the
        # host's handshake: [], then the host's roots).
        await until(lambda: _listings(tmp_path).count(["file:///work/one"]) == 2)
        roots[:] = ["file:///work/two"]
        await client.send_roots_list_changed()
        # Both sessions ask again, outside any call.
        await until(lambda: _listings(tmp_path).count(["file:///work/two"]) == 2)
        listed = await client.call_tool("fs_listed", {"count": 2})
        assert json.loads(listed.content[0].text) == ["file:///work/two"]
        allowed = await client.call_tool("fs_allowed", {})
        assert json.loads(allowed.content[0].text) == ["file:///work/two"]


async def test_a_host_without_roots_leaves_the_upstream_as_it_started(tmp_path: Path) -> None:
    """No roots declared: nothing is announced (the upstream keeps its own directories)."""
    async with Client(_gateway(tmp_path, True), mode="legacy",
                      auto_initialize=False) as client:
        await until(lambda: _listings(tmp_path) == [[]])
        await client.initialize()
        allowed = await client.call_tool("fs_allowed", {})
        assert json.loads(allowed.content[0].text) == ["file:///from/args"]
        assert _listings(tmp_path) == [[]]


@pytest.mark.parametrize("lane", [True, False])
async def test_a_2026_hosts_roots_reach_an_upstream_asking_outside_a_call(
        tmp_path: Path, lane: bool) -> None:
    """A 2026-07-28 host is never asked outside a call (no session to ask on): an
    upstream asking then got ``[]`` for good, whatever roots the host gave.  Once the
    host gives its roots in a call (answering ``pusher``'s ``roots/list`` in an MRTR
    round), the upstream that asked outside a call is told its roots changed, asks
    again, and gets them."""
    from tests.test_mrtr import Host

    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {
        "fs": {"command": PY, "args": [str(SERVERS / "rooted.py"), "file:///from/args"],
               "env": {"ROOTED_LOG": str(tmp_path / "rooted.log")}, "protocol": "legacy"},
        "pusher": {"command": PY, "args": [str(SERVERS / "pusher.py")],
                   "protocol": "legacy"}}}), encoding="utf-8")
    transport = StdioTransport(
        PY, ["-m", "fast_mcp_gateway", "serve", "--config", str(config), "--no-db"],
        env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower()},
        keep_alive=False, log_file=tmp_path / "gateway.log")
    host = Host()
    async with Client(transport, **host.handlers()) as client:
        assert client.protocol_version == "2026-07-28"
        await until(lambda: _listings(tmp_path) == [[]])   # asked at once: nobody to ask
        result = await client.call_tool("pusher_both", {})
        assert result.data.endswith("|file:///work/project")   # given within the call
        listed = await client.call_tool("fs_listed", {"count": 2})
        assert json.loads(listed.content[0].text) == ["file:///work/project"]
        allowed = await client.call_tool("fs_allowed", {})
        assert json.loads(allowed.content[0].text) == ["file:///work/project"]


def test_each_hosts_latest_roots_are_kept_by_host() -> None:
    """``HostRoots``: a host's latest roots, by host key; whether they changed."""
    import mcp_types as types

    from fast_mcp_gateway.upstream.roots import HostRoots

    def roots(*uris: str) -> list[types.Root]:
        return [types.Root(uri=uri) for uri in uris]

    def of(book: HostRoots, host: Any) -> Any:
        given = book.of(host)
        return None if given is None else [str(root.uri) for root in given]

    book = HostRoots()
    assert of(book, ("caller", "a")) is None   # gave none: the answer is []
    assert book.learned(("caller", "a"), roots("file:///a"))
    assert not book.learned(("caller", "a"), roots("file:///a"))   # no change
    assert book.learned(("caller", "b"), roots("file:///b"))
    assert of(book, ("caller", "a")) == ["file:///a"]
    assert of(book, ("caller", "b")) == ["file:///b"]
    assert book.learned(("caller", "a"), roots("file:///a2"))   # a's latest
    assert of(book, ("caller", "a")) == ["file:///a2"]
