"""A stdio upstream that leaks its secret everywhere it can: stderr at start and per
call, a tool error message, and an MCP error response (for the planted-secret test);
``login`` crashes printing the password it was given."""

import os
import sys

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

SECRET = os.environ.get("LEAKY_TOKEN", "")
mcp = FastMCP("leaky")
print(f"starting with token={SECRET} url=https://u:{SECRET}@example.test/x?sig={SECRET}",
      file=sys.stderr, flush=True)


@mcp.tool
def echo(text: str) -> str:
    print(f"echo called; my token is {SECRET}", file=sys.stderr, flush=True)
    return text.upper()


@mcp.tool
def fail(text: str) -> str:
    print(f"failing with {SECRET}", file=sys.stderr, flush=True)
    raise ToolError(f"backend refused credential {SECRET} for {text}")


@mcp.tool
def crash() -> str:
    raise RuntimeError(f"unexpected state, token {SECRET}")


@mcp.tool
def login(user: str, password: str) -> str:
    """Crashes printing its input, as a server that dumps its state on a fatal error."""
    print(f"fatal: login failed for {user}:{password}", file=sys.stderr, flush=True)
    os._exit(1)


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False)
