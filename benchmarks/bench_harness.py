"""What every benchmark phase shares: the targets, their processes, the timed probes.

Imported by ``run.py`` (the benchmarks directory is on ``sys.path`` when a script in
it runs).  Linux only for the process figures: CPU and RSS come from ``/proc``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream.py"
LIGHT_UPSTREAM = HERE / "light_upstream.py"
MANY_TOOLS = HERE / "many_tools.py"
RELAY = HERE / "relay.py"
FASTMCP_PROXY = HERE / "fastmcp_proxy.py"
PY = sys.executable
UPSTREAM_TOOLS = ("echo", "add", "sleep_ms", "blob")
LIGHT_TOOLS = ("echo", "add", "sleep_ms")

DIRECT, RELAY_LABEL, GATEWAY, FASTMCP = "direct", "relay", "gateway", "fastmcp"
TICK = os.sysconf("SC_CLK_TCK")


# -- /proc ------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Live child pids of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses
                if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    found, stack = [], [pid]
    while stack:
        for child in children_of(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def cmdline(pid: int) -> bytes:
    """The NUL-separated command line of ``pid`` (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class CpuReading:
    """CPU used so far by one process, all its threads (not its children).

    ``ticks``: user + system seconds from ``/proc/PID/stat``, in clock ticks (10 ms
    here: a phase of a few calls, like 4 x 1 MiB results, is quantised to +-10 ms);
    ``threads``: each live thread's on-CPU seconds from ``/proc/PID/task/*/sched``
    (``se.sum_exec_runtime``, nanoseconds), where the kernel has it.  A difference of
    two readings (``delta``) is taken thread by thread: a thread that ended in between
    takes its time along (an idle anyio worker thread, after 10 s), so only threads
    still alive are compared, and one started in between counts from zero."""

    __slots__ = ("threads", "ticks")

    def __init__(self, ticks: float, threads: dict[str, float] | None) -> None:
        self.ticks, self.threads = ticks, threads

    def __sub__(self, before: CpuReading) -> float:
        if self.threads is None or before.threads is None:
            return self.ticks - before.ticks
        return sum(spent - before.threads.get(tid, 0.0) for tid, spent in self.threads.items())


def _thread_runtimes(pid: int) -> dict[str, float] | None:
    runtimes: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/sched").read_text()
        except OSError:
            continue  # ended since the listing: it is left out of both sides
        at = text.find("se.sum_exec_runtime")
        if at < 0:
            return None  # a kernel without the scheduler's debug fields
        runtimes[tid] = float(text[text.index(":", at) + 1:text.index("\n", at)]) / 1000
    return runtimes


def user_system(pid: int | None) -> tuple[float, float] | None:
    """``pid``'s user and system CPU so far (seconds; ``/proc/PID/stat``'s ticks)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK  # utime, stime


def cpu_s(pid: int | None) -> CpuReading | None:
    """The CPU ``pid`` itself has used so far (``delta`` of two readings: seconds)."""
    times = user_system(pid)
    if pid is None or times is None:
        return None
    return CpuReading(sum(times), _thread_runtimes(pid))


def memory_mb(pid: int | None, key: str = "VmRSS") -> float | None:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of ``pid`` in MB (10^6 B)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def delta(after: CpuReading | None, before: CpuReading | None) -> float | None:
    """``after - before`` in seconds, or None if either is unknown."""
    return None if after is None or before is None else after - before


def children_cpu() -> float:
    """User+system CPU seconds of every reaped descendant so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux), so none escapes the leak check or CPU totals."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


async def wait_no_children(within: float, adopted: Sequence[int] = ()) -> list[int]:
    """Wait until this process has no descendants; return those still left.

    ``adopted`` are orphans re-parented to us: nobody else waits for them, so they
    are reaped here (by pid, never with a wildcard that could steal another's child).
    """
    deadline = time.monotonic() + within
    pending = set(adopted)
    while True:
        for pid in list(pending):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:  # noqa: ASYNC222 - WNOHANG never blocks
                    continue
            pending.discard(pid)
        left = descendants(os.getpid())
        if not left or time.monotonic() > deadline:
            return left
        await anyio.sleep(0.02)


async def close_and_adopt(own: contextlib.AsyncExitStack) -> list[int]:
    """Close ``own`` (one target's client); return the processes that outlived it.

    Once a target's client is closed, any new child of ours is one of its descendants
    re-parented to us (we are a subreaper): an upstream its parent did not stop.
    """
    before = set(children_of(os.getpid()))
    await own.aclose()
    return [p for p in children_of(os.getpid()) if p not in before]


async def reap(adopted: Sequence[int], within: float) -> list[int]:
    """Wait (at most ``within`` s) for the adopted ``pids`` to exit, reaping each; return
    those still running.  By pid, never a wildcard that could steal another's child."""
    deadline = time.monotonic() + within
    pending = set(adopted)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:  # noqa: ASYNC222 - never blocks
                    continue
            except ChildProcessError:
                pass
            pending.discard(pid)
        if pending:
            await anyio.sleep(0.02)
    return sorted(pending)


def tcp_opens() -> int | None:
    """TCP connections opened so far by this network namespace's processes (``/proc/net
    /snmp``'s ``ActiveOpens``): the difference of two readings counts a run's connects,
    plus whatever else runs on the machine meanwhile (a direct run's shows how much)."""
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return None
    names, values = [line.split() for line in lines if line.startswith("Tcp:")][:2]
    return int(values[names.index("ActiveOpens")])


def load() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


# -- targets ----------------------------------------------------------------------------


def namespaced(tools_of: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """Exposed names ``server_tool`` of every upstream's tools (the gateway's default)."""
    return frozenset(f"{name}_{tool}" for name, tools in tools_of.items() for tool in tools)


@dataclass(frozen=True)
class Endpoint:
    """A stdio MCP server command line and the tool names a complete listing holds."""

    label: str
    args: tuple[str, ...]
    prefix: str = ""  # how the first upstream's tools are named through this endpoint
    tools: frozenset[str] = frozenset()
    upstream_script: Path = UPSTREAM
    python: str = PY  # the interpreter that runs it (another install: a before/after run)

    def tool(self, name: str) -> str:
        """The name under which this endpoint exposes the first upstream's ``name``."""
        return self.prefix + name


@dataclass
class Running:
    """A connected client and the pids behind it (None where unknown / not applicable)."""

    endpoint: Endpoint
    client: Client[Any]
    pid: int | None  # the process the client spawned
    middle: int | None  # relay, gateway or proxy process (None for direct)
    upstream: int | None  # the (first) upstream process
    protocol: str = ""

    def refresh_upstream(self) -> None:
        """Find the upstream process again (the gateway may have restarted it)."""
        if self.middle is None:
            self.upstream = self.pid
            return
        script = str(self.endpoint.upstream_script).encode()
        self.upstream = next((c for c in children_of(self.middle) if script in cmdline(c)),
                             None)


@dataclass
class Workspace:
    """Temporary configs, stores and stderr logs for one run."""

    root: Path
    protocol: str
    connect_timeout: float
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.logs = self.root / "logs"
        self.logs.mkdir()

    def direct(self, script: Path = UPSTREAM, *script_args: str,
               tools: Sequence[str] = UPSTREAM_TOOLS) -> Endpoint:
        """The upstream itself."""
        return Endpoint(DIRECT, (str(script), *script_args), tools=frozenset(tools),
                        upstream_script=script)

    def relay(self) -> Endpoint:
        """The upstream behind the byte relay."""
        return Endpoint(RELAY_LABEL, (str(RELAY), PY, str(UPSTREAM)),
                        tools=frozenset(UPSTREAM_TOOLS))

    def gateway(self, upstreams: dict[str, list[str]], tools: Iterable[str], tag: str,
                script: Path = UPSTREAM, python: str = PY) -> Endpoint:
        """``mcp-gateway serve`` in front of ``upstreams`` (name -> script and its args).

        ``tools`` are the names a complete listing holds (see ``namespaced``); ``python``
        runs the gateway (and, through ``${GATEWAY_PYTHON}``, its upstreams).
        """
        config = self.root / f"servers-{tag}.yaml"
        lines = ["servers:"]
        for name, argv in upstreams.items():
            lines += [
                f"  {name}:",
                "    command: ${GATEWAY_PYTHON}",
                f"    args: {json.dumps(argv)}",
                f"    protocol: {self.protocol}",
            ]
        config.write_text("\n".join(lines) + "\n")
        # The store goes to the temp dir, never the user's data dir; recording stays on,
        # as in a default `serve`.
        args = ("-m", "fast_mcp_gateway", "serve", "--config", str(config),
                "--log-level", "WARNING", "--connect-timeout", f"{self.connect_timeout:g}",
                "--db", str(self.root / f"store-{tag}.db"))
        label = GATEWAY if python == PY else f"{GATEWAY}@base"
        return Endpoint(label, args, f"{next(iter(upstreams))}_", frozenset(tools), script,
                        python)

    def fastmcp(self, upstreams: dict[str, list[str]], tools: Iterable[str], tag: str,
                script: Path = UPSTREAM) -> Endpoint:
        """FastMCP's proxy (persistent sessions) in front of ``upstreams``; a single
        upstream named "" keeps its tool names, others are namespaced like the gateway's."""
        mode = ("--mode", self.protocol)
        if list(upstreams) == [""]:
            return Endpoint(FASTMCP, (str(FASTMCP_PROXY), *mode, PY, *upstreams[""]),
                            tools=frozenset(tools), upstream_script=script)
        config = self.root / f"fastmcp-{tag}.json"
        config.write_text(json.dumps({n: [PY, *argv] for n, argv in upstreams.items()}))
        return Endpoint(FASTMCP, (str(FASTMCP_PROXY), *mode, "--config", str(config)),
                        f"{next(iter(upstreams))}_", frozenset(tools), script)

    def client(self, endpoint: Endpoint, tag: str, timeout: float = 120) -> Client[Any]:
        """A fresh client that spawns ``endpoint`` (its stderr goes to a log file)."""
        # MCP_GATEWAY_* settings (e.g. _EXPRESS_LANE=false) reach the gateway; the SDK
        # passes a child only a few variables otherwise.
        settings = {k: v for k, v in os.environ.items() if k.startswith("MCP_GATEWAY_")}
        transport = StdioTransport(
            endpoint.python, list(endpoint.args), keep_alive=False, env=settings or None,
            log_file=self.logs / f"{endpoint.label}-{tag}.log",
        )
        return Client(transport, mode=self.protocol, timeout=timeout, init_timeout=timeout)


@contextlib.asynccontextmanager
async def running(ws: Workspace, ep: Endpoint, tag: str,
                  request_timeout: float = 120) -> AsyncIterator[Running]:
    """Spawn ``ep``, connect, and name its processes (children of ours before/after)."""
    before = set(children_of(os.getpid()))
    async with ws.client(ep, tag, request_timeout) as client:
        spawned = [p for p in children_of(os.getpid()) if p not in before]
        pid = spawned[0] if len(spawned) == 1 else None
        run = Running(ep, client, pid, None if ep.label == DIRECT else pid, None,
                      str(getattr(client.session, "protocol_version", "")))
        run.refresh_upstream()
        yield run


async def listed(client: Client[Any]) -> tuple[list[str], int]:
    """Every tool name (following cursors) and the listing's JSON size in bytes."""
    names: list[str] = []
    size, cursor = 0, None
    while True:
        page = await client.list_tools_mcp(cursor=cursor, cache_mode="bypass")
        names += [t.name for t in page.tools]
        size += len(page.model_dump_json(by_alias=True, exclude_none=True))
        cursor = page.next_cursor
        if not cursor:
            return names, size


async def until_listed(run: Running, within: float) -> tuple[float | None, int]:
    """Poll tools/list until every expected tool is there; (seconds or None, count seen)."""
    started = time.perf_counter()
    seen = 0
    with anyio.move_on_after(within):
        while True:
            names = set((await listed(run.client))[0])
            seen = len(run.endpoint.tools & names)
            if seen == len(run.endpoint.tools):
                return time.perf_counter() - started, seen
            await anyio.sleep(0.05)
    return None, seen


# -- timed probes -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def call(client: Client[Any], tool: str, arguments: dict[str, Any]) -> Any:
    """One tools/call; a tool error is a benchmark failure, not a data point."""
    result = await client.call_tool_mcp(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {str(result.content)[:500]}")
    return result


async def sequential_latency(run: Running, calls: int) -> list[float]:
    """Seconds per call for ``calls`` back-to-back ``echo`` calls."""
    samples: list[float] = []
    tool = run.endpoint.tool("echo")
    for i in range(calls):
        started = time.perf_counter()
        await call(run.client, tool, {"text": f"ping {i}"})
        samples.append(time.perf_counter() - started)
    return samples


@dataclass
class Latencies:
    """One target's share of ``interleaved_latency``: its samples (seconds per call) and
    the CPU seconds its middle process and its upstream used meanwhile (None: unknown)."""

    samples: list[float]
    cpu_mid: float | None = 0.0
    cpu_up: float | None = 0.0
    failed: str | None = None  # why the target stopped (its samples so far are kept)


async def interleaved_latency(runs: Sequence[Running], calls: int,
                              slices: int = 6) -> dict[str, Latencies]:
    """``calls`` back-to-back ``echo`` calls per target, taken in ``slices`` turns: a
    slice of each target in ``runs``' order, then the next.  A drift of the machine's
    load within a round then meets every target alike (one block per target put a
    round's ~10 s of drift between the gateway's block and the direct one's).  A target
    whose call raises ``RuntimeError`` stops there (``failed``); the others go on."""
    out = {run.endpoint.label: Latencies([]) for run in runs}
    bounds = [calls * k // slices for k in range(slices + 1)]
    for k in range(slices):
        for run in runs:
            got = out[run.endpoint.label]
            if got.failed is not None:
                continue
            mid, up = cpu_s(run.middle), cpu_s(run.upstream)
            try:
                got.samples += await sequential_latency(run, bounds[k + 1] - bounds[k])
            except RuntimeError as exc:
                got.failed = str(exc)
                continue
            got.cpu_mid = _added(got.cpu_mid, delta(cpu_s(run.middle), mid))
            got.cpu_up = _added(got.cpu_up, delta(cpu_s(run.upstream), up))
    return out


def _added(total: float | None, more: float | None) -> float | None:
    return None if total is None or more is None else total + more


async def throughput(run: Running, callers: int, each: int) -> float:
    """Calls per second with ``callers`` concurrent callers sharing one session."""
    tool = run.endpoint.tool("echo")

    async def caller(n: int) -> None:
        for i in range(each):
            await call(run.client, tool, {"text": f"caller {n} call {i}"})

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for n in range(callers):
            tg.start_soon(caller, n)
    return callers * each / (time.perf_counter() - started)


async def burst(run: Running, calls: int, ms: float) -> float:
    """Wall seconds for ``calls`` concurrent ``sleep_ms(ms)`` calls on one session."""
    tool = run.endpoint.tool("sleep_ms")
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(call, run.client, tool, {"ms": ms})
    return time.perf_counter() - started


async def blob(run: Running, mb: float) -> None:
    """One ``blob(mb)`` call whose text must arrive whole."""
    result = await call(run.client, run.endpoint.tool("blob"), {"mb": mb})
    got = sum(len(getattr(c, "text", "")) for c in result.content)
    if got != int(mb * (1 << 20)):
        raise RuntimeError(f"{run.endpoint.label}: blob({mb:g}) returned {got} characters")


@contextlib.contextmanager
def profiled(run: Running, on: bool) -> Iterator[None]:
    """With ``on``: ``run``'s middle process (``profiled_gateway.py``) profiles the
    block: SIGUSR1 turns its profiler on, SIGUSR2 off and writes the profile."""
    if on:
        assert run.middle is not None
        os.kill(run.middle, signal.SIGUSR1)
    yield
    if on:
        assert run.middle is not None
        os.kill(run.middle, signal.SIGUSR2)


def rotated(items: Sequence[Any], round_no: int) -> list[Any]:
    """``items`` in round ``round_no``'s order: shuffled anew each round (seeded by the
    round: a run repeats).  A target's numbers depend on the
    one measured just before it: in the HTTP phase a gateway's block right after another
    gateway's ran ~0.06x slower than right after the relay's, and a rotation keeps every
    target's neighbour, so one row carried that for the whole run."""
    order = list(items)
    random.Random(round_no).shuffle(order)
    return order
