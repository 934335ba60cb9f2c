"""A stdio upstream that samples with tools (SEP-1577), as a tool-using agent server does.

``plan(task)`` asks the client's model (``sampling/createMessage``) offering one tool,
``lookup``, and answers with what came back: the model's stop reason and content types.
The SDK checks the client declared ``sampling.tools`` before it sends such a request.
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


if __name__ == "__main__":
    mcp.run(show_banner=False)
