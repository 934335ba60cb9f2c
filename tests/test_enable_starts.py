"""An operator's enable starts a server: its first attempt is ``starting`` again, never
``reconnecting``, which a ``not_ready`` alert rule takes for an outage (it paged)."""

from __future__ import annotations

import logging

import pytest
from fastmcp import Client

from fast_mcp_gateway.alerts.engine import BREACHING_STATES, SILENT_STATES
from tests.fixtures import alpha_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio


async def test_an_enabled_server_is_starting_not_reconnecting(
        caplog: pytest.LogCaptureFixture) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.supervisor")
    async with Client(gateway.server) as client:
        status = (await client.call_tool("gateway_disable_server", {"name": "alpha"})).data
        assert status.state == "disabled"
        status = (await client.call_tool("gateway_enable_server", {"name": "alpha"})).data
        assert status.state == "ready"
    moves = [r.getMessage() for r in caplog.records if "upstream alpha:" in r.getMessage()]
    assert "upstream alpha: disabled -> starting" in moves, moves
    assert not any("-> reconnecting" in m for m in moves), moves
    # What the alert rules make of it: starting is neither an outage nor its end.
    assert "starting" in SILENT_STATES and "starting" not in BREACHING_STATES
