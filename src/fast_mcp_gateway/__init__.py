"""Fast MCP Gateway: one MCP server in front of many, namespaced and supervised."""

from typing import TYPE_CHECKING, Any

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.config.loader import load_config, parse_config
from fast_mcp_gateway.config.schema import GatewayConfig, ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import (
    AdminError,
    BackgroundTaskFailed,
    ConfigError,
    GatewayError,
    UnknownComponent,
    UpstreamError,
    UpstreamRequestFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    from fast_mcp_gateway.gateway import Gateway
    from fast_mcp_gateway.routing.readiness import Readiness


def __getattr__(name: str) -> Any:
    # The server stack (FastMCP, the SDK, Starlette) takes seconds to import on a small
    # machine: ``mcp-gateway serve`` starts its upstreams before it is loaded.
    if name == "Gateway":
        from fast_mcp_gateway.gateway import Gateway

        return Gateway
    if name == "Readiness":  # what ``Gateway.wait_ready`` returns
        from fast_mcp_gateway.routing.readiness import Readiness

        return Readiness
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (``dir()``, completion in a REPL)
    return sorted({*globals(), *__all__})


__all__ = [
    "AdminError",
    "BackgroundTaskFailed",
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "GatewaySettings",
    "Readiness",
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
