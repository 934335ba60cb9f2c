"""An upstream on the MCP SDK's own lowlevel ``Server`` (no FastMCP) whose tools ask
their client by push: ``session.elicit_form`` / ``create_message`` / ``list_roots``
during the call, which only the handshake era can carry.

    python lowlevel_pusher.py PORTFILE

Serves streamable HTTP on 127.0.0.1 (a free port, written to PORTFILE).  On a
2026-07-28 request the SDK refuses the push with ``NoBackChannelError`` (-32600
"Cannot send 'elicitation/create': this transport context has no back-channel for
server-initiated requests."): ``ask`` lets it become the call's JSON-RPC error (what a
lowlevel handler does by default), ``ask_wrapped`` returns its text as an ``isError``
result (what a handler that catches its errors does), ``sample`` and ``roots`` push
the other two kinds.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import mcp_types as types
from loopback_http import serve
from mcp.server.lowlevel import Server

_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"tag": {"type": "string"}}}
_TOOLS = [types.Tool(name=name, description=f"{name} by push", input_schema=_SCHEMA)
          for name in ("ask", "ask_wrapped", "sample", "roots")]


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=_TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    tag = (params.arguments or {}).get("tag", "")
    session = ctx.session
    if params.name == "ask_wrapped":
        try:
            answer = await session.elicit_form(
                f"question for {tag}", {"type": "object", "properties": {
                    "value": {"type": "string"}}}, ctx.request_id)
        except Exception as exc:  # noqa: BLE001 - a handler that reports its errors
            return types.CallToolResult(is_error=True,
                                        content=[types.TextContent(text=str(exc))])
        return _text(f"{tag}:{answer.action}:{(answer.content or {}).get('value')}")
    if params.name == "ask":
        answer = await session.elicit_form(
            f"question for {tag}", {"type": "object", "properties": {
                "value": {"type": "string"}}}, ctx.request_id)
        return _text(f"{tag}:{answer.action}:{(answer.content or {}).get('value')}")
    if params.name == "sample":
        sampled = await session.create_message(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(
                text=f"sample for {tag}"))], max_tokens=10, related_request_id=ctx.request_id)
        return _text(f"{tag}:{getattr(sampled.content, 'text', '')}")
    roots = await session.list_roots()
    return _text(f"{tag}:{[str(r.uri) for r in roots.roots]}")


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)])


server: Server[Any] = Server("lowlevel-pusher", on_list_tools=list_tools,
                             on_call_tool=call_tool)


async def main() -> None:
    await serve(server.streamable_http_app(streamable_http_path="/mcp"), sys.argv[1])


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    anyio.run(main)
