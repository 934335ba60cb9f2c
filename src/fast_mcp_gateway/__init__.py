"""Fast MCP Gateway: one MCP server in front of many, namespaced and supervised."""

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.config.loader import load_config, parse_config
from fast_mcp_gateway.config.schema import GatewayConfig, ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import (
    AdminError,
    ConfigError,
    GatewayError,
    UnknownComponent,
    UpstreamError,
    UpstreamRequestFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from fast_mcp_gateway.gateway import Gateway

__all__ = [
    "AdminError",
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "GatewaySettings",
    "ServerConfig",
    "UnknownComponent",
    "UpstreamError",
    "UpstreamRequestFailed",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "__version__",
    "load_config",
    "parse_config",
]
