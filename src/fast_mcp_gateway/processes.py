"""Finding and stopping the processes of stdio upstreams.

The SDK spawns each stdio server in a session of its own (so its process group is
its pid) and does not tell us the pid.  We give every server a stderr pipe of our own,
so its pid is the child of ours whose fd 2 is that pipe: exact, even with many
servers starting at once.  Linux exposes this in /proc; elsewhere the pid stays
unknown and the SDK's own shutdown is all there is.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def pipe_inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def child_with_stderr(inode: int) -> int | None:
    """The pid of our direct child whose stderr is the pipe ``inode``, if any."""
    me, target = os.getpid(), f"pipe:[{inode}]"
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            if ppid == me and os.readlink(entry / "fd" / "2") == target:
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def signal_group(pid: int, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Signal the process group led by ``pid`` (the server and anything it spawned)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
        return True
    return False
