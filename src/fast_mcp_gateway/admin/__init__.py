"""Operations on the gateway itself (servers, routes, history, inspector) and their
``gateway_*`` MCP tools."""
