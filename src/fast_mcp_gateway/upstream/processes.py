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
from typing import Protocol

import anyio


def pipe_inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def process_tree() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process (empty where /proc does not exist)."""
    tree: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return tree
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    tree, found, stack = process_tree(), [], [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def child_with_stderr(inode: int) -> int | None:
    """The pid of our direct child whose stderr is the pipe ``inode``, if any."""
    target = f"pipe:[{inode}]"
    for pid in process_tree().get(os.getpid(), []):
        try:
            if os.readlink(f"/proc/{pid}/fd/2") == target:
                return pid
        except OSError:
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


class _Sink(Protocol):
    def feed(self, data: bytes) -> None: ...

    def flush(self) -> None: ...


async def pump_stderr(fd: int, sink: _Sink, done: anyio.Event) -> None:
    """Read a server's stderr pipe into ``sink`` until EOF; then close it, set ``done``."""
    os.set_blocking(fd, False)
    try:
        while True:
            await anyio.wait_readable(fd)
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                break
            sink.feed(data)
    finally:
        sink.flush()
        os.close(fd)
        done.set()


async def terminate_if_lingering(pid: int, grace: float) -> None:
    """The SDK closes stdin and waits 2 s before it terminates; hosts often kill the
    gateway itself at 2 s.  After ``grace``, terminate the server's process group, so
    that neither it nor its children outlive its session."""
    await anyio.sleep(grace)
    if is_alive(pid):
        signal_group(pid)
