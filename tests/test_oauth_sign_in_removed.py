"""A server removed while its sign-in waits (``gateway_remove_server``, a reload
without it: ``UpstreamManager.on_removed`` -> ``SignIns.end``): the flow ends, its
waiter is told why, a person coming back with its link is told "server 'tickets' was
removed" and nothing is stored; another server's pending sign-in goes on, and the
callback listener closes once no flow waits.  Before, the flow went on: the person
signed in to a server no longer there.  Real loopback authorization server and
protected MCP server (tests/oauth_servers.py).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, until
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, running

pytestmark = pytest.mark.anyio


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def test_removing_a_server_ends_its_pending_sign_in(tmp_path: Path) -> None:
    port = free_port()
    async with signing_upstream() as (_provider, url):
        config = parse_config({"servers": {
            name: {"url": url, "auth": {"type": "oauth"}} for name in ("tickets", "wiki")}},
            source="test")
        gw = Gateway(config, GatewaySettings(
            connect_timeout=10.0, db=str(tmp_path / "gateway.db"), startup_wait=600.0,
            call_timeout=60, oauth_callback_port=port),
            restart=FAST_RESTART, transport_factory=default_transport)
        async with running(gw) as client:
            links: dict[str, str] = {}
            for name in ("tickets", "wiki"):
                answer: Any = await client.call_tool("gateway_sign_in", {"name": name})
                links[name] = answer.structured_content["url"]
            await client.call_tool("gateway_remove_server", {"name": "tickets"})
            assert not gw.sign_ins.pending("tickets")
            page = await person_signs_in(links["tickets"])
            assert page.status_code == 400, page.text
            assert "server &#x27;tickets&#x27; was removed from this gateway" in page.text
            assert await gw.sign_ins.book.load("tickets") is None  # nothing stored
            page = await person_signs_in(links["wiki"])  # the other flow goes on
            assert page.status_code == 200, page.text
            await until(lambda: _closed(port))  # no flow waits: the listener closed
