"""A stdio upstream for lifecycle tests: says hello on stderr, can crash or stall on demand."""

import os
import sys

import anyio
from fastmcp import FastMCP

mcp = FastMCP("well")
print(f"well starting pid={os.getpid()}", file=sys.stderr, flush=True)


@mcp.tool(annotations={"readOnlyHint": True})
def pid() -> int:
    return os.getpid()


@mcp.tool
def echo(text: str) -> str:
    return text


@mcp.tool
def crash(code: int = 3) -> str:
    print("well: crashing on request", file=sys.stderr, flush=True)
    os._exit(code)


@mcp.tool
async def slow(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "slept"


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
