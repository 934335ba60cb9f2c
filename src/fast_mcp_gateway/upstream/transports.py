"""How a configured server is reached: one fastmcp transport per connect attempt."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from fastmcp.client.transports import ClientTransport, SSETransport, StreamableHttpTransport

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.stdio_tap import TappedStdioTransport

TransportFactory = Callable[[ServerConfig, TextIO | None], ClientTransport]


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
    return StreamableHttpTransport(config.url, headers=dict(config.headers) or None)
