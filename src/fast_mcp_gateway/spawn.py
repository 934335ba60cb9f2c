"""Starting a stdio server's process so that it does not outlive the gateway.

A server starts as the SDK starts it (its own session, so its process group is its pid,
which the gateway stops as a whole) and, on Linux, with ``PR_SET_PDEATHSIG``: the kernel
sends it ``DEATH_SIGNAL`` when the gateway dies, however it dies.  A gateway killed with
SIGKILL (an OOM kill, ``kill -9``, a host's hard stop) runs no code to stop anything; a
server then sees EOF on stdin when it next reads, but one blocked in a call reads
nothing and ran on, possibly for ever.

SIGTERM, not SIGKILL: launchers (``uvx``, ``npx``) pass it on to the server they
started, where SIGKILL would orphan that server; and a server may still clean up.

The kernel ties the signal to the *thread* that started the process, not to the
gateway: a thread that ends takes its children along.  Every start (the CLI's early
start, each connect attempt) runs on the event loop's thread, which lives as long as
the gateway; never start a server from a worker thread.

The child arms the signal before it runs the server (a ``preexec_fn``, which both
asyncio's and uvloop's ``subprocess_exec`` support, and anyio passes on from its
backend's ``open_process``), then checks that the gateway did not die in between.
Where the system has no ``prctl`` (macOS, Windows), or it fails, the process starts as
before, without the signal and without an error.

Cost: a spawn with a ``preexec_fn`` cannot use ``vfork`` (asyncio) and waits for the
child to reach ``exec`` (uvloop): benchmarks/spawn.py measures it.  Imports only anyio
and the standard library (the CLI starts servers before anything heavy is loaded).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc

DEATH_SIGNAL = signal.SIGTERM
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl(platform: str = sys.platform) -> Callable[..., int] | None:
    """libc's ``prctl``, ready to call in a child (nothing left to load there), or None
    where there is none."""
    if not platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl  # type: ignore[no-any-return]


def death_signal_setup(platform: str = sys.platform) -> Callable[[], None] | None:
    """The ``preexec_fn`` that ties a child to this process (None where unsupported)."""
    prctl = _prctl(platform)
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:  # in the child, between fork and exec: no logging, no locks
        if prctl(_PR_SET_PDEATHSIG, DEATH_SIGNAL, 0, 0, 0) == 0 and os.getppid() != parent:
            os._exit(1)  # the gateway died before the signal was armed: do not start

    return arm


async def open_server_process(command: str, args: Sequence[str], *,
                              env: dict[str, str] | None, stderr: int | IO[Any] | None,
                              cwd: str | Path | None = None) -> anyio.abc.Process:
    """Start a stdio server as the SDK's stdio client does (stdin and stdout piped, its
    own session), dying with the gateway where the system allows (module docstring)."""
    argv = [command, *args]
    setup = death_signal_setup()
    if setup is None:
        return await anyio.open_process(argv, env=env, stderr=stderr, cwd=cwd,
                                        start_new_session=True)
    # anyio.open_process has no preexec_fn; its backend passes one on to the loop.
    from anyio._core._eventloop import get_async_backend

    return await get_async_backend().open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=cwd,
        env=env, start_new_session=True, preexec_fn=setup)


async def create_process(command: str, args: list[str], env: dict[str, str] | None = None,
                         errlog: IO[Any] = sys.stderr,
                         cwd: Path | str | None = None) -> anyio.abc.Process:
    """The SDK's ``_create_platform_compatible_process`` on POSIX (same arguments), with
    the death signal: what upstream/stdio_tap.py spawns with (through _compat)."""
    return await open_server_process(command, args, env=env, stderr=errlog, cwd=cwd)
