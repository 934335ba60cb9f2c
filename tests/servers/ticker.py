"""An upstream whose ``work`` tool reports progress only when the test lets it.

``python ticker.py DIR`` serves stdio; ``python ticker.py DIR http PORT_FILE`` serves
streamable HTTP on 127.0.0.1 (its port written to PORT_FILE).  What the server did is
appended to ``DIR/events``, one line each, so a test can wait for it from outside.

``work`` (read-only, so a gateway may retry it): notes ``started``, then for n = 1, 2,
...: once the file ``DIR/tick-n`` exists it reports progress n; once ``DIR/finish``
exists it answers ``finished after <n-1> ticks``.  Without a file it reports nothing
and runs on until cancelled (noting ``cancelled``).  The resource ``ticker://work`` and
the prompt ``work`` do the same (a resource read and a prompt get that report
progress).  ``hang`` (read-only) notes ``hang started`` and runs until cancelled.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from fastmcp import Context, FastMCP

DIR = Path(sys.argv[1])
mcp = FastMCP("ticker")


def note(event: str) -> None:
    with (DIR / "events").open("a") as sink:
        sink.write(event + "\n")


async def next_file(*names: str) -> str:
    """The first of ``names`` to exist in DIR (the test writes them)."""
    while True:
        for name in names:
            if (DIR / name).exists():
                return name
        await anyio.sleep(0.01)


@mcp.tool(annotations={"readOnlyHint": True})
async def work(ctx: Context) -> str:
    """Reports progress n when the test writes tick-n; answers when it writes finish."""
    return await ticking(ctx)


@mcp.resource("ticker://work")
async def work_resource(ctx: Context) -> str:
    """``work`` as a resource read."""
    return await ticking(ctx)


@mcp.prompt(name="work")
async def work_prompt(ctx: Context) -> str:
    """``work`` as a prompt get."""
    return await ticking(ctx)


async def ticking(ctx: Context) -> str:
    note("started")
    n = 1
    try:
        while await next_file(f"tick-{n}", "finish") != "finish":
            await ctx.report_progress(n)
            note(f"progressed {n}")
            n += 1
    except anyio.get_cancelled_exc_class():
        note("cancelled")
        raise
    return f"finished after {n - 1} ticks"


@mcp.tool(annotations={"readOnlyHint": True})
async def hang() -> str:
    """Never answers: only a cancellation ends it."""
    note("hang started")
    await anyio.sleep_forever()
    return "unreachable"


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    if sys.argv[2:3] == ["http"]:
        from loopback_http import serve

        anyio.run(serve, mcp.http_app(path="/mcp"), sys.argv[3])
    else:
        mcp.run(show_banner=False, log_level="WARNING")
