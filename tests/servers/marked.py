"""A stdio upstream that leaves a mark when its process starts: ``<MARKS>/<MARK_NAME>
.started`` (its pid), so a test can tell which servers a gateway spawned.
``MARK_CACHE_TTL`` (seconds) makes its lists carry 2026-07-28 freshness hints."""

import os
from pathlib import Path

from fastmcp import FastMCP

NAME = os.environ.get("MARK_NAME", "marked")
(Path(os.environ.get("MARKS", ".")) / f"{NAME}.started").write_text(str(os.getpid()))
TTL = os.environ.get("MARK_CACHE_TTL")
mcp = FastMCP(NAME, cache_ttl=int(TTL) if TTL else None, cache_scope="public" if TTL else None)


@mcp.tool
def hello() -> str:
    return f"hello from {NAME}"


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False)
