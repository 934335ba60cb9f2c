"""A stdio upstream whose ``flood`` logs 64 KiB warnings (``tick``: progress) until
``FLOOD_STOP`` (a path) exists (for tests/test_slow_hosts.py; ``idle_flood``: outside any
call, tests/test_slow_get_stream.py); ``ping`` answers at once."""

import asyncio
import os

import anyio
from fastmcp import Context, FastMCP

mcp = FastMCP("flood")
STOP = anyio.Path(os.environ.get("FLOOD_STOP", "stop"))


@mcp.tool
async def flood(ctx: Context) -> int:
    blob, sent = "x" * 65536, 0
    while not await STOP.exists():
        await ctx.warning(f"{sent} {blob}")
        sent += 1
    return sent


@mcp.tool
async def tick(ctx: Context) -> int:
    """Progress with a 1 KB message each, until ``FLOOD_STOP`` exists."""
    text, sent = "p" * 1000, 0
    while not await STOP.exists():
        await ctx.report_progress(sent, None, text)
        sent += 1
    return sent


_idle: set[asyncio.Task[None]] = set()


@mcp.tool
async def idle_flood(ctx: Context) -> str:
    """Return at once; then log 64 KiB warnings outside any call (its client's idle
    logs) until ``FLOOD_STOP`` exists."""
    session, blob = ctx.session, "x" * 65536

    async def logs() -> None:
        sent = 0
        while not await STOP.exists():
            await session.send_log_message("warning", f"{sent} {blob}", logger="idle")
            sent += 1

    task = asyncio.get_running_loop().create_task(logs())
    _idle.add(task)
    task.add_done_callback(_idle.discard)
    return "flooding"


@mcp.tool
def ping() -> str:
    return "pong"


if __name__ == "__main__":
    mcp.run()
