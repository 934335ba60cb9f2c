"""``protocol: auto`` over plain streamable HTTP tries 2026-07-28 first; a server that
does not offer it (the TypeScript SDK's servers) gets the handshake, and the status says
why: the reason it was tried ("2026-07-28 costs less") no longer holds once the probe
fell back.  A real upstream process, real HTTP on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from tests.fixtures import SERVERS, make_gateway
from tests.test_asks_routing import http_process

pytestmark = pytest.mark.anyio


async def test_a_server_without_2026_is_shown_in_the_handshake_era_and_why(
        tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    async with http_process(port_file, SERVERS / "handshake_only.py", port_file) as url:
        gateway = make_gateway({"old": {"url": url}})
        async with Client(gateway.server, mode="legacy") as client:
            assert (await gateway.wait_ready(within=30)).ready == ("old",)
            echoed = await client.call_tool("old_echo", {"text": "hi"})
            assert echoed.content[0].text == "hi"  # type: ignore[union-attr]
            detail = (await client.call_tool("gateway_server_detail", {"name": "old"})
                      ).structured_content
            assert detail is not None
            assert detail["protocol_version"] == "2025-11-25"
            assert detail["protocol_reason"] == (
                "auto: the server does not offer 2026-07-28 (it answered "
                "server/discover as a handshake-era server)")
