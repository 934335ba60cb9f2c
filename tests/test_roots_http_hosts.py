"""Roots of handshake-era HTTP hosts reach their own ``per_client`` sessions outside
calls (``upstream/roots.py``, ``front/host_requests.py``): a host's
``notifications/roots/list_changed`` is forwarded to its own sessions only, and such
a session's ``roots/list`` outside a call is answered by asking that host (bounded);
when it does not answer, with the latest roots it gave, else none.

Found with the TypeScript SDK's client and server-everything: the host changed its
roots and said so, and its per_client session kept the old ones.  Two callers (alice,
bob), real HTTP on 127.0.0.1, ``rooted.py`` asking outside calls as server-filesystem
does.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from tests.fixtures import SERVERS, make_gateway, serve_http, until
from tests.test_roots_callers import ALICE, BOB, FROM_ARGS, TOKENS

pytestmark = pytest.mark.anyio
PY = sys.executable


class Host:
    """A handshake-era host's roots; ``silent``: it stops answering ``roots/list``;
    ``refusing``: it answers with an error."""

    def __init__(self, *roots: str) -> None:
        self.roots = list(roots)
        self.asked = 0
        self.silent = False
        self.refusing = False
        self.released = anyio.Event()

    async def list_roots(self, context: Any) -> list[str]:
        self.asked += 1
        if self.silent:
            await self.released.wait()   # never answers while the test runs
        if self.refusing:
            raise RuntimeError("no roots for you")
        return self.roots


def _servers(tmp_path: Path) -> dict[str, Any]:
    return {"fs": {"command": PY, "args": [str(SERVERS / "rooted.py"), *FROM_ARGS],
                   "env": {"ROOTED_LOG": str(tmp_path / "rooted.log")},
                   "protocol": "legacy", "isolation": "per_client"}}


def _listings(tmp_path: Path) -> list[list[str]]:
    """Every answer each fs session got to a ``roots/list`` outside a call."""
    log = tmp_path / "rooted.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _client(base: str, token: str, host: Host) -> Client[Any]:
    return Client(f"{base}/mcp", auth=token, mode="legacy", roots=host.list_roots)


async def _text(client: Client[Any], tool: str, **arguments: Any) -> Any:
    return json.loads((await client.call_tool(tool, arguments)).content[0].text)


async def test_a_handshake_era_http_hosts_roots_reach_its_own_session_only(
        tmp_path: Path) -> None:
    gateway = make_gateway(_servers(tmp_path), options=TOKENS)
    alice, bob = Host("file:///alice"), Host("file:///bob")
    async with serve_http(gateway.http_app("http")) as base:
        await until(lambda: _listings(tmp_path) == [[]])   # the catalog session: shared
        async with _client(base, ALICE, alice) as alice_host, \
                _client(base, BOB, bob) as bob_host:
            assert alice_host.protocol_version == "2025-11-25"
            # Each host's first call opens its session, which asks outside the call at
            # once: answered by asking that host (not [] as for a shared session).
            assert await _text(alice_host, "fs_listed", count=1) == ["file:///alice"]
            assert await _text(bob_host, "fs_listed", count=1) == ["file:///bob"]
            assert await _text(alice_host, "fs_allowed") == ["file:///alice"]
            # Alice's roots change and she says so: her session is told, asks, and
            # gets her new roots; bob's session is not told, and keeps his.
            alice.roots = ["file:///alice/new"]
            await alice_host.send_roots_list_changed()
            assert await _text(alice_host, "fs_listed", count=2) == ["file:///alice/new"]
            assert await _text(alice_host, "fs_allowed") == ["file:///alice/new"]
            assert await _text(bob_host, "fs_allowed") == ["file:///bob"]
            # Bob's turn: only his own session asks him.
            bob.roots = ["file:///bob/new"]
            await bob_host.send_roots_list_changed()
            assert await _text(bob_host, "fs_listed", count=2) == ["file:///bob/new"]
            assert await _text(alice_host, "fs_allowed") == ["file:///alice/new"]
            assert (alice.asked, bob.asked) == (2, 2)
    assert sorted(map(tuple, _listings(tmp_path))) == sorted([
        (), ("file:///alice",), ("file:///bob",), ("file:///alice/new",),
        ("file:///bob/new",)])


async def test_a_host_that_does_not_answer_gets_its_latest_roots_else_none(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.roots")
    # The bound on asking a host outside a call is ask_timeout (long enough for a
    # loaded machine's answer; a silent host is waited on that long).
    gateway = make_gateway(_servers(tmp_path), options=TOKENS, ask_timeout=8.0)
    alice, bob = Host("file:///alice"), Host("file:///bob")
    bob.silent = True   # never answers: his session gets none, never alice's
    async with (serve_http(gateway.http_app("http")) as base,
                _client(base, ALICE, alice) as alice_host,
                _client(base, BOB, bob) as bob_host):
        try:
            # A session's first ask (once started) may meet its first call in flight
            # (then the host is asked within that call); later ones wait for the host
            # to be asked before calling, so they are outside any call.
            assert await _text(alice_host, "fs_listed", count=1) == ["file:///alice"]
            alice.silent, alice.roots = True, ["file:///alice/unsaid"]
            await alice_host.send_roots_list_changed()
            await until(lambda: alice.asked == 2)
            # Asked, no answer: the latest roots she gave.
            assert await _text(alice_host, "fs_listed", count=2) == ["file:///alice"]
            assert await _text(bob_host, "fs_allowed") == FROM_ARGS   # never alice's
            await until(lambda: bob.asked == 1)
            assert await _text(bob_host, "fs_listed", count=1) == []
            await bob_host.send_roots_list_changed()
            await until(lambda: bob.asked == 2)
            assert await _text(bob_host, "fs_listed", count=2) == []
            assert await _text(bob_host, "fs_allowed") == FROM_ARGS
            assert alice.asked == 2   # bob's list_changed was not hers
        finally:
            alice.released.set()
            bob.released.set()
    said = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert sum("the latest roots it gave" in line for line in said) == 1, said
    assert any("with none" in line for line in said), said
    assert not any(token in line for line in said for token in (ALICE, BOB))


async def test_a_host_that_refuses_gets_its_latest_roots(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.roots")
    gateway = make_gateway(_servers(tmp_path), options=TOKENS)
    alice = Host("file:///alice")
    async with (serve_http(gateway.http_app("http")) as base,
                _client(base, ALICE, alice) as alice_host):
        assert await _text(alice_host, "fs_listed", count=1) == ["file:///alice"]
        alice.refusing, alice.roots = True, ["file:///alice/unsaid"]
        await alice_host.send_roots_list_changed()
        await until(lambda: alice.asked == 2)
        assert await _text(alice_host, "fs_listed", count=2) == ["file:///alice"]
    said = [r.getMessage() for r in caplog.records if "refused it" in r.getMessage()]
    assert len(said) == 1 and "the latest roots it gave" in said[0], said
