"""A call whose SSE stream the upstream closes before the answer is resumed (SEP-1699).

A streamable-HTTP server that polls (``tests/servers/polling_http.py``: the SDK's
server with an event store and a ``retry`` hint) closes a call's stream after its
first events and keeps the answer for a ``GET`` with ``Last-Event-ID``.  A host
connected to it directly gets the answer (its SDK client reconnects after ``retry``);
through the gateway the call failed ("connection closed during tools/call"): the
HTTP tap took the stream's end for the connection's.  Found with the conformance
suite's client scenario ``sse-retry`` run through the gateway (trial14).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.fixtures import SERVERS, make_gateway
from tests.test_asks_routing import http_process

pytestmark = pytest.mark.anyio


def text(result: Any) -> str:
    return "".join(getattr(item, "text", "") for item in result.content)


def stdio_gateway(tmp_path: Path, url: str) -> StdioTransport:
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"servers": {"polling": {"url": url, "protocol": "legacy"}}}))
    return StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve", "--config",
                                           str(config), "--no-db", "--startup-wait", "60"],
                          keep_alive=False, log_file=tmp_path / "gateway.log")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("front", ["stdio", "in-process"])
async def test_a_polled_calls_answer_reaches_the_host_as_connected_directly(
        tmp_path: Path, mode: str, front: str) -> None:
    """Both host eras, on the stdio front (its express lane's tap) and in process (the
    full path); the progress read before the stream closed reaches the host too."""
    port_file = tmp_path / "port"
    async with http_process(port_file, SERVERS / "polling_http.py", port_file) as url:
        steps: list[float] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            steps.append(done)

        async with Client(url, mode="legacy") as direct:  # (its era: the stream closes)
            expected = await direct.call_tool_mcp("poll", {"text": "hi"})
        target: Any = stdio_gateway(tmp_path, url) if front == "stdio" else make_gateway(
            {"polling": {"url": url, "protocol": "legacy"}}).server
        async with Client(target, mode=mode) as host:
            got = await host.call_tool_mcp("polling_poll", {"text": "hi"},
                                           progress_handler=on_progress)
            again = await host.call_tool_mcp("polling_poll", {"text": "again"})
            counts = text(await host.call_tool_mcp("polling_count", {}))
    assert (expected.is_error, text(expected)) == (False, "polled: hi")
    assert (got.is_error, text(got), got.structured_content) == \
        (False, "polled: hi", {"text": "hi"}), text(got)
    assert (again.is_error, text(again)) == (False, "polled: again"), text(again)
    assert steps == [1]
    # Three streams closed (one direct, two through the gateway), each resumed once:
    # no call was sent twice.
    assert counts == "polled 3 resumed 3"
