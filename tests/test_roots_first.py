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

from tests.fixtures import PY, SERVERS, until
from tests.test_mrtr import _free_port, _until_serving

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]
FROM_ARGS = ["file:///from/args"]


def _config(tmp_path: Path, **fs: Any) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"servers": {"fs": {
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
async def _http(tmp_path: Path, **fs: Any) -> AsyncIterator[str]:
    """The URL of a gateway subprocess serving fs over streamable HTTP."""
    port = _free_port()
    with (tmp_path / "gateway.log").open("w") as stderr:
        process = await anyio.open_process(
            [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(_config(tmp_path, **fs)),
             "--transport", "http", "--port", str(port), "--no-db"],
            stdout=stderr, stderr=stderr)
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


async def test_a_shared_session_over_http_costs_no_round(tmp_path: Path) -> None:
    """A shared session over HTTP never gets a caller's roots: the host is not asked."""
    roots = Roots("file:///work/mine")
    async with _http(tmp_path) as url, \
            Client(StreamableHttpTransport(url), roots=roots) as client:
        await _until_asked_at_start(tmp_path, client)
        assert await _allowed(client) == FROM_ARGS
        assert roots.asked == 0
