"""How a configured server is reached: one transport per connect attempt.

stdio servers use the gateway's own ``TappedStdioTransport``; HTTP and SSE servers
fastmcp's transports, imported on first use: ``fastmcp.client`` brings its auth and
token-storage libraries, which a gateway with only stdio upstreams never loads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.session import RelaySession
from fast_mcp_gateway.upstream.stdio_tap import TappedStdioTransport

if TYPE_CHECKING:
    from fastmcp.client.transports import ClientTransport
    from fastmcp.client.transports.base import TransportOptions

TransportFactory = Callable[[ServerConfig, TextIO | None], "ClientTransport"]


def default_transport(config: ServerConfig, stderr: TextIO | None) -> ClientTransport:
    """Build the transport for a configured server (one connection, no keep-alive)."""
    if config.kind == "stdio":
        assert config.command is not None
        return TappedStdioTransport(
            config.command,
            list(config.args),
            env=dict(config.env) or None,
            cwd=config.cwd,
            log_file=stderr,
            session_class=RelaySession,
        )
    assert config.url is not None
    from fastmcp.client.transports import SSETransport, StreamableHttpTransport

    if config.kind == "sse":
        return SSETransport(config.url, headers=dict(config.headers) or None)
    return StreamableHttpTransport(config.url, headers=dict(config.headers) or None)


def relay_options(transport: ClientTransport) -> TransportOptions | None:
    """The ``transport_options`` a session of ``transport`` is opened with: every
    session is a ``RelaySession`` (results are relayed, not validated here).  The stdio
    transport is built with it (no fastmcp options needed); any other, a fastmcp one
    (also a test's in-memory transport), gets fastmcp's ``TransportOptions``."""
    if isinstance(transport, TappedStdioTransport):
        return None
    return _relay_options()


@functools.cache
def _relay_options() -> TransportOptions:
    from fastmcp.client.transports.base import TransportOptions

    return TransportOptions(session_class=RelaySession)
