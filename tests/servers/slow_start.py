"""A stdio upstream that is slow to start until the test releases it.

``slow_start.py RELEASE_FILE``: until RELEASE_FILE exists it writes a progress line to
stderr now and then (as a server importing or warming up would) and serves nothing;
then it serves a tool, a resource and a prompt.  The test creates the file: no timing.
``--per-process``: the Nth process started (counted by the files
``RELEASE_FILE.started.N`` it creates) waits for ``RELEASE_FILE.N`` instead, so that a
test releases each process on its own.  ``--fail``: once released, it exits (status 3)
instead of serving, as a server whose start failed.  ``SLOW_WITHOUT=pid`` in its
environment: it serves no ``pid`` tool.
"""

import os
import sys
import time
from pathlib import Path

release = Path(sys.argv[1])
if "--per-process" in sys.argv[2:]:
    n = 1
    while True:
        try:
            os.close(os.open(f"{release}.started.{n}", os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            n += 1
    release = Path(f"{release}.{n}")
print(f"slow_start pid={os.getpid()}: waiting for {release}", file=sys.stderr, flush=True)
while not release.exists():
    print("slow_start: still warming up", file=sys.stderr, flush=True)
    time.sleep(0.05)
if "--fail" in sys.argv[2:]:
    print("slow_start: failed to start (--fail)", file=sys.stderr, flush=True)
    sys.exit(3)

from fastmcp import FastMCP  # noqa: E402 - the slow part comes first on purpose

mcp = FastMCP("slow")


def pid() -> int:
    return os.getpid()


if os.environ.get("SLOW_WITHOUT") != "pid":  # an edition that dropped the tool
    mcp.tool(pid)


@mcp.resource("slow://status")
def status() -> str:
    return "warm"


@mcp.prompt
def greet() -> str:
    return "hello from a slow server"


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
