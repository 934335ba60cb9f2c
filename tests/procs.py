"""This process's descendants, read from /proc, for the no-leaked-process check."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from fast_mcp_gateway.upstream.processes import descendants, is_alive


def describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} [{state}] {cmd[:120]}"


def wait_gone(pid: int, ignore: set[int], timeout: float) -> list[str]:
    """Descendants not in ``ignore`` still present after ``timeout`` (polls /proc)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in descendants(pid) if p not in ignore]
        # Reap zombies that are our direct children, if any.
        for p in left:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, os.WNOHANG)
        left = [p for p in descendants(pid) if p not in ignore]
        if not left or time.monotonic() > deadline:
            return [describe(p) for p in left]
        time.sleep(0.05)


def wait_gone_pids(pids: list[int], timeout: float) -> list[int]:
    """Of ``pids`` (any parent), those still alive after ``timeout`` (polls /proc)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if is_alive(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)
