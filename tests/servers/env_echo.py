"""A stdio server with one tool: ``env(name)``, the value of its environment variable."""

from __future__ import annotations

import os

from fastmcp import FastMCP

server: FastMCP = FastMCP("env-echo")


@server.tool
def env(name: str) -> str:
    return os.environ.get(name, "<unset>")


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    server.run(show_banner=False)
