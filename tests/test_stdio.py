"""Real stdio subprocess upstreams: start-up, stderr, crashes, hangs, isolation."""

from __future__ import annotations

import pytest
from fastmcp import Client

from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import make_gateway, stdio_entry

pytestmark = pytest.mark.anyio


async def test_stdio_upstream_serves_and_its_stderr_is_captured() -> None:
    gateway = make_gateway({"well": stdio_entry("well.py")})
    async with Client(gateway.server) as client:
        assert (await client.call_tool("well_echo", {"text": "ünïcode ✓"})).data == "ünïcode ✓"
        detail = (await client.call_tool("gateway_server_detail", {"name": "well"})).data
        assert any("well starting pid=" in line for line in detail.stderr_tail)
        assert detail.state == "ready" and detail.transport == "stdio"


async def test_a_server_that_exits_at_start_is_reported_and_others_keep_serving() -> None:
    gateway = make_gateway({"good": stdio_entry("well.py"), "bad": stdio_entry("exit_at_start.py")})
    async with Client(gateway.server) as client:
        assert (await client.call_tool("good_echo", {"text": "hi"})).data == "hi"
        servers = {s["name"]: s for s in
                   (await client.call_tool("gateway_list_servers", {})).structured_content[
                       "servers"]}
        assert servers["good"]["state"] == "ready"
        assert servers["bad"]["state"] in ("reconnecting", "failed")
        assert "WEATHER_API_KEY is not set" in servers["bad"]["last_error"]


async def test_a_crash_loop_parks_the_server_until_reconnected() -> None:
    gateway = make_gateway({"bad": stdio_entry("exit_at_start.py")})
    async with Client(gateway.server) as client:
        bad = gateway.manager.get("bad").replicas[0]
        assert await bad.wait_until(lambda: bad.state is UpstreamState.FAILED, 20)
        assert "gave up after 3 failures" in (bad.last_error or "")
        assert "POST /api/v1/servers/bad/restart" in (bad.last_error or "")
        status = (await client.call_tool("gateway_reconnect_server", {"name": "bad"})).data
        assert status.state in ("reconnecting", "failed")
        assert bad.attempts >= 4


async def test_a_server_that_hangs_on_initialize_times_out_alone() -> None:
    gateway = make_gateway({
        "good": stdio_entry("well.py"),
        "stuck": stdio_entry("hang_init.py", timeouts={"connect": 1}),
    })
    async with Client(gateway.server) as client:
        stuck = gateway.manager.get("stuck").replicas[0]
        assert stuck.state is not UpstreamState.READY
        # Within 1s, or more if its stderr line counted as work (the window extended).
        assert "did not finish connecting within" in (stuck.last_error or "")
        assert "idle for 1s without answering" in (stuck.last_error or "")
        assert (await client.call_tool("good_echo", {"text": "still here"})).data == "still here"


async def test_a_server_dying_mid_call_fails_that_call_and_is_restarted() -> None:
    gateway = make_gateway({"well": stdio_entry("well.py")})
    async with Client(gateway.server) as client:
        first_pid = (await client.call_tool("well_pid", {})).data
        result = await client.call_tool_mcp("well_crash", {})
        assert result.is_error
        text = result.content[0].text
        assert "upstream 'well'" in text and "connection closed" in text
        well = gateway.manager.get("well").replicas[0]
        assert await well.wait_until(
            lambda: well.state is UpstreamState.READY and well.connects >= 2, 20
        ), well.last_error
        assert (await client.call_tool("well_pid", {})).data != first_pid
        detail = (await client.call_tool("gateway_server_detail", {"name": "well"})).data
        assert any("crashing on request" in line for line in detail.stderr_tail)


async def test_calls_to_a_down_server_say_why() -> None:
    gateway = make_gateway({"well": stdio_entry("well.py")})
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_disable_server", {"name": "well"})
        result = await client.call_tool_mcp("gateway_list_servers", {})
        assert result.structured_content["servers"][0]["state"] == "disabled"
        missing = await client.call_tool_mcp("well_echo", {"text": "x"})
        assert missing.is_error and "belongs to server 'well'" in missing.content[0].text
        assert "it is disabled (gateway_enable_server" in missing.content[0].text
