"""A stdio upstream that samples with tools (SEP-1577), as a tool-using agent server does.

``plan(task)`` asks the client's model (``sampling/createMessage``) offering one tool,
``lookup``, and answers with what came back: the model's stop reason and content types.
The SDK checks the client declared ``sampling.tools`` before it sends such a request.
``recall(task)`` samples with ``includeContext: "thisServer"``, which a careful server
asks only of a client declaring ``sampling.context``: without it, it fails saying so.
"""

from __future__ import annotations

import warnings
from typing import Any

import mcp_types as types
from fastmcp import Context, FastMCP

mcp = FastMCP("tool_sampler")
LOOKUP = types.Tool(name="lookup", input_schema={
    "type": "object", "properties": {"word": {"type": "string"}}})


@mcp.tool()
async def plan(task: str, ctx: Context) -> dict[str, Any]:
    with warnings.catch_warnings():  # (sampling is deprecated at 2026-07-28 only)
        warnings.simplefilter("ignore")
        result: Any = await ctx.session.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(text=task))],
            max_tokens=50, tools=[LOOKUP])
    content = result.content if isinstance(result.content, list) else [result.content]
    return {"stop": result.stop_reason, "types": [item.type for item in content]}


@mcp.tool()
async def recall(task: str, ctx: Context) -> dict[str, Any]:
    caps = ctx.session.client_capabilities
    if caps is None or caps.sampling is None or caps.sampling.context is None:
        raise ValueError("the client did not declare sampling.context: includeContext "
                         "cannot be asked")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result: Any = await ctx.session.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(text=task))],
            max_tokens=50, include_context="thisServer")
    return {"said": result.content.text}


if __name__ == "__main__":
    mcp.run(show_banner=False)
