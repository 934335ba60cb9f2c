"""A stdio upstream that quotes what it was given when it refuses it: a tool's
``isError`` text and a prompt's JSON-RPC error answer; ``enroll`` crashes printing its
input (secrets26: keys the operator added to ``redact_keys``)."""

import os
import sys
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import PromptError, ToolError

mcp = FastMCP("echoing-input")


@mcp.tool
def configure(options: dict[str, Any], key: str = "", session_id: str = "") -> str:
    raise ToolError(f"bad options {options!r} (key {key}, session {session_id})")


@mcp.tool
def enroll(user: str, ssn: str) -> str:
    """Crashes printing its input, as a server that dumps its state on a fatal error."""
    print(f"fatal: enroll failed for {user}:{ssn}", file=sys.stderr, flush=True)
    os._exit(1)


@mcp.prompt
def lookup(ssn: str, user: str = "ada") -> str:
    raise PromptError(f"no record under {ssn} for {user}")


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False)
