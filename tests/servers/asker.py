"""An upstream that asks its client things during calls and logs between them.

    python asker.py [stdio | http PORTFILE] [--record FILE]

Over ``http`` it serves streamable HTTP on 127.0.0.1 (a free port, written to
PORTFILE).  ``--record`` appends one JSON line per event the tests check from outside
the process: a call started, a cancellation arrived, the headers a request carried.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Context, FastMCP
from fastmcp.server.dependencies import get_http_headers

mcp = FastMCP("asker")
_args = sys.argv[1:]
RECORD = Path(_args[_args.index("--record") + 1]) if "--record" in _args else None


def record(event: str, **fields: Any) -> None:
    if RECORD is not None:
        with RECORD.open("a") as out:
            out.write(json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n")


def _exists(path: str) -> bool:
    return Path(path).exists()


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


@mcp.tool
async def ask(ctx: Context, tag: str) -> str:
    """Elicit an answer to a question that names ``tag``."""
    record("ask", tag=tag)
    result = await ctx.elicit(f"question for {tag}", response_type=str)
    return f"{tag}:{result.action}:{getattr(result, 'data', None)}"


@mcp.tool
async def hold(ctx: Context, tag: str) -> str:
    """Block until cancelled; the cancellation is recorded."""
    record("hold", tag=tag)
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        record("cancelled", tag=tag)
        raise
    return "unreachable"


@mcp.tool
async def hold_then_ask(ctx: Context, tag: str, go: str) -> str:
    """Wait until the file ``go`` exists, then elicit (an ask made late in a call)."""
    record("hold_then_ask", tag=tag)
    try:
        while not Path(go).exists():  # noqa: ASYNC110, ASYNC240 - the test creates it
            await anyio.sleep(0.02)
        result = await ctx.elicit(f"late question for {tag}", response_type=str)
    except anyio.get_cancelled_exc_class():
        record("cancelled", tag=tag)
        raise
    return f"{tag}:{result.action}:{getattr(result, 'data', None)}"


@mcp.tool
def pid() -> int:
    return os.getpid()


@mcp.tool
def whoami() -> str:
    """A digest of the Authorization header this request carried (HTTP only; the value
    itself goes to the record file only)."""
    auth = get_http_headers(include={"authorization"}).get("authorization", "")
    record("whoami", authorization=auth)
    return hashlib.sha256(auth.encode()).hexdigest()


@mcp.tool(annotations={"readOnlyHint": True})
def my_digest() -> str:
    """``whoami``, annotated read-only (its answer may be served stale)."""
    return whoami()


@mcp.tool
async def log_later(ctx: Context, text: str, go: str, level: str = "info") -> str:
    """Return at once; log ``text`` from the background once the file ``go`` exists."""
    session = ctx.session

    async def later() -> None:
        while not Path(go).exists():  # noqa: ASYNC110, ASYNC240 - the test creates it
            await anyio.sleep(0.02)
        await session.send_log_message(level, text, logger="asker")

    _tasks.start_soon(later)
    return "scheduled"


_tasks: Any = None


async def main() -> None:
    global _tasks
    async with anyio.create_task_group() as tg:
        _tasks = tg
        if _args and _args[0] == "http":
            import socket

            import uvicorn

            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            _write(_args[1], str(sock.getsockname()[1]))
            server = uvicorn.Server(uvicorn.Config(mcp.http_app(path="/mcp"),
                                                   log_level="warning", log_config=None))
            await server.serve([sock])
        else:
            await mcp.run_async(show_banner=False, log_level="WARNING")
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    anyio.run(main)
