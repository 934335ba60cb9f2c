"""A streamable-HTTP upstream that does not offer 2026-07-28, as the TypeScript SDK's
servers (e.g. ``@modelcontextprotocol/server-everything streamableHttp``) answer today:
a ``server/discover`` POST gets HTTP 400 with a JSON-RPC -32600, the handshake works.

    python handshake_only.py PORTFILE

Serves on 127.0.0.1 (a free port, written to PORTFILE) with the MCP SDK's lowlevel
``Server``; one tool, ``echo``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import mcp_types as types
from loopback_http import serve
from mcp.server.lowlevel import Server

_TOOL = types.Tool(name="echo", description="echo",
                   input_schema={"type": "object", "properties": {"text": {"type": "string"}}})


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[_TOOL])


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    text = str((params.arguments or {}).get("text", ""))
    return types.CallToolResult(content=[types.TextContent(text=text)])


server: Server[Any] = Server("handshake-only", on_list_tools=list_tools,
                             on_call_tool=call_tool)


def refusing_discover(app: Any) -> Any:
    """``app``, except that a ``server/discover`` POST is refused as the TS SDK refuses it."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if isinstance(request, dict) and request.get("method") == "server/discover":
            answer = json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "error": {
                "code": -32600, "message": "Bad Request: Server not initialized"}}).encode()
            await send({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer)).encode())]})
            await send({"type": "http.response.body", "body": answer})
            return None
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await app(scope, replay, send)

    return wrapped


async def main() -> None:
    await serve(refusing_discover(server.streamable_http_app(streamable_http_path="/mcp")),
                sys.argv[1])


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    anyio.run(main)
