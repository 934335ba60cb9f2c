"""A question the upstream puts to the host holds the call's deadline.

Found with server-everything's ``trigger-elicitation-request`` (and
``trigger-sampling-request``): a person taking longer than the server's
``timeouts.call`` (30 s by default) to fill the form failed the call with "did not
answer within 30s ... raise the server's timeouts.call", blaming a server that was
waiting on the person (directly, the TypeScript SDK gives the person 60 s; the Python
SDK's own request clock stops while a request waits on a person).  The answer gives the
call ``timeouts.call`` again, as a progress report does (``upstream/deadline.Pace``).

The host's answer comes after a call of a second server with the same ``timeouts.call``
timed out: that timeout is the test's only clock (no sleeps).  Both the full path (an
in-process host) and the stdio express lane (a real ``serve``) are run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError

from tests.fixtures import make_gateway, stdio_entry

pytestmark = pytest.mark.anyio
QUICK = {"timeouts": {"call": 1, "max_total": 30}}


def servers(tmp_path: Path) -> dict[str, Any]:
    return {"asker": stdio_entry("asker.py", **QUICK),
            "slow": stdio_entry("slow.py", str(tmp_path / "events"), **QUICK)}


def answering_late(clock: list[Client[Any]]) -> Any:
    """An elicitation handler that answers once a call of ``slow_hang`` (the same
    ``timeouts.call``) timed out: the person took longer than the call timeout."""
    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
        with pytest.raises(ToolError, match="did not answer within 1s"):
            await clock[0].call_tool("slow_hang", {})
        return "yes"

    return elicit


async def test_a_late_answer_on_the_full_path_is_no_timeout(tmp_path: Path) -> None:
    gateway = make_gateway(servers(tmp_path))
    clock: list[Client[Any]] = []
    async with Client(gateway.server, mode="legacy",
                      elicitation_handler=answering_late(clock)) as host:
        clock.append(host)
        result = await host.call_tool("asker_ask", {"tag": "t1"}, raise_on_error=False)
    assert not result.is_error, result.content
    assert result.content[0].text == "t1:accept:yes"


async def test_a_late_answer_on_the_stdio_lane_is_no_timeout(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": servers(tmp_path)}))
    transport = StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve", "--config",
                                                str(config), "--no-db", "--startup-wait", "60"],
                               keep_alive=False,
                               env={**os.environ, "MCP_GATEWAY_LOG_LEVEL": "DEBUG"},
                               log_file=tmp_path / "gateway.log")
    clock: list[Client[Any]] = []
    async with Client(transport, mode="legacy",
                      elicitation_handler=answering_late(clock)) as host:
        clock.append(host)
        # The first list waits for both servers (--startup-wait): the call takes the lane.
        assert {"asker_ask", "slow_hang"} <= {t.name for t in await host.list_tools()}
        result = await host.call_tool("asker_ask", {"tag": "t2"}, raise_on_error=False)
    assert not result.is_error, result.content
    assert result.content[0].text == "t2:accept:yes"
    assert "express lane: tools/call asker_ask" in (tmp_path / "gateway.log").read_text()
