"""A call timeout names a setting the server's config file can take: an mcpServers entry
(Claude Desktop's shape) takes no 'timeouts' of its own (the loader refuses one), so the
error points to gateway.timeouts, not to "the server's timeouts.call"."""

from __future__ import annotations

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway, GatewaySettings, parse_config
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.deadline import DeadlineReached
from fast_mcp_gateway.upstream.failures import timed_out
from tests.fixtures import FAST_RESTART, memory_entry, memory_transports
from tests.test_power_user import gated_server

pytestmark = pytest.mark.anyio

CLAUDE_FILE = {"gateway": {"timeouts": {"call": 0.5}},
               "mcpServers": {"slow": memory_entry("slow")}}


async def test_a_call_timeout_of_an_mcp_servers_entry_names_gateway_timeouts() -> None:
    """It said "raise the server's timeouts.call", which the entry cannot take."""
    started, gate = anyio.Event(), anyio.Event()
    config = parse_config(CLAUDE_FILE, source="claude_desktop_config.json")
    gateway = Gateway(config, GatewaySettings(db=None, startup_wait=600.0),
                      transport_factory=memory_transports(
                          {"slow": gated_server(started, gate)}),
                      restart=FAST_RESTART)
    async with Client(gateway.server) as client:
        result = await client.call_tool_mcp("slow_slow", {})
        gate.set()
    assert result.is_error
    assert result.content[0].text == (
        "upstream 'slow': tools/call 'slow' did not answer within 0.5s (the request was "
        "cancelled upstream); if it is only slow, raise gateway.timeouts.call (an "
        "mcpServers entry takes no timeouts of its own: to give this server its own, move "
        "the servers under 'servers:')")


def test_each_timeout_names_the_setting_its_entry_takes() -> None:
    claude = parse_config(CLAUDE_FILE).servers["slow"]
    ours = parse_config({"servers": {"slow": memory_entry("slow")}}).servers["slow"]
    assert claude.mcp_servers_entry and not ours.mcp_servers_entry
    # Each replica's config (a copy) keeps where it was read from.
    assert all(c.mcp_servers_entry for c, _ in claude.model_copy(
        update={"replicas": 2}).replica_configs())
    stalled = DeadlineReached("call", 2, 3)
    assert "(gateway.timeouts.call; the request was cancelled upstream); if its steps are " \
           "only slow, raise gateway.timeouts.call (an mcpServers" in \
           str(timed_out("slow", "tools/call 'x'", 2, stalled, claude))
    assert str(timed_out("slow", "tools/call 'x'", 2, stalled, ours)).endswith(
        "(timeouts.call; the request was cancelled upstream); if its steps are only slow, "
        "raise the server's timeouts.call")
    total = DeadlineReached("max_total", 20, 9)
    assert "when it reached gateway.timeouts.max_total of 20s (the request was cancelled " \
           "upstream); if it needs longer, raise gateway.timeouts.max_total (an mcpServers" \
           in str(timed_out("slow", "tools/call 'x'", 2, total, claude))
    assert str(timed_out("slow", "tools/call 'x'", 2, total, ours)).endswith(
        "when it reached the server's timeouts.max_total of 20s (the request was cancelled "
        "upstream); if it needs longer, raise timeouts.max_total")


def test_the_mark_is_no_setting_an_update_would_apply() -> None:
    """The same settings are the same config, wherever they were read: an update with a
    Claude-file server's own settings is 'unchanged', not a restart."""
    claude = ServerConfig(name="s", command="npx", args=["-y", "pkg"]).read_from(True)
    same = ServerConfig(name="s", command="npx", args=["-y", "pkg"])
    assert claude == same and not claude.differs_only_in_place(same)
    assert claude.mcp_servers_entry and not same.mcp_servers_entry
    assert claude != ServerConfig(name="s", command="npx", args=["-y", "other"])
