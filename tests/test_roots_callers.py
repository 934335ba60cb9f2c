"""Roots an upstream asks for outside any call, over HTTP with several callers
(``upstream/roots.py``): a shared session never gets one caller's roots; a per_client
session gets its own caller's, and only those.

``rooted.py`` narrows itself to its client's roots as server-filesystem does: a
non-empty answer *replaces* its allowed directories.  A shared session given caller
A's roots (the only caller that had given any) let caller B's later calls on it read
A's directories.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from tests.fixtures import SERVERS, make_gateway, serve_http, until
from tests.test_mrtr import Host

pytestmark = pytest.mark.anyio
PY = sys.executable
ALICE, BOB = "mgw_alice-3b9e61c07d2a45f8", "mgw_bob-8c1d5a70e94f2b36"
TOKENS = {"auth": {"tokens": [{"name": "alice", "token": ALICE, "scopes": ["tools"]},
                              {"name": "bob", "token": BOB, "scopes": ["tools"]}]}}
FROM_ARGS = ["file:///from/args"]


def _servers(tmp_path: Path, **fs: Any) -> dict[str, Any]:
    return {
        "fs": {"command": PY, "args": [str(SERVERS / "rooted.py"), *FROM_ARGS],
               "env": {"ROOTED_LOG": str(tmp_path / "rooted.log")}, "protocol": "legacy",
               **fs},
        "pusher": {"command": PY, "args": [str(SERVERS / "pusher.py")],
                   "protocol": "legacy"}}


def _listings(tmp_path: Path) -> list[list[str]]:
    """Every answer each fs session got to its ``roots/list``, in order."""
    log = tmp_path / "rooted.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _host(*roots: str) -> Host:
    host = Host()
    host.roots = list(roots)
    return host


async def _give_roots(client: Client[Any], host: Host) -> None:
    """The host gives its roots within a call (answering pusher's ``roots/list``)."""
    result = await client.call_tool("pusher_both", {})
    assert result.data.endswith("|" + ",".join(host.roots))


async def _text(client: Client[Any], tool: str, **arguments: Any) -> Any:
    return json.loads((await client.call_tool(tool, arguments)).content[0].text)


async def test_a_shared_session_never_gets_one_callers_roots(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.roots")
    gateway = make_gateway(_servers(tmp_path), options=TOKENS)
    alice, bob = _host("file:///alice"), _host("file:///bob")
    async with serve_http(gateway.http_app("http")) as base:
        await until(lambda: _listings(tmp_path) == [[]])   # asked at once: none
        async with Client(f"{base}/mcp", auth=ALICE, **alice.handlers()) as host:
            assert host.protocol_version == "2026-07-28"
            # Alice alone gives roots, in a call of fs itself (it asks within the call).
            assert await _text(host, "fs_roots") == ["file:///alice"]
            await _give_roots(host, alice)   # and of another server
        # fs asks again outside a call (as at a stdio host's roots/list_changed): still
        # none -- not alice's, which were all it knew of.
        await gateway.manager.roots_changed()
        await until(lambda: len(_listings(tmp_path)) >= 2)
        assert _listings(tmp_path) == [[], []]
        async with Client(f"{base}/mcp", auth=BOB, **bob.handlers()) as host:
            assert await _text(host, "fs_allowed") == FROM_ARGS   # never alice's
            await _give_roots(host, bob)
        await gateway.manager.roots_changed()
        await until(lambda: len(_listings(tmp_path)) >= 3)
        assert _listings(tmp_path) == [[], [], []]
    said = [r.getMessage() for r in caplog.records if "upstream fs asked" in r.getMessage()]
    assert len(said) == 1   # once per server, saying why and what to do
    assert "upstream fs" in said[0] and "'isolation: per_client'" in said[0]
    assert "alice" not in said[0] and ALICE not in said[0]


async def test_a_per_client_session_gets_its_own_callers_roots_only(tmp_path: Path) -> None:
    gateway = make_gateway(_servers(tmp_path, isolation="per_client"), options=TOKENS)
    alice, bob = _host("file:///alice"), _host("file:///bob")
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=ALICE, **alice.handlers()) as alice_host,
        Client(f"{base}/mcp", auth=BOB, **bob.handlers()) as bob_host,
    ):
        # The catalog session serves no host's calls: a shared one, answered none.
        await until(lambda: _listings(tmp_path) == [[]])
        await _give_roots(alice_host, alice)
        await _give_roots(bob_host, bob)
        # Each caller's first call opens its own session, which asks once started.
        assert await _text(alice_host, "fs_listed", count=1) == ["file:///alice"]
        assert await _text(bob_host, "fs_listed", count=1) == ["file:///bob"]
        assert await _text(alice_host, "fs_allowed") == ["file:///alice"]
        assert await _text(bob_host, "fs_allowed") == ["file:///bob"]
        # Alice's roots change: her session (no call in flight on it) is told, asks
        # outside a call, and gets her new roots; bob's keeps his.
        alice.roots = ["file:///alice/new"]
        await _give_roots(alice_host, alice)
        await until(lambda: ["file:///alice/new"] in _listings(tmp_path))
        assert await _text(alice_host, "fs_listed", count=2) == ["file:///alice/new"]
        assert await _text(alice_host, "fs_allowed") == ["file:///alice/new"]
        assert await _text(bob_host, "fs_allowed") == ["file:///bob"]
        assert _listings(tmp_path) == [[], ["file:///alice"], ["file:///bob"],
                                       ["file:///alice/new"]]
