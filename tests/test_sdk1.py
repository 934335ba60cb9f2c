"""A real mcp 1.x SDK server behind the gateway (issue: judged on the older 1.x SDK).

``tests/servers/sdk1.py`` is written with the 1.x SDK's FastMCP and run by the Python of
``tests/py_tools.py`` (``mcp==1.30.0`` in a venv of its own) on each transport 1.x
offers: stdio, SSE (a ``transport: sse`` upstream) and streamable HTTP, on 127.0.0.1.
A FastMCP 4 host in ``auto`` mode (a 2026-07-28 host: the gateway turns the server's
pushed asks into ``InputRequiredResult`` rounds) sees through the gateway's stdio and
HTTP fronts what it sees connected to the server directly (a handshake-era session):
the lists, results, tool errors, errors, progress, logs and asks
(``tests/sdk1_peers.observe``), only the namespace added.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp.client.transports import StdioTransport

from fast_mcp_gateway.errors import ConfigError
from tests.fixtures import make_gateway, serve_http
from tests.sdk1_peers import (
    TRANSPORTS,
    Seen,
    direct_transport,
    observe,
    sdk1_python,
    sdk1_server,
)
from tests.test_connect_messages import failure

pytestmark = pytest.mark.anyio
URIS = ("data://", "data://v1/")  # the server's URIs, as the gateway exposes them


@pytest.fixture(scope="module")
def python() -> Path:
    return sdk1_python()


_DIRECT: dict[str, dict[str, Any]] = {}  # by transport: the server's, whichever process


async def direct(entry: dict[str, Any]) -> dict[str, Any]:
    """What the host sees of the server connected directly (once per transport)."""
    key = entry.get("transport", "stdio" if "command" in entry else "http")
    if key not in _DIRECT:
        seen = Seen()
        async with seen.client(direct_transport(entry)) as client:
            assert client.initialize_result is not None
            assert client.initialize_result.server_info.version == "1.30.0"  # the 1.x SDK
            _DIRECT[key] = await observe(client, seen)
    return copy.deepcopy(_DIRECT[key])


def same(direct_seen: dict[str, Any], relayed: dict[str, Any], seen: Seen) -> None:
    # A prompt the server does not list is refused by the gateway itself, with the
    # spec's code (the 1.x SDK answers code 0) and the server's prompts named.
    assert direct_seen["errors"].pop("unknown prompt") == 0
    assert relayed["errors"].pop("unknown prompt") == -32602
    assert "server 'v1' has no prompt 'nope'; its prompts: v1_hello, v1_review" in \
        seen.errors["unknown prompt"]
    for key in direct_seen:
        assert relayed[key] == direct_seen[key], key
    assert relayed == direct_seen


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_1x_server_behind_the_http_front(
        python: Path, transport: str, mode: str, tmp_path: Path) -> None:
    """A 2026-07-28 host (``auto``) and a handshake-era one."""
    async with sdk1_server(python, transport, tmp_path) as entry:
        expected = await direct(entry)
        gateway = make_gateway({"v1": entry})
        seen = Seen()
        async with serve_http(gateway.http_app("http")) as base, \
                seen.client(f"{base}/mcp", mode) as client:
            assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
            relayed = await observe(client, seen, "v1_", URIS)
        assert gateway.manager.get("v1").replicas[0].protocol_version == "2025-11-25"
    same(expected, relayed, seen)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_1x_server_behind_the_stdio_front(
        python: Path, transport: str, tmp_path: Path) -> None:
    config = tmp_path / "servers.json"
    async with sdk1_server(python, transport, tmp_path) as entry:
        expected = await direct(entry)
        config.write_text(json.dumps({"servers": {"v1": entry}}))
        gateway = StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve", "--config",
                                                  str(config), "--log-level", "WARNING"],
                                 keep_alive=False,
                                 env={**os.environ, "MCP_GATEWAY_DB": str(tmp_path / "g.db")})
        seen = Seen()
        async with seen.client(gateway) as client:
            assert client.protocol_version == "2026-07-28"
            with anyio.fail_after(30):
                while "v1_add" not in {t.name for t in await client.list_tools()}:  # noqa: ASYNC110 - another process starts its upstream
                    await anyio.sleep(0.05)
            relayed = await observe(client, seen, "v1_", URIS)
    same(expected, relayed, seen)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_1x_server_on_the_full_path(
        python: Path, transport: str, tmp_path: Path) -> None:
    """The full FastMCP path (an in-process host): the same, the form's top-level
    ``title`` included (the 1.x SDK writes the model's name there).  Neither era's
    ``requestedSchema`` has one: the SDK's runner sieves an ``InputRequiredResult``
    through the 2026-07-28 surface, which dropped it (the express lanes wrote the
    upstream's question as it came); ``front/form_schemas.py`` puts it back."""
    async with sdk1_server(python, transport, tmp_path) as entry:
        expected = await direct(entry)
        gateway = make_gateway({"v1": entry})
        seen = Seen()
        async with seen.client(gateway.server) as client:
            assert client.protocol_version == "2026-07-28"
            relayed = await observe(client, seen, "v1_", URIS)
    assert expected["asks"][0][1][1]["title"] == "Name"
    same(expected, relayed, seen)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_protocol_2026_on_a_1x_server(python: Path, transport: str,
                                            tmp_path: Path) -> None:
    """What ``tests/test_connect_messages.py`` emulates, on the real 1.x server: it does
    not speak 2026-07-28, and the error says so and the fix.  Over SSE, which has only
    the handshake era, the entry's own ``protocol: 2026-07-28`` is refused (it used to
    open in the handshake era all the same); as ``gateway.protocol`` it is a default
    the SSE session does not take, and says why."""
    async with sdk1_server(python, transport, tmp_path) as entry:
        config = {**entry, "protocol": "2026-07-28"}
        if transport != "sse":
            error = await failure(config)
            # 1.x's words: no model for the method (stdio), no session id (HTTP).
            assert ("server/discover answered -32602 Invalid request parameters" if
                    transport == "stdio" else "server/discover answered -32600 Bad Request: "
                    "Missing session ID") in error
            assert "does not speak the 2026-07-28 protocol era" in error
            assert "set 'protocol: auto' (or 'legacy')" in error
            return
        with pytest.raises(ConfigError, match="field 'protocol': '2026-07-28' cannot apply: "
                           "it has 'transport: sse', and SSE speaks only the handshake era"):
            make_gateway({"v1": config})
        gateway = make_gateway({"v1": entry}, options={"protocol": "2026-07-28"})
        async with seen_client(gateway) as client:
            assert "v1_add" in {t.name for t in await client.list_tools()}
        stats = gateway.manager.get("v1").replicas[0].statistics()
        assert stats.protocol_version == "2025-11-25"
        assert stats.protocol_reason == "the transport speaks the handshake era only"


def seen_client(gateway: Any) -> Any:
    return Seen().client(gateway.server)
