"""The package version (its own module so that any layer can import it without cycles)."""

__version__ = "0.1.0"

GATEWAY_NAME = "fast-mcp-gateway"
"""The gateway's ``serverInfo`` name (and its ``clientInfo`` name to upstreams)."""
