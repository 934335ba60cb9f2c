"""The benchmark's upstream: a tiny FastMCP stdio server.

Run as ``python benchmarks/upstream.py``.  Both the direct client and the gateway
talk to exactly this process, so any difference between them is the gateway's.

Tools:

* ``echo(text)``: returns ``text`` (the per-call latency probe);
* ``add(a, b)``: returns ``a + b``;
* ``sleep_ms(ms)``: waits ``ms`` milliseconds without blocking the event loop, so
  concurrent calls overlap (the concurrency probe).
"""

from __future__ import annotations

import anyio
from fastmcp import FastMCP


def build() -> FastMCP:
    """The benchmark upstream server."""
    mcp: FastMCP = FastMCP("bench-upstream")

    @mcp.tool
    def echo(text: str = "") -> str:
        """Return ``text`` unchanged."""
        return text

    @mcp.tool
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @mcp.tool
    async def sleep_ms(ms: float = 50.0) -> float:
        """Sleep ``ms`` milliseconds (asynchronously) and return ``ms``."""
        await anyio.sleep(ms / 1000)
        return ms

    return mcp


if __name__ == "__main__":
    build().run(show_banner=False, log_level="WARNING")
