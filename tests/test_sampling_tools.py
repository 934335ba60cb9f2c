"""A server sampling with tools (SEP-1577) through the gateway, as connected directly.

The SDK's session declared ``sampling: {}`` for every upstream session, and a server of
either SDK checks ``sampling.tools`` before it offers tools: a tool-using server
(``tests/servers/tool_sampler.py``) failed through the gateway ("Client does not
support sampling tools capability") where a host declaring it, connected directly, was
asked (``upstream/ask_details.py``, trial14).  A host that did not declare it is refused
in the same words as connected directly.  FastMCP hosts (handshake era) over stdio, on
the express lane and the full path.
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
TOOLS = types.SamplingCapability(tools=types.SamplingToolsCapability())


async def sample(messages: Any, params: Any, context: Any) -> Any:
    assert [tool.name for tool in params.tools] == ["lookup"], params
    return types.CreateMessageResultWithTools(
        role="assistant", model="m", stop_reason="toolUse",
        content=[types.ToolUseContent(id="u1", name="lookup", input={"word": "w"})])


async def planned(target: Any, tool: str, declared: bool) -> tuple[bool, Any]:
    async with Client(target, mode="legacy", sampling_handler=sample,
                      sampling_capabilities=TOOLS if declared else None) as host:
        result = await host.call_tool_mcp(tool, {"task": "find w"})
    return result.is_error, result.structured_content or result.content[0].text


@pytest.mark.parametrize("lane", [True, False])
async def test_a_hosts_sampling_with_tools_reaches_it_as_connected_directly(
        tmp_path: Path, lane: bool) -> None:
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"servers": {"ts": {"command": sys.executable,
                                                     "args": SERVER}}}))

    def gateway() -> StdioTransport:
        return StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve", "--config",
                                               str(config), "--no-db", "--startup-wait", "60"],
                              env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower()},
                              keep_alive=False, log_file=tmp_path / "gateway.log")

    direct = await planned(StdioTransport(sys.executable, SERVER, keep_alive=False),
                           "plan", True)
    assert direct == (False, {"stop": "toolUse", "types": ["tool_use"]})
    assert await planned(gateway(), "ts_plan", True) == direct
    # A host that did not declare it: refused as the server's own SDK refuses it
    refused, said = await planned(StdioTransport(sys.executable, SERVER, keep_alive=False),
                                  "plan", False)
    assert refused and "Client does not support sampling tools capability" in said, said
    refused, said = await planned(gateway(), "ts_plan", False)
    assert refused and "Client does not support sampling tools capability" in said, said
    assert "did not declare sampling.tools" in said
