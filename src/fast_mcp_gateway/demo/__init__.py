"""Small MCP servers shipped with the gateway so that ``servers.yaml`` works out of the box.

Run one directly with ``python -m fast_mcp_gateway.demo.notes`` (or ``.clock``).
"""
