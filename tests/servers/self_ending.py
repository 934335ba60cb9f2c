"""A stdio upstream whose tools end its own process: by exit code, or by a signal."""

import os
import signal as signals

from fastmcp import FastMCP

mcp = FastMCP("self_ending")


@mcp.tool
def exit_with(code: int) -> str:
    os._exit(code)


@mcp.tool
def kill_self(signal: int = int(signals.SIGKILL)) -> str:
    os.kill(os.getpid(), signal)
    return "still here"


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
