"""A stdio replica for failover tests: read-only and side-effecting tools, both slow-able;
one that crashes its process once."""

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


@mcp.tool(annotations={"readOnlyHint": True})
def crash_once(marker: str) -> int:
    """Read-only, yet its first call (no ``marker`` file yet) ends this process mid-call."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(3)
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
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
