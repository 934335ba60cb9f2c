"""A stdio upstream whose ``flood`` logs 64 KiB warnings (``tick``: progress) until
``FLOOD_STOP`` (a path) exists (for tests/test_slow_hosts.py; ``idle_flood``: outside any
call, tests/test_slow_get_stream.py); ``ping`` answers at once, ``hold`` once stopped.
A log's text repeats ``char``: 64 KiB of UTF-8 whatever its size (an emoji: 16,384
characters)."""

import asyncio
import os

import anyio
from fastmcp import Context, FastMCP

mcp = FastMCP("flood")
STOP = anyio.Path(os.environ.get("FLOOD_STOP", "stop"))


def _blob(char: str) -> str:
    return char * (65536 // len(char.encode()))


@mcp.tool
async def flood(ctx: Context, char: str = "x") -> int:
    blob, sent = _blob(char), 0
    while not await STOP.exists():
        # A plain string (``ctx.warning`` sends a dict: {"msg": ..., "extra": ...}).
        await ctx.session.send_log_message("warning", f"{sent} {blob}",
                                           related_request_id=ctx.request_id)
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
async def idle_flood(ctx: Context, char: str = "x") -> str:
    """Return at once; then log 64 KiB warnings outside any call (its client's idle
    logs) until ``FLOOD_STOP`` exists."""
    session, blob = ctx.session, _blob(char)

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
async def hold() -> str:
    """Log nothing; answer once ``FLOOD_STOP`` exists (``FLOOD_STOP`` + ".held" tells
    that it runs)."""
    await anyio.Path(f"{STOP}.held").touch()
    while not await STOP.exists():  # noqa: ASYNC110 - a file tells, in another process
        await anyio.sleep(0.05)
    return "held"


@mcp.tool
def ping() -> str:
    return "pong"


if __name__ == "__main__":
    mcp.run()
