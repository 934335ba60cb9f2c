"""A stdio upstream that shows how each call reached it (for the express lane tests).

``whoami`` returns the JSON-RPC id the call arrived under: the express lane sends
``gw-N`` ids, the SDK session integers.  ``LANE_MARKS`` names a folder where
``slow`` records how it ended (finished or cancelled).
"""

import os
import sys
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import InputRequiredToolResult
from mcp_types import (
    ElicitRequest,
    ElicitRequestFormParams,
    ImageContent,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
)

# LANE_CACHE_TTL (seconds): its lists carry public 2026-07-28 freshness hints.
_TTL = os.environ.get("LANE_CACHE_TTL")
mcp = FastMCP("lane", cache_ttl=int(_TTL) if _TTL else None,
              cache_scope="public" if _TTL else None)
MARKS = Path(os.environ.get("LANE_MARKS", "."))
print(f"lane upstream pid={os.getpid()}", file=sys.stderr, flush=True)


@mcp.tool(annotations={"readOnlyHint": True})
def whoami(ctx: Context) -> str:
    """The request id this call arrived under."""
    return str(ctx.request_id)


@mcp.tool
def echo(text: str, times: int = 1) -> str:
    return text * times


@mcp.tool
def profile(name: str, tags: list[str] | None = None) -> dict:
    """Structured output with nested values."""
    return {"name": name, "tags": tags or [], "length": len(name), "ratio": 1 / 3}


@mcp.tool
def picture() -> list:
    return [TextContent(type="text", text="a red pixel"),
            ImageContent(type="image", mimeType="image/png", data="iVBORw0KGgo=")]


@mcp.tool
def refuse(reason: str, api_key: str = "") -> str:
    raise ToolError(f"refused: {reason}")


@mcp.tool
async def count(steps: int, ctx: Context) -> int:
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
    return steps


@mcp.tool
async def chatty(ctx: Context) -> str:
    await ctx.info("working on it")
    await ctx.warning("almost there")
    return "done"


@mcp.tool
async def ask_model(question: str, ctx: Context) -> str:
    """Handshake era: a pushed sampling request to the client."""
    answer = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=question))],
        max_tokens=50)
    return f"model said: {answer.content.text}"


@mcp.tool
async def guard(ctx: Context) -> Any:
    """2026-07-28: ask for a name (input_required), answer once the client retries."""
    answer = (ctx.input_responses or {}).get("name")
    if answer is not None:
        return f"hello {(answer.content or {}).get('name')} ({answer.action})"
    return InputRequiredToolResult(InputRequiredResult(input_requests={
        "name": ElicitRequest(params=ElicitRequestFormParams(
            message="Your name?", requested_schema={
                "type": "object", "properties": {"name": {"type": "string"}},
                "required": ["name"]}))}))


@mcp.tool
async def slow(seconds: float, tag: str) -> str:
    (MARKS / f"{tag}.started").write_text("started")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        (MARKS / f"{tag}.cancelled").write_text("cancelled")
        raise
    (MARKS / f"{tag}.finished").write_text("finished")
    return "slept"


@mcp.tool
def crash() -> str:
    os._exit(5)


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
