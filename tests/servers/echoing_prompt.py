"""A stdio upstream whose prompt refuses its credential argument quoting it: its
JSON-RPC error answer echoes what the host sent (review24)."""

from fastmcp import FastMCP
from fastmcp.exceptions import PromptError

mcp = FastMCP("echoing-prompt")


@mcp.prompt
def login(api_token: str, user: str = "ada") -> str:
    raise PromptError(f"token {api_token} is not valid for {user}")


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False)
