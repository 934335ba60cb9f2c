"""A host's roots reach an upstream that asks for them outside a call before the host's
first call there (``upstream/roots.py``: roots first; ``routing/isolation.py``: a new
session's first ask), as they do when the host connects to the server directly.

Every test runs ``mcp-gateway serve`` as a subprocess in front of ``tests/servers/
rooted.py`` (server-filesystem's behaviour: it asks ``roots/list`` once initialized and
at ``notifications/roots/list_changed``, and narrows itself to the answer), driven by a
FastMCP 4 client in its default ``auto`` mode (2026-07-28) unless it says otherwise.

* A 2026-07-28 host is never asked outside a call: server-filesystem kept its start
  directory for it until some other server asked for roots within a call.  Now the
  gateway asks the host itself (a round of its own) before the first call of a server
  that asked for roots, once per host, and waits until that server got them.
* ``isolation: per_client`` over HTTP opens a host's session at its first call: that
  call raced the server's first ``roots/list`` and saw the start directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from tests import npm_tools
from tests.fixtures import PY, SERVERS, until
from tests.test_mrtr import _free_port, _until_serving
from tests.test_roots_callers import ALICE, BOB, TOKENS

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]
FROM_ARGS = ["file:///from/args"]


def _config(tmp_path: Path, gateway: dict[str, Any] | None = None, **fs: Any) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"gateway": gateway or {}, "servers": {"fs": {
        "command": PY, "args": [str(SERVERS / "rooted.py"), *FROM_ARGS],
        "env": {"ROOTED_LOG": str(tmp_path / "rooted.log")}, **fs}}}), encoding="utf-8")
    return path


def _listings(tmp_path: Path) -> list[list[str]]:
    """Every answer each fs session got to its ``roots/list`` outside a call, in order."""
    log = tmp_path / "rooted.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


class Roots:
    """A host's roots, and how many times it was asked for them."""

    def __init__(self, *uris: str) -> None:
        self.uris = list(uris)
        self.asked = 0

    def __call__(self, context: Any) -> list[str]:
        self.asked += 1
        return list(self.uris)


async def _allowed(client: Client[Any]) -> Any:
    return json.loads((await client.call_tool("fs_allowed", {})).content[0].text)


@asynccontextmanager
async def _stdio(tmp_path: Path, lane: bool, **client: Any) -> AsyncIterator[Client[Any]]:
    transport = StdioTransport(
        PY, ["-m", "fast_mcp_gateway", "serve", "--config", str(_config(tmp_path)),
             "--no-db"],
        env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower()},
        keep_alive=False, log_file=tmp_path / "gateway.log")
    async with Client(transport, **client) as connected:
        yield connected


@asynccontextmanager
async def _http(tmp_path: Path, gateway: dict[str, Any] | None = None,
                env: dict[str, str] | None = None, **fs: Any) -> AsyncIterator[str]:
    """The URL of a gateway subprocess serving fs over streamable HTTP (``gateway``: its
    options, as ``servers.yaml`` gives them; ``env``: more of its environment)."""
    port = _free_port()
    with (tmp_path / "gateway.log").open("w") as stderr:
        process = await anyio.open_process(
            [PY, "-m", "fast_mcp_gateway", "serve",
             "--config", str(_config(tmp_path, gateway, **fs)),
             "--transport", "http", "--port", str(port), "--no-db"],
            stdout=stderr, stderr=stderr, env={**os.environ, **(env or {})})
        async with process:
            try:
                await _until_serving(f"http://127.0.0.1:{port}/health", process)
                yield f"http://127.0.0.1:{port}/mcp"
            finally:
                process.terminate()
                with anyio.fail_after(30):
                    await process.wait()


async def _until_asked_at_start(tmp_path: Path, client: Client[Any]) -> None:
    """Until fs's first session asked for roots once initialized (answered none)."""
    await until(lambda: _listings(tmp_path) == [[]])


@pytest.mark.parametrize("lane", [True, False])
async def test_a_2026_hosts_first_call_sees_its_roots(tmp_path: Path, lane: bool) -> None:
    roots = Roots("file:///work/one")
    async with _stdio(tmp_path, lane, roots=roots) as client:
        assert client.protocol_version == "2026-07-28"
        await _until_asked_at_start(tmp_path, client)
        # Asked once, in the call's own round; fs told, asked again, got them.
        assert await _allowed(client) == ["file:///work/one"]
        assert roots.asked == 1
        assert _listings(tmp_path) == [[], ["file:///work/one"]]
        assert await _allowed(client) == ["file:///work/one"]
        assert roots.asked == 1   # one round per host, not per call
        # The host says its roots changed: asked again at its next call.
        roots.uris = ["file:///work/two"]
        await client.send_roots_list_changed()
        assert await _allowed(client) == ["file:///work/two"]
        assert roots.asked == 2


async def test_server_filesystem_sees_a_2026_hosts_roots_at_its_first_call(
        tmp_path: Path) -> None:
    """The trial's steps, with the real server-filesystem from npm: it showed the
    directory it was started with, connected directly the host's roots."""
    tools = npm_tools.ensure()
    if tools is None:
        pytest.skip("npm is not installed: cannot fetch server-filesystem")
    start, mine = tmp_path / "start", tmp_path / "mine"
    start.mkdir()
    mine.mkdir()
    script = npm_tools.package_path(tools, "@modelcontextprotocol/server-filesystem")
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"filesystem": {
        "command": str(npm_tools.node(tools)),
        "args": [str(script / "dist/index.js"), str(start)]}}}), encoding="utf-8")
    transport = StdioTransport(
        PY, ["-m", "fast_mcp_gateway", "serve", "--config", str(config), "--no-db"],
        env=dict(os.environ), keep_alive=False, log_file=tmp_path / "gateway.log")
    async with Client(transport, roots=[mine.as_uri()]) as client:
        assert client.protocol_version == "2026-07-28"
        # It asks once initialized (answered none: it says so on stderr), as long before
        # a host's first call as a person takes to type it.
        with anyio.fail_after(60):
            while "No valid root directories" not in (await client.call_tool(  # noqa: ASYNC110 - another process's state
                    "gateway_server_detail", {"name": "filesystem"})).content[0].text:
                await anyio.sleep(0.05)
        shown = await client.call_tool("filesystem_list_allowed_directories", {})
        assert shown.content[0].text.split("\n")[1:] == [str(mine.resolve())]


async def test_a_host_without_roots_is_not_asked(tmp_path: Path) -> None:
    async with _stdio(tmp_path, True) as client:
        assert client.protocol_version == "2026-07-28"
        await _until_asked_at_start(tmp_path, client)
        assert await _allowed(client) == FROM_ARGS
        assert _listings(tmp_path) == [[]]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_per_client_sessions_first_call_sees_its_hosts_roots(
        tmp_path: Path, mode: str) -> None:
    """Over HTTP: a 2026-07-28 host (asked in a round first) and a handshake-era host
    (asked by its own session outside the call): each new session's first call."""
    roots = Roots("file:///work/mine")
    async with _http(tmp_path, isolation="per_client") as url:
        async with Client(StreamableHttpTransport(url), mode=mode, roots=roots) as client:
            await _until_asked_at_start(tmp_path, client)   # the catalog session
            assert await _allowed(client) == ["file:///work/mine"]
            assert await _allowed(client) == ["file:///work/mine"]
            assert roots.asked == 1
        assert _listings(tmp_path) == [[], ["file:///work/mine"]]


@pytest.mark.parametrize("lane", [True, False])
async def test_a_2026_http_hosts_list_changed_asks_it_again(
        tmp_path: Path, lane: bool) -> None:
    """Over HTTP a 2026-07-28 host's ``notifications/roots/list_changed`` is a POST of
    its own (no session): it marks that caller's roots stale, so its next call asks it
    again in a round and its per_client session gets the new roots; another caller's
    are not asked again.  (The SDK's modern entry answered it 202 and dropped it: the
    session kept the old roots.)  With the HTTP express lane and without."""
    alice, bob = Roots("file:///alice/one"), Roots("file:///bob/one")
    async with _http(tmp_path, TOKENS, env={"MCP_GATEWAY_HTTP_EXPRESS_LANE": str(lane).lower()},
                     isolation="per_client") as url, \
            Client(StreamableHttpTransport(url, auth=ALICE), roots=alice) as alice_host, \
            Client(StreamableHttpTransport(url, auth=BOB), roots=bob) as bob_host:
        assert alice_host.protocol_version == "2026-07-28"
        await _until_asked_at_start(tmp_path, alice_host)   # the catalog session
        assert await _allowed(alice_host) == ["file:///alice/one"]
        assert await _allowed(bob_host) == ["file:///bob/one"]
        alice.uris = ["file:///alice/two"]
        await alice_host.send_roots_list_changed()
        assert await _allowed(alice_host) == ["file:///alice/two"]
        assert await _allowed(alice_host) == ["file:///alice/two"]
        assert await _allowed(bob_host) == ["file:///bob/one"]
        assert (alice.asked, bob.asked) == (2, 1)   # once per change; only who said so
    assert sorted(map(tuple, _listings(tmp_path))) == sorted([
        (), ("file:///alice/one",), ("file:///bob/one",), ("file:///alice/two",)])


async def test_an_unauthenticated_2026_http_hosts_list_changed_asks_it_again(
        tmp_path: Path) -> None:
    """Without ``gateway.auth`` 2026-07-28 hosts are one caller: its notification marks
    that caller's roots stale."""
    roots = Roots("file:///work/one")
    async with _http(tmp_path, isolation="per_client") as url, \
            Client(StreamableHttpTransport(url), roots=roots) as client:
        await _until_asked_at_start(tmp_path, client)
        assert await _allowed(client) == ["file:///work/one"]
        roots.uris = ["file:///work/two"]
        await client.send_roots_list_changed()
        assert await _allowed(client) == ["file:///work/two"]
        assert roots.asked == 2
    assert _listings(tmp_path) == [[], ["file:///work/one"], ["file:///work/two"]]


async def test_a_shared_session_over_http_costs_no_round(tmp_path: Path) -> None:
    """A shared session over HTTP never gets a caller's roots: the host is not asked."""
    roots = Roots("file:///work/mine")
    async with _http(tmp_path) as url, \
            Client(StreamableHttpTransport(url), roots=roots) as client:
        await _until_asked_at_start(tmp_path, client)
        assert await _allowed(client) == FROM_ARGS
        assert roots.asked == 0


# -- SoleHost.before_call in-process: one round per host, refusals, a server that does
# not ask again ------------------------------------------------------------------------


class _Session:
    """An upstream session: told its roots changed, it asks again (unless ``deaf``)."""

    def __init__(self, sole: Any, tg: Any, deaf: bool = False) -> None:
        self.sole, self.tg, self.deaf = sole, tg, deaf
        self.told = 0
        self.got: list[Any] = []

    async def ask(self) -> None:
        result = await self.sole.answer("fs", self)
        self.got.append([str(root.uri) for root in result.roots])

    async def send_notification(self, notification: Any) -> None:
        self.told += 1
        if not self.deaf:
            self.tg.start_soon(self.ask)

    async def send_ping(self) -> None:
        return None


def _front(sole: Any, gate: anyio.Event, refuse: bool = False) -> Any:
    """A 2026-07-28 stdio host's call as parking sends it: its round gives its roots."""
    import mcp_types as types
    from mcp.shared.exceptions import MCPError

    from fast_mcp_gateway.upstream.relay import STDIO_HOST, FrontCall

    class Front(FrontCall):
        rounds = 0

        def can_ask(self, capability: str) -> bool:
            return capability == "roots"

        async def list_roots(self) -> types.ListRootsResult:
            Front.rounds += 1
            await gate.wait()
            if refuse:
                raise MCPError(types.INVALID_REQUEST, "no")
            result = types.ListRootsResult(roots=[types.Root(uri="file:///a")])
            await sole.learned("fs", self, result)   # as ParkedFront.list_roots does
            return result

    return Front(session=None, protocol_version="2026-07-28", host=STDIO_HOST)


async def test_concurrent_first_calls_of_a_host_share_one_round() -> None:
    from fast_mcp_gateway.upstream.roots import SoleHost

    sole = SoleHost()
    sole.front = lambda: None   # a stdio gateway whose host cannot be asked outside calls
    gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        session = _Session(sole, tg)
        await session.ask()   # at start: nothing known
        first, second = _front(sole, gate), _front(sole, gate)
        done: list[str] = []

        async def call(front: Any, name: str) -> None:
            await sole.before_call("fs", front, per_client=False)
            done.append(name)
            assert session.got[-1] == ["file:///a"]   # answered before the call goes on

        tg.start_soon(call, first, "first")
        tg.start_soon(call, second, "second")
        await until(lambda: type(first).rounds + type(second).rounds == 1)
        gate.set()
    assert sorted(done) == ["first", "second"]
    assert type(first).rounds + type(second).rounds == 1
    assert session.told == 1 and session.got == [[], ["file:///a"]]
    await sole.before_call("fs", _front(sole, gate), per_client=False)   # known: no round
    assert session.told == 1


async def test_a_refused_round_is_not_asked_again() -> None:
    from fast_mcp_gateway.upstream.roots import SoleHost

    sole = SoleHost()
    sole.front = lambda: None
    gate = anyio.Event()
    gate.set()
    async with anyio.create_task_group() as tg:
        await _Session(sole, tg).ask()
        refusing = _front(sole, gate, refuse=True)
        await sole.before_call("fs", refusing, per_client=False)
        await sole.before_call("fs", refusing, per_client=False)
    assert type(refusing).rounds == 1


async def test_a_server_that_does_not_ask_again_is_waited_for_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from fast_mcp_gateway.upstream import roots
    from fast_mcp_gateway.upstream.relay import STDIO_HOST

    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.roots")
    monkeypatch.setattr(roots, "SETTLE_WITHIN", 0.01)
    sole = roots.SoleHost()
    sole.front = lambda: None
    gate = anyio.Event()
    gate.set()
    async with anyio.create_task_group() as tg:
        session = _Session(sole, tg, deaf=True)
        await session.ask()
        await sole.before_call("fs", _front(sole, gate), per_client=False)  # goes on
        sole.roots.changed(STDIO_HOST)
        await sole.before_call("fs", _front(sole, gate), per_client=False)
    said = [r.getMessage() for r in caplog.records if "did not ask again" in r.getMessage()]
    assert len(said) == 1 and "upstream fs" in said[0]
    assert session.told == 1   # the second round's roots were the same: nothing to tell


async def test_only_a_verified_callers_list_changed_marks_its_roots() -> None:
    """``http/roots_changed.py`` by raw POSTs: a token that does not verify marks nothing
    (answered 401 by the full path), a verified one marks its own caller's roots only,
    answered 202 as the SDK answers it."""
    import httpx2

    from fast_mcp_gateway.upstream.credentials import Caller
    from fast_mcp_gateway.upstream.roots import caller_key
    from tests.fixtures import make_gateway, serve_http

    gateway = make_gateway({}, options=TOKENS)
    kept = gateway.provider.manager.sole_host.roots
    alice, bob = caller_key(Caller("alice", ALICE)), caller_key(Caller("bob", BOB))
    for key in (alice, bob):
        kept.learned(key, [])
    body = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    headers = {"mcp-protocol-version": "2026-07-28", "accept":
               "application/json, text/event-stream"}
    async with serve_http(gateway.http_app("http")) as base, httpx2.AsyncClient() as http:
        refused = await http.post(f"{base}/mcp", json=body, headers={
            **headers, "authorization": "Bearer mgw_nobody-0000000000000000"})
        assert refused.status_code == 401
        assert not kept.wanted(alice) and not kept.wanted(bob)
        said = await http.post(f"{base}/mcp", json=body, headers={
            **headers, "authorization": f"Bearer {ALICE}",
            "mcp-method": "notifications/roots/list_changed"})
        assert said.status_code == 202
        assert kept.wanted(alice) and not kept.wanted(bob)
