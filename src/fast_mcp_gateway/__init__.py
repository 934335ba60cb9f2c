"""Fast MCP Gateway: one MCP server in front of many, namespaced and supervised."""

__version__ = "0.1.0"

from fast_mcp_gateway.config import GatewayConfig, ServerConfig, load_config, parse_config
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
from fast_mcp_gateway.settings import GatewaySettings

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
