"""A retried call's progress, as the host sees it, only ever increases; a retried call
that fails says it was the last of several attempts.

A read-only call that timed out is retried (README "Retries and failover"); the next
attempt reports its progress from the start again.  Relayed as it came, the host got
progress 1, 2, then 1 again under the same token, which the specification forbids ("the
progress value MUST increase with each notification"; an SDK may drop or reject it).
Found with server-everything's ``trigger-long-running-operation`` behind a short
``timeouts.call``.  A real stdio upstream (``tests/servers/slow.py``, tool ``again``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.fixtures import WITHIN, make_gateway, stdio_entry, until

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_retried_calls_progress_never_goes_back(tmp_path: Path, mode: str) -> None:
    # The first attempt never answers: the call timeout ends it (a bound, not a measure).
    entry = stdio_entry("slow.py", str(tmp_path / "events"), timeouts={"call": 3})
    gateway = make_gateway({"slow": entry})
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with anyio.fail_after(WITHIN):
        async with Client(gateway.server, mode=mode) as client:
            result = await client.call_tool("slow_again", {}, progress_handler=on_progress)
            # The host's handler runs as its own task: its calls may follow the result.
            await until(lambda: len(seen) >= 2)
    assert result.data == "answered at call 2"
    assert seen == [1, 2], seen


async def test_so_does_it_on_the_stdio_express_lane(tmp_path: Path) -> None:
    """The same behind ``mcp-gateway serve``, where the call takes the express lane
    (its progress goes by ``Service.call_tool_raw``)."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"slow": stdio_entry(
        "slow.py", str(tmp_path / "events"), timeouts={"call": 3})}}))
    transport = StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve",
                                                "--config", str(config), "--startup-wait", "30"],
                               env={**os.environ, "MCP_GATEWAY_DB": str(tmp_path / "g.db"),
                                    "MCP_GATEWAY_LOG_LEVEL": "DEBUG"},
                               keep_alive=False, log_file=tmp_path / "gateway.log")
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with anyio.fail_after(WITHIN):
        async with Client(transport, mode="legacy") as client:
            assert "slow_again" in {t.name for t in await client.list_tools()}
            result = await client.call_tool("slow_again", {}, progress_handler=on_progress)
            await until(lambda: len(seen) >= 2)
    assert result.data == "answered at call 2"
    assert seen == [1, 2], seen
    assert "express lane: tools/call slow_again " in (tmp_path / "gateway.log").read_text()


async def test_a_call_that_timed_out_at_each_attempt_says_how_many_there_were(
        tmp_path: Path) -> None:
    """Its host was told "did not answer within 1s", having waited for two attempts,
    with nothing saying the tool ran twice."""
    entry = stdio_entry("slow.py", str(tmp_path / "events"), timeouts={"call": 1},
                        retry={"attempts": 2, "backoff": {"initial": 0.01, "max": 0.01}})
    gateway = make_gateway({"slow": entry})
    with anyio.fail_after(WITHIN):
        async with Client(gateway.server) as client:
            result = await client.call_tool_mcp("slow_hang", {})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "did not answer within 1s" in text, text
    assert text.endswith("(the last of 2 attempts: timeout, timeout)"), text
