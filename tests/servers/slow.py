"""An upstream whose ``wait`` tool runs until cancelled, writing what happened to a file.

``python slow.py EVENTS``: each event (``started``, ``cancelled``, ``finished``) is one
line appended to EVENTS, so a test can wait for it from outside the process.
"""

from __future__ import annotations

import sys

import anyio
from fastmcp import FastMCP

EVENTS = sys.argv[1]
mcp = FastMCP("slow")


def note(event: str) -> None:
    with open(EVENTS, "a") as sink:
        sink.write(event + "\n")


@mcp.tool()
async def wait(seconds: float = 60.0) -> str:
    """Sleep ``seconds`` (long): only a cancellation ends it early."""
    note("started")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        note("cancelled")
        raise
    note("finished")
    return "done"


if __name__ == "__main__":
    mcp.run(show_banner=False)
