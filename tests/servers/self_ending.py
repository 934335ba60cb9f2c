"""A stdio upstream whose tools end its own process: by exit code, or by a signal; or
end its connection only (``close_output``: closes its stdout and runs on), or both
(``close_output_and_exit``)."""

import fcntl
import os
import signal as signals
import stat

import anyio
from fastmcp import FastMCP

mcp = FastMCP("self_ending")


@mcp.tool
def exit_with(code: int) -> str:
    os._exit(code)


@mcp.tool
def kill_self(signal: int = int(signals.SIGKILL)) -> str:
    os.kill(os.getpid(), signal)
    return "still here"


@mcp.tool
def close_output_and_exit(code: int) -> str:
    _close_output()
    os._exit(code)  # a moment after: the gateway may see its stdout closed first


@mcp.tool
async def close_output() -> str:
    _close_output()
    await anyio.sleep_forever()
    return "never"


def _close_output() -> None:
    # The SDK writes the wire to a copy of fd 1 (fd 1 itself it points at stderr): every
    # pipe written to that is not stderr's is the wire.
    stderr = os.fstat(2).st_ino
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        try:
            written = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
            if written and stat.S_ISFIFO((st := os.fstat(fd)).st_mode) and st.st_ino != stderr:
                os.close(fd)
        except OSError:
            pass


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
