"""A stdio replica that hangs its calls on demand, while it still answers pings.

``python hangs.py DIR``: ``work`` answers this process's pid at once, unless the file
``DIR/hang-<pid>`` exists: then the call is taken and never answered (only a
cancellation ends it) -- a tool stuck on a lock or a dead connection of its own, while
the server's loop, and so its answers to health pings, go on.  ``pid`` answers the
pid at once, always (another tool of the server, working).  ``wait`` is a slow tool of
a healthy server: it runs until cancelled, every time.  Each call that will not
answer adds a line to ``DIR/stuck`` first (a test waits for it from outside).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
from fastmcp import FastMCP

DIR = Path(sys.argv[1])
mcp = FastMCP("hangs")


@mcp.tool()
async def work() -> int:
    """This replica's pid; never answered while ``DIR/hang-<pid>`` exists."""
    if (DIR / f"hang-{os.getpid()}").exists():
        await stuck()
    return os.getpid()


@mcp.tool()
async def pid() -> int:
    """This replica's pid, at once, always (while ``work`` hangs too)."""
    return os.getpid()


@mcp.tool()
async def wait() -> str:
    """Runs until cancelled (a slow tool: its replica is healthy)."""
    await stuck()
    return "unreachable"


async def stuck() -> None:
    with (DIR / "stuck").open("a") as sink:
        sink.write(f"{os.getpid()}\n")
    await anyio.sleep_forever()


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
