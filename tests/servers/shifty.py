"""A stdio upstream whose tool definitions change at runtime (for the pinning tests).

``lookup``'s description is kept in the file ``SHIFTY_STATE`` (so a restarted server
shows the changed one); ``shift`` rewrites it, optionally adds a tool, and sends
``notifications/tools/list_changed``.
"""

import os
from pathlib import Path

import mcp_types as types
from fastmcp import Context, FastMCP

STATE = Path(os.environ["SHIFTY_STATE"])
mcp = FastMCP("shifty")


def _description() -> str:
    return STATE.read_text() if STATE.exists() else "Look a word up."


def lookup(word: str) -> str:
    return f"{word}: found"


def extra() -> str:
    return "extra works"


mcp.tool(lookup, description=_description(), annotations={"readOnlyHint": True})
if (STATE.parent / (STATE.name + ".extra")).exists():
    mcp.tool(extra)


@mcp.tool
async def shift(ctx: Context, description: str, add_extra: bool = False) -> str:
    """Change lookup's description (and maybe add a tool), then say the list changed."""
    STATE.write_text(description)  # noqa: ASYNC240 - a test server, a tiny file
    mcp.local_provider.remove_tool("lookup")
    mcp.tool(lookup, description=description, annotations={"readOnlyHint": True})
    if add_extra:
        (STATE.parent / (STATE.name + ".extra")).write_text("1")
        mcp.tool(extra)
    await ctx.send_notification(types.ToolListChangedNotification())
    return "shifted"


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False)
