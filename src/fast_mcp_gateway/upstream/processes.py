"""Finding and stopping the processes of stdio upstreams.

The SDK spawns each stdio server in a session of its own (so its process group is
its pid) and does not tell us the pid.  We give every server a stderr pipe of our own,
so its pid is the child of ours whose fd 2 is that pipe: exact, even with many
servers starting at once.  Linux exposes this in /proc; elsewhere the pid stays
unknown and the SDK's own shutdown is all there is.

Spawn-first (``spawn_early``): ``mcp-gateway serve`` starts every stdio server before it
imports the server stack (seconds of CPU on a small machine), exactly as the session
would start it; the first connect attempt of the matching replica adopts the process
(``claim_early``) instead of spawning one.  Both start a server the same way
(``fast_mcp_gateway.spawn``: it dies with the gateway).  This module imports only
anyio, the standard library and ``spawn`` (the same), so that the CLI can use it
before anything heavy is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

import anyio
import anyio.abc

from fast_mcp_gateway.spawn import open_server_process

if TYPE_CHECKING:
    from fast_mcp_gateway.config.schema import ServerConfig

logger = logging.getLogger(__name__)


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


def children(pid: int) -> list[int] | None:
    """The live children of ``pid`` from its threads' ``children`` files (Linux, with
    ``CONFIG_PROC_CHILDREN``), or None where those do not exist: then only a scan of
    every process tells (``process_tree``: ~3 ms of CPU with 170 processes, more on a
    busy desktop, blocking the event loop, twice per stdio connect)."""
    if not _CHILDREN_FILES:
        return None
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found  # gone: no children
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as listing:
                found += map(int, listing.read().split())
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
    return found


_CHILDREN_FILES = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    first = children(pid)
    below: Callable[[int], list[int]]
    if first is None:
        tree = process_tree()
        first, below = tree.get(pid, []), lambda parent: tree.get(parent, [])
    else:
        def below(parent: int) -> list[int]:
            return children(parent) or []
    found, stack = list(first), list(first)
    while stack:
        for child in below(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def child_with_stderr(inode: int) -> int | None:
    """The pid of our direct child whose stderr is the pipe ``inode``, if any."""
    target = f"pipe:[{inode}]"
    ours = children(os.getpid())
    for pid in ours if ours is not None else process_tree().get(os.getpid(), []):
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


_PF_EXITING = 0x4   # the kernel's task flag: exiting (set before its files are closed)


def exiting(pid: int) -> bool | None:
    """Whether process ``pid`` is ending (exiting, a zombie, or gone): its exit status
    follows at once.  False: it runs (a server that closed its stdout and did not
    exit); None where /proc cannot tell.  A process's files are closed as it exits, so
    the stdout it closed by dying is seen closed before it is reaped: this tells that
    race from a server that closed stdout and goes on."""
    if not _PROC_STAT:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return None
    return fields[0] in ("Z", "X", "x") or bool(int(fields[6]) & _PF_EXITING)


def _proc_is_ours() -> bool:
    """Whether /proc shows this process's pid namespace.  Under ``unshare --pid``
    without a /proc of its own, ``/proc/<pid>`` is another namespace's process (a
    server's pid 42 was a kernel thread, sleeping): a crashed server was told as one
    that closed its stdout and runs on, its exit code lost."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


_PROC_STAT = _proc_is_ours()


def signal_group(pid: int, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Signal the process group led by ``pid`` (the server and anything it spawned)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
        return True
    return False


class _Sink(Protocol):
    def feed(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def begin(self) -> None: ...


class CountingSink:
    """A sink that counts what passes (progress while a server starts)."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.bytes = 0

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        self.sink.feed(data)

    def flush(self) -> None:
        self.sink.flush()

    def begin(self) -> None:
        self.sink.begin()


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


def open_stderr(tg: anyio.abc.TaskGroup, early_fd: int | None, sink: _Sink,
                done: anyio.Event) -> tuple[int | None, TextIO | None]:
    """Pump a stdio server's stderr into ``sink``: the pipe of a process started early,
    or a new pipe, whose inode and write end (for the transport) are returned.  A new
    process: ``sink`` is told it begins (``StderrTail.current``)."""
    sink.begin()
    if early_fd is not None:
        tg.start_soon(pump_stderr, early_fd, sink, done)
        return None, None
    read_fd, write_fd = os.pipe()
    tg.start_soon(pump_stderr, read_fd, sink, done)
    return pipe_inode(read_fd), os.fdopen(write_fd, "w")


CLOSE_WITHIN = 10.0  # the bound of ``close_finally``


async def close_finally(close: Callable[[], Awaitable[None]], pid: int | None,
                        grace: float) -> None:
    """Finish a transport's teardown, shielded and bounded (``CLOSE_WITHIN``): leaving
    ``connect_session`` under cancellation interrupts its own teardown (its disconnect
    awaits a task), and no subprocess or connection may outlive its attempt."""
    with anyio.move_on_after(CLOSE_WITHIN, shield=True):
        async with anyio.create_task_group() as closing:
            if pid is not None:
                closing.start_soon(terminate_if_lingering, pid, grace)
            await close()
            closing.cancel_scope.cancel()


async def terminate_if_lingering(pid: int, grace: float) -> None:
    """The SDK closes stdin and waits 2 s before it terminates; hosts often kill the
    gateway itself at 2 s.  After ``grace``, terminate the server's process group, so
    that neither it nor its children outlive its session."""
    await anyio.sleep(grace)
    if is_alive(pid):
        signal_group(pid)


def cpu_ticks(pid: int) -> int | None:
    """CPU time (clock ticks, user + system) of ``pid`` and its live descendants, or
    ``None`` where /proc cannot tell.  A launcher (``uvx``, ``npx``) does its work in
    children, so the whole tree counts."""
    total, known = 0, False
    for each in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            known = True
        except (OSError, IndexError, ValueError):
            continue
    return total if known else None


# -- spawn-first ----------------------------------------------------------------------

# What the SDK's stdio client passes on to a server from our environment (POSIX; its
# ``get_default_environment``, which tests/test_startup.py holds this equal to).  Kept
# here so that the CLI need not import the SDK before it spawns.
INHERITED_ENV_VARS = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
# And how this machine reaches the network: without them a server started by ``npx`` or
# ``uvx`` behind a proxy or a TLS-inspecting firewall fails (or hangs retrying) where the
# same command typed in the user's shell works.  Certificate files and proxies, no keys.
NETWORK_ENV_VARS = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "PIP_CERT", "UV_NATIVE_TLS",
)


def sdk_environment() -> dict[str, str]:
    """The SDK's ``get_default_environment``, without importing the SDK."""
    return {key: value for key in INHERITED_ENV_VARS
            if (value := os.environ.get(key)) is not None and not value.startswith("()")}


def default_environment() -> dict[str, str]:
    """What a stdio server gets from the gateway's environment (its ``env`` on top):
    the SDK's safe default and the network settings (``NETWORK_ENV_VARS``)."""
    return sdk_environment() | {key: value for key in NETWORK_ENV_VARS
                                if (value := os.environ.get(key))}


SpawnKey = tuple[str, tuple[str, ...], tuple[tuple[str, str], ...], str | None]


def spawn_key(command: str, args: Iterable[str], env: dict[str, str] | None,
              cwd: str | None) -> SpawnKey:
    """What a stdio server is started from; a replica adopts only an identical start."""
    return command, tuple(args), tuple(sorted((env or {}).items())), cwd


@dataclass
class EarlyProcess:
    """A stdio server started before the gateway was built, waiting to be adopted."""

    key: SpawnKey
    process: anyio.abc.Process
    stderr_fd: int  # the read end of its stderr pipe (ours to pump and close)
    inode: int  # that pipe's inode (how the process is found among our children)


_early: dict[SpawnKey, list[EarlyProcess]] = {}


async def spawn_early(starts: Iterable[tuple[str, list[str], dict[str, str], str | None]]
                      ) -> list[EarlyProcess]:
    """Start each ``(command, args, env, cwd)`` now, as the SDK's stdio client would
    (its environment, its own session, stdin/stdout pipes, stderr to a pipe of ours).
    A start that fails is skipped: the replica's own attempt reports it.  Returns what
    was started.  POSIX only (elsewhere nothing is started early)."""
    started: list[EarlyProcess] = []
    if sys.platform == "win32":
        return started
    for command, args, env, cwd in starts:
        read_fd, write_fd = os.pipe()
        try:
            process = await open_server_process(
                command, args, env=default_environment() | env, stderr=write_fd, cwd=cwd)
        except OSError as exc:
            os.close(read_fd)
            logger.debug("early start of %s failed (%s); its attempt will report it",
                         command, exc)
            continue
        finally:
            os.close(write_fd)  # the child holds its own copy
        key = spawn_key(command, args, env, cwd)
        early = EarlyProcess(key, process, read_fd, pipe_inode(read_fd))
        _early.setdefault(key, []).append(early)
        started.append(early)
    return started


def claim_early(config: ServerConfig) -> EarlyProcess | None:
    """The process started early from exactly ``config``'s start (a stdio replica), now
    the caller's; ``None`` if there is none."""
    if config.kind != "stdio" or config.command is None:
        return None
    key = spawn_key(config.command, config.args, dict(config.env), config.cwd)
    waiting = _early.get(key)
    if not waiting:
        return None
    early = waiting.pop(0)
    if not waiting:
        del _early[key]
    return early


def early_pending() -> int:
    return sum(len(v) for v in _early.values())


def kill_early() -> None:
    """Terminate every early process nobody adopted yet, now (the gateway is exiting)."""
    for waiting in _early.values():
        for early in waiting:
            signal_group(early.process.pid)


async def discard_early() -> None:
    """Stop every early process nobody adopted (its server was disabled or replaced by
    a runtime registration, or is reached another way): close its stdin, terminate its
    process group, reap it."""
    left = [e for waiting in _early.values() for e in waiting]
    _early.clear()
    for early in left:
        logger.info("stopping an early-started server nobody adopted: %s", early.key[0])
        with contextlib.suppress(OSError):
            os.close(early.stderr_fd)
        signal_group(early.process.pid)
        with anyio.move_on_after(5, shield=True):
            with contextlib.suppress(Exception):
                await early.process.aclose()


# -- the connect deadline ---------------------------------------------------------------

# While its server keeps working, one attempt may last this many windows, or this many
# seconds if that is longer (a server that works for minutes without answering is stuck).
MAX_WINDOWS, MAX_BUSY_SECONDS = 6, 60.0


class ConnectWatch:
    """The deadline of one connect attempt: ``window`` seconds, extended by another
    window each time the server visibly worked in the last one (CPU time of its process
    tree, or output on stderr), for at most ``MAX_WINDOWS`` windows or
    ``MAX_BUSY_SECONDS``, whichever is longer.  A server that is slow
    to start on a loaded machine is kept; an idle one (or any server without a process
    to watch, e.g. over HTTP) is cut off at the deadline.

    ``run`` cancels ``scope`` when the deadline passes (``fired`` tells why); ``stop``
    ends the watch (the attempt connected or ended).
    """

    def __init__(self, window: float, pid: Callable[[], int | None],
                 output: Callable[[], int], label: str = "upstream") -> None:
        self.window = window
        self.label = label
        self._pid = pid
        self._output = output
        self.fired = False
        self.busy = False  # fired although still working (its time used up)
        self.extensions = 0
        self.stalls = 0  # windows not judged: the gateway itself was stalled
        self.elapsed = 0.0
        self._scope = anyio.CancelScope()

    def _mark(self) -> tuple[int | None, int]:
        pid = self._pid()
        return (None if pid is None else cpu_ticks(pid)), self._output()

    async def run(self, scope: anyio.CancelScope, on_extend: Callable[[float], None]) -> None:
        with self._scope:
            started = anyio.current_time()
            deadline, mark = started + self.window, self._mark()
            while True:
                await anyio.sleep_until(deadline)
                woke = anyio.current_time()
                self.elapsed = woke - started
                limit = self.longest(self.window)
                if woke - deadline > self.window / 2 and self.elapsed + self.window <= limit:
                    # The gateway itself was stalled (a long import, a starved loop): its
                    # stderr readers did not run either, so an unchanged mark proves
                    # nothing about the server.  Watch one more window from now.
                    self.stalls += 1
                    mark, deadline = self._mark(), woke + self.window
                    continue
                now = self._mark()
                worked = now != mark and (now[0] is not None or now[1] != mark[1])
                if worked and self.elapsed + self.window <= limit:
                    mark, deadline = now, deadline + self.window
                    self.extensions += 1
                    logger.info("upstream %s: %s", self.label,
                                self.extension_text(self.elapsed, None))
                    on_extend(self.elapsed)
                    continue
                self.fired, self.busy = True, worked
                scope.cancel()
                return

    def stop(self) -> None:
        self._scope.cancel()

    @staticmethod
    def longest(window: float) -> float:
        """When the watch of a ``window``-second deadline fires at the latest (every
        extension and stall included)."""
        return max(MAX_WINDOWS * window, MAX_BUSY_SECONDS)

    def timeout_text(self, step: str | None, next_window: float | None) -> str:
        """What the attempt did, from the facts watched (activity is CPU time of the
        process tree or stderr output: a server that only started its interpreter was
        active too, so nothing here calls it "working"), and how to fix it;
        ``next_window``: the next attempt's (None: none follows)."""
        what = f"no answer to {step}" if step else "no session"
        within = f"did not finish connecting within {round(self.elapsed, 1):g}s: {what}"
        later = "" if next_window is None else f"; the next attempt waits {next_window:g}s"
        slow = ("if it is only slow to start, raise this server's timeouts.connect (e.g. "
                f"'timeouts: {{connect: 60}}'{later})")
        if self.busy:
            return (f"{within}; its process was active (CPU time or stderr output) in every "
                    f"{self.window:g}s window until the limit: it may be stuck, or busy "
                    f"setting up before it answers (its stderr tail: gateway_server_detail); "
                    f"{slow}")
        windows = "once" if self.extensions == 1 else f"{self.extensions} times"
        active = (f"its process was active at first (CPU time or stderr output), so its "
                  f"{self.window:g}s window was extended {windows}; then it was idle for "
                  f"{self.window:g}s without answering" if self.extensions else
                  f"its process was idle for {self.window:g}s without answering")
        return (f"{within}; {active}: check that 'command' and 'args' start an MCP server "
                "that talks over stdio and answers at once (run it in a terminal and paste "
                "an initialize request: the answer comes on stdout); " + slow)

    @staticmethod
    def extension_text(elapsed: float, step: str | None) -> str:
        return (f"still connecting after {elapsed:.0f}s"
                f"{', waiting for an answer to ' + step if step else ''}: its process was "
                "active in the last window (CPU time or stderr output), so it is given "
                "another; raise timeouts.connect if it is only slow to start")
