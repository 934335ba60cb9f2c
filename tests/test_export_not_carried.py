"""A Claude-Desktop export names the settings it does not carry.

``gateway_export_servers`` with ``format: claude`` dropped every gateway-only key
(``isolation``, ``replicas``, ``balance``, ``namespace``, ``description``...) without a
word: a user moving back to Claude Desktop lost them without knowing.  The JSON stays
the tool's result (its structured content and first text block, to copy as it is); a
second text block warns, naming each server's keys (``config/registrations.not_carried``).
A real gateway over in-process upstreams, the tool called through MCP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastmcp import Client

from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio


async def test_a_claude_export_names_the_keys_it_does_not_carry() -> None:
    gateway = make_gateway(
        {"alpha": memory_entry("alpha", namespace="al", description="the alpha tools",
                               isolation="per_client"),
         "beta": memory_entry("beta")},
        {"alpha": alpha_server(), "beta": beta_server()})
    async with Client(gateway.server, mode="legacy") as client:
        result = await client.call_tool("gateway_export_servers", {"format": "claude"})
        exported: Any = json.loads(result.data)
        assert set(exported["mcpServers"]) == {"alpha", "beta"}
        assert "isolation" not in exported["mcpServers"]["alpha"]
        texts = [block.text for block in result.content]  # type: ignore[union-attr]
        assert texts[0] == result.data and len(texts) == 2, texts
        assert texts[1] == (
            "warning: not carried into the Claude-Desktop file (mcpServers has no such "
            "keys: Claude Desktop would run these servers without them): 'alpha': "
            "description, isolation, namespace; export as yaml to keep every setting")
        assert result.meta == {"not_carried": {"alpha": ["description", "isolation",
                                                         "namespace"]}}
        # Nothing lost: the JSON alone, as before; YAML carries everything.
        plain = await client.call_tool("gateway_export_servers", {"format": "yaml"})
        assert len(plain.content) == 1 and "isolation: per_client" in plain.data
