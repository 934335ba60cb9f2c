"""A server sampling with ``includeContext`` through the gateway, as connected directly.

A careful server asks ``includeContext`` only of a client declaring ``sampling.context``
(``tests/servers/tool_sampler.py``'s ``recall`` fails saying so otherwise).  No upstream
session declared it, whatever its host declared: such a server failed through the
gateway where the host, connected directly, was asked (fidelity15).  Now a shared
session declares it (as ``sampling.tools``), and a ``per_client`` one as its host did
(``upstream/ask_details.sampling_declared``).  FastMCP hosts (handshake era: a server's
``create_message`` has no back-channel on a 2026-07-28 request) over stdio, on the
express lane and the full path.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.fixtures import SERVERS

pytestmark = pytest.mark.anyio
SERVER = [str(SERVERS / "tool_sampler.py")]
CONTEXT = types.SamplingCapability(context=types.SamplingContextCapability())


async def sample(messages: Any, params: Any, context: Any) -> Any:
    return types.CreateMessageResult(role="assistant", model="m", content=types.TextContent(
        text=f"with context {params.include_context}"))


async def recalled(target: Any, tool: str, mode: str, declared: bool) -> tuple[bool, Any]:
    async with Client(target, mode=mode, sampling_handler=sample,  # type: ignore[arg-type]
                      sampling_capabilities=CONTEXT if declared else None) as host:
        result = await host.call_tool_mcp(tool, {"task": "what was said"})
    return result.is_error, result.structured_content or result.content[0].text


@pytest.mark.parametrize("lane", [True, False])
async def test_a_hosts_sampling_context_reaches_the_server_as_connected_directly(
        tmp_path: Path, lane: bool) -> None:
    mode = "legacy"  # (a 2026-07-28 server has no back-channel for create_message)

    def gateway(isolation: str) -> StdioTransport:
        config = tmp_path / f"{isolation}.json"
        config.write_text(json.dumps({"servers": {"ts": {
            "command": sys.executable, "args": SERVER, "isolation": isolation}}}))
        return StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve", "--config",
                                               str(config), "--no-db", "--startup-wait", "60"],
                              env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower()},
                              keep_alive=False, log_file=tmp_path / "gateway.log")

    def direct() -> StdioTransport:
        return StdioTransport(sys.executable, SERVER, keep_alive=False)

    asked = await recalled(direct(), "recall", mode, True)
    assert asked == (False, {"said": "with context thisServer"}), asked
    assert await recalled(gateway("shared"), "ts_recall", mode, True) == asked
    assert await recalled(gateway("per_client"), "ts_recall", mode, True) == asked
    # A host that did not declare it: the server refuses, as connected directly
    refused, said = await recalled(direct(), "recall", mode, False)
    assert refused and "did not declare sampling.context" in said, said
    refused, said = await recalled(gateway("per_client"), "ts_recall", mode, False)
    assert refused and "did not declare sampling.context" in said, said
