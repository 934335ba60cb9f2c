"""How a configured server is reached: one fastmcp transport per connect attempt."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from fastmcp.client.transports import ClientTransport, SSETransport

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.http_tap import FastHttpTransport, HttpTap
from fast_mcp_gateway.upstream.stdio_tap import RawTap, TappedStdioTransport

TransportFactory = Callable[[ServerConfig, TextIO | None], ClientTransport]
SideDoor = RawTap | HttpTap
"""A live session's raw ``tools/call`` path beside it (``transport.tap``): the express
lanes' requests skip the SDK's client stack there."""


def default_transport(config: ServerConfig, stderr: TextIO | None) -> ClientTransport:
    """Build the fastmcp transport for a configured server (one connection, no keep-alive)."""
    if config.kind == "stdio":
        assert config.command is not None
        return TappedStdioTransport(
            config.command,
            list(config.args),
            env=dict(config.env) or None,
            cwd=config.cwd,
            keep_alive=False,
            log_file=stderr,
        )
    assert config.url is not None
    if config.kind == "sse":
        return SSETransport(config.url, headers=dict(config.headers) or None)
    # The SDK's streamable-HTTP client, plus a raw side door for 2026-07-28 calls.
    transport = FastHttpTransport(config.url, headers=dict(config.headers) or None)
    transport.max_message_bytes = config.max_message_bytes
    return transport
