"""A minimal stdio MCP server with no dependencies: starts in milliseconds.

Used for the cold-start benchmark of many upstreams, so that what is measured is how
the gateway connects upstreams concurrently, not how long 20 Python interpreters take
to import FastMCP on two cores.  Speaks the handshake era (``initialize``); a
``server/discover`` probe gets "method not found", as from any older server.
Tools: ``echo``, ``add`` and ``sleep_ms`` (answered at once).
"""

from __future__ import annotations

import json
import sys

TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object",
                                     "properties": {"text": {"type": "string"}}}},
    {"name": "add", "inputSchema": {"type": "object", "properties": {
        "a": {"type": "number"}, "b": {"type": "number"}}}},
    {"name": "sleep_ms", "inputSchema": {"type": "object",
                                         "properties": {"ms": {"type": "number"}}}},
]


LIGHT = {"name": "light", "version": "1"}


def answer(request: dict[str, object], tools: list[dict[str, object]] = TOOLS,
           server_info: dict[str, object] = LIGHT) -> dict[str, object] | None:
    """The reply to one JSON-RPC message (None for a notification): ``tools`` listed,
    each call answered with its arguments as text."""
    method, rid = request.get("method"), request.get("id")
    if rid is None:
        return None  # a notification
    params = request.get("params") or {}
    assert isinstance(params, dict)
    if method == "initialize":
        result: object = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": server_info,
        }
    elif method == "tools/list":
        result = {"tools": tools}
    elif method == "tools/call":
        args = params.get("arguments") or {}
        result = {"content": [{"type": "text", "text": json.dumps(args)}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid,
                "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def serve(tools: list[dict[str, object]] = TOOLS,
          server_info: dict[str, object] = LIGHT) -> None:
    """Answer stdin's messages on stdout until stdin ends."""
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = answer(json.loads(line), tools, server_info)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    serve()
