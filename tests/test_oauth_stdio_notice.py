"""A stdio gateway whose server is signed out at start-up tells its host once: a
``notifications/message`` at ``warning`` naming the server and the ways to sign in
(front/sign_in_notice.py), not only a line on the gateway's stderr.  A real ``serve``
subprocess on stdio, a real loopback authorization server and protected MCP server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.fixtures import PY
from tests.oauth_servers import signing_upstream

pytestmark = pytest.mark.anyio

WITHIN = 60


async def test_a_signed_out_server_is_told_to_the_stdio_host_once(tmp_path: Path) -> None:
    logs: list[Any] = []
    got = anyio.Event()

    async def on_log(message: Any) -> None:
        logs.append(message)
        if message.level == "warning":
            got.set()

    async with signing_upstream() as (_provider, url):
        config = tmp_path / "servers.yaml"
        config.write_text(json.dumps({"servers": {"tickets": {
            "url": url, "auth": {"type": "oauth"}}}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
        transport = StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config",
                                        str(config), "--log-level", "WARNING"],
                                   keep_alive=False,
                                   env={**env, "MCP_GATEWAY_DB": str(tmp_path / "g.db")})
        async with Client(transport, mode="legacy", log_handler=on_log) as host:
            await host.list_tools()  # the host's first request: the gateway knows it
            with anyio.fail_after(WITHIN):
                await got.wait()
            for _ in range(3):
                await host.list_tools()
            await host.call_tool("gateway_list_servers", {})
        warned = [m for m in logs if m.level == "warning"]
        assert len(warned) == 1, warned
        (notice,) = warned
        assert notice.logger == "tickets.sign_in"
        text = str(notice.data)
        assert text == (
            "The server 'tickets' needs someone to sign in before the gateway can connect "
            "to it (no sign-in yet).  To sign in, call the gateway_sign_in tool "
            "with server 'tickets' and open the link it returns, or run 'mcp-gateway "
            "login tickets' in a terminal."), text  # plain words: no log jargon
        assert "->" not in text and "signed_out" not in text
