"""A stdio replica for failover tests: read-only and side-effecting tools, both slow-able."""

import os
import sys
from pathlib import Path

import anyio
from fastmcp import FastMCP

mcp = FastMCP("replica")


@mcp.tool(annotations={"readOnlyHint": True})
async def read(delay: float = 0.0) -> int:
    """Idempotent: returns this replica's pid after an optional delay."""
    if delay:
        await anyio.sleep(delay)
    return os.getpid()


@mcp.tool
async def append(path: str, delay: float = 0.0) -> int:
    """NOT idempotent: appends a line to a file (then waits), returns the pid."""
    with Path(path).open("a") as out:  # noqa: ASYNC230 - one tiny local write
        out.write(f"{os.getpid()}\n")
    print(f"appended by {os.getpid()}", file=sys.stderr, flush=True)
    if delay:
        await anyio.sleep(delay)
    return os.getpid()


if __name__ == "__main__":
    mcp.run(show_banner=False, log_level="WARNING")
