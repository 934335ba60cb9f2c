"""The ``mcp-gateway`` command line (the only place that configures logging)."""
