"""A streamable-HTTP upstream whose answers carry bare ``NaN`` / ``Infinity`` tokens.

    python non_finite_http.py PORTFILE

The MCP SDK's lowlevel ``Server`` (either era) with one tool, ``non_finite(where)``,
whose answer holds stand-in numbers where ``raw_stdio.py --non-finite`` writes NaN and
infinities (``structured``, ``meta``, ``resource``, ``progress``; ``ask``: an
``input_required`` whose schema's default is NaN, its answer told); the SDK writes no
such token, so the app's response bytes have each stand-in replaced by one, padded
with JSON whitespace to the same length (Content-Length stays right).
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import mcp_types as types
from loopback_http import serve
from mcp.server.lowlevel import Server

NAN, INF, NEG = 111111.25, 222222.25, 333333.25
TOKENS = {b"111111.25": b"NaN      ", b"222222.25": b"Infinity ", b"333333.25": b"-Infinity"}
_TOOL = types.Tool(name="non_finite", input_schema={
    "type": "object", "properties": {"where": {"type": "string"}}})


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[_TOOL])


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    where = (params.arguments or {}).get("where")
    result = types.CallToolResult(content=[types.TextContent(text="finite text")])
    if where == "structured":
        result.structured_content = {"x": NAN, "y": INF, "z": [1, NEG]}
    elif where == "meta":
        result.meta = {"score": NAN, "range": [NEG, INF]}
    elif where == "resource":
        result.content.append(types.EmbeddedResource(resource=types.TextResourceContents(
            uri="raw://n", text="t", _meta={"n": NEG})))
    elif where == "progress":
        meta: Any = params.meta or {}
        token = meta.get("progress_token", meta.get("progressToken"))
        if token is not None:
            await ctx.session.send_progress_notification(token, NAN, INF,
                                                         related_request_id=ctx.request_id)
    elif where == "ask":  # 2026-07-28: a question whose schema's default is NaN
        answer = (params.input_responses or {}).get("n")
        if answer is None:
            return types.InputRequiredResult(input_requests={  # type: ignore[return-value]
                "n": types.ElicitRequest(params=types.ElicitRequestFormParams(
                    message="a number?", requested_schema={"type": "object", "properties": {
                        "n": {"type": "number", "default": NAN}}}))})
        result.content = [types.TextContent(text=f"answered {answer}")]
    return result


server: Server[Any] = Server("non-finite", on_list_tools=list_tools, on_call_tool=call_tool)


def with_tokens(app: Any) -> Any:
    """``app`` with each stand-in number of its response bodies written as a token."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Any) -> None:
            if message.get("type") == "http.response.body" and message.get("body"):
                body = message["body"]
                for number, token in TOKENS.items():
                    body = body.replace(number, token)
                message = {**message, "body": body}
            await send(message)

        await app(scope, receive, sending)

    return wrapped


async def main() -> None:
    await serve(with_tokens(server.streamable_http_app(streamable_http_path="/mcp")),
                sys.argv[1])


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    anyio.run(main)
