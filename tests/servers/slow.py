"""An upstream whose ``wait`` tool runs until cancelled, writing what happened to a file.

``python slow.py EVENTS``: each event (``started``, ``cancelled``, ``finished``) is one
line appended to EVENTS, so a test can wait for it from outside the process.
``again`` (read-only, so a gateway retries it when it times out): its first call reports
progress 1 and 2, then runs until cancelled; each later call reports progress 1 and
answers.  ``hang`` (read-only too) runs until cancelled, every time.
"""

from __future__ import annotations

import sys

import anyio
from fastmcp import Context, FastMCP

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


calls = {"again": 0}


@mcp.tool(annotations={"readOnlyHint": True})
async def again(ctx: Context) -> str:
    """The first call hangs after two steps of progress; the next ones answer."""
    calls["again"] += 1
    if calls["again"] == 1:
        await ctx.report_progress(1, 2)
        await ctx.report_progress(2, 2)
        await anyio.sleep_forever()
    await ctx.report_progress(1, 2)
    return f"answered at call {calls['again']}"


@mcp.tool(annotations={"readOnlyHint": True})
async def hang() -> str:
    """Never answers: only a cancellation ends it."""
    await anyio.sleep_forever()
    return "unreachable"


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False)
