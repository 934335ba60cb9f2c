"""Gateway overhead benchmark: direct client -> upstream vs client -> gateway -> upstream.

One command, one run, one upstream program (``benchmarks/upstream.py``)::

    python benchmarks/run.py [--quick] [--protocol auto|legacy] [--json out.json]

Every path is stdio end to end and uses the same client (a fastmcp ``Client``
over ``StdioTransport``):

* direct:  client --stdio--> ``python benchmarks/upstream.py``
* relay:   client --stdio--> ``python benchmarks/relay.py`` --stdio--> upstream
  (a byte copier: the cost of one more process and pipe hop, and nothing else)
* gateway: client --stdio--> ``python -m fast_mcp_gateway serve`` --stdio--> upstream

Measurements alternate between the paths round by round (the order rotating each
round) so that drifts of a shared machine hit every path alike; each figure is
the median over rounds.  ``benchmarks/README.md`` explains every number.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from fast_mcp_gateway.upstream.processes import descendants, process_tree

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream.py"
LIGHT_UPSTREAM = HERE / "light_upstream.py"
RELAY = HERE / "relay.py"
PY = sys.executable
UPSTREAM_TOOLS = ("echo", "add", "sleep_ms")

# Targets from the issue.
TARGET_P50_RATIO = 1.5
TARGET_BURST_DELTA_MS = 65.0
TARGET_COLD_RATIO = 1.5

DIRECT, RELAY_LABEL, GATEWAY = "direct", "relay", "gateway"


# -- parameters -------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How much to measure (``--quick`` shrinks every loop)."""

    name: str = "full"
    latency_calls: int = 300
    latency_rounds: int = 3
    callers: int = 16
    calls_per_caller: int = 40
    throughput_rounds: int = 3
    burst_calls: int = 64
    burst_ms: float = 50.0
    burst_rounds: int = 7
    cold_rounds: int = 3
    many_upstreams: int = 20
    cold_floor: bool = True  # also time N bare upstreams started at once
    warmup_calls: int = 50


FULL = Plan()
QUICK = Plan(name="quick", latency_calls=100, latency_rounds=2, calls_per_caller=10,
             throughput_rounds=2, burst_rounds=3, cold_rounds=1, cold_floor=False,
             warmup_calls=20)


# -- endpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A stdio MCP server command line and the upstream names behind it."""

    label: str
    command: str
    args: tuple[str, ...]
    upstreams: tuple[str, ...] = ()  # gateway only: the configured upstream names

    def tool(self, name: str) -> str:
        """The name under which this endpoint exposes the (first) upstream tool ``name``."""
        return f"{self.upstreams[0]}_{name}" if self.upstreams else name

    def expected_tools(self) -> set[str]:
        """Every upstream tool a complete tools/list must contain."""
        if not self.upstreams:
            return set(UPSTREAM_TOOLS)
        return {f"{up}_{tool}" for up in self.upstreams for tool in UPSTREAM_TOOLS}


class Workspace:
    """Temporary configs and stderr logs for one run."""

    def __init__(self, root: Path, protocol: str) -> None:
        self.root = root
        self.protocol = protocol
        self.logs = root / "logs"
        self.logs.mkdir()

    def direct(self) -> Endpoint:
        """The upstream itself."""
        return Endpoint(DIRECT, PY, (str(UPSTREAM),))

    def relay(self) -> Endpoint:
        """The upstream behind the byte relay."""
        return Endpoint(RELAY_LABEL, PY, (str(RELAY), PY, str(UPSTREAM)))

    def gateway(self, count: int, upstream: Path = UPSTREAM) -> Endpoint:
        """``mcp-gateway serve`` in front of ``count`` copies of ``upstream``."""
        names = ("up",) if count == 1 else tuple(f"up{i:02d}" for i in range(1, count + 1))
        config = self.root / f"servers-{count}-{upstream.stem}.yaml"
        lines = ["servers:"]
        for name in names:
            lines += [
                f"  {name}:",
                "    command: ${GATEWAY_PYTHON}",
                f"    args: [{json.dumps(str(upstream))}]",
                f"    protocol: {self.protocol}",
            ]
        config.write_text("\n".join(lines) + "\n")
        args = ("-m", "fast_mcp_gateway", "serve", "--config", str(config),
                "--log-level", "WARNING")
        return Endpoint(GATEWAY, PY, args, names)

    def client(self, endpoint: Endpoint, tag: str) -> Client[StdioTransport]:
        """A fresh client that spawns ``endpoint`` (its stderr goes to a log file)."""
        # MCP_GATEWAY_* settings (e.g. _EXPRESS_LANE=false) reach the gateway; the SDK
        # passes a child only a few variables otherwise.
        settings = {k: v for k, v in os.environ.items() if k.startswith("MCP_GATEWAY_")}
        transport = StdioTransport(
            endpoint.command, list(endpoint.args), keep_alive=False, env=settings or None,
            log_file=self.logs / f"{endpoint.label}{len(endpoint.upstreams)}-{tag}.log",
        )
        return Client(transport, mode=self.protocol, timeout=60)


# -- measurements -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def call(client: Client[Any], tool: str, arguments: dict[str, Any]) -> None:
    """One tools/call; a tool error is a benchmark failure, not a data point."""
    result = await client.call_tool_mcp(tool, arguments)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")


async def sequential_latency(client: Client[Any], ep: Endpoint, calls: int) -> list[float]:
    """Seconds per call for ``calls`` back-to-back ``echo`` calls."""
    samples: list[float] = []
    tool = ep.tool("echo")
    for i in range(calls):
        started = time.perf_counter()
        await call(client, tool, {"text": f"ping {i}"})
        samples.append(time.perf_counter() - started)
    return samples


async def throughput(client: Client[Any], ep: Endpoint, callers: int, each: int) -> float:
    """Calls per second with ``callers`` concurrent callers sharing one session."""
    tool = ep.tool("echo")

    async def caller(n: int) -> None:
        for i in range(each):
            await call(client, tool, {"text": f"caller {n} call {i}"})

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for n in range(callers):
            tg.start_soon(caller, n)
    return callers * each / (time.perf_counter() - started)


async def burst(client: Client[Any], ep: Endpoint, calls: int, ms: float) -> float:
    """Wall seconds for ``calls`` concurrent ``sleep_ms(ms)`` calls on one session."""
    tool = ep.tool("sleep_ms")
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(call, client, tool, {"ms": ms})
    return time.perf_counter() - started


@dataclass
class ColdStart:
    """One cold-start round of one case."""

    ready_s: float  # spawn -> complete tools/list (slowest endpoint)
    close_s: float  # client close (stdin EOF, grace, kill) returned
    orphans: int  # processes re-parented to us after their parent died
    gone_s: float  # spawn -> every process of the case exited
    cpu_s: float  # CPU time of the whole process tree


async def cold_start(ws: Workspace, eps: Sequence[Endpoint], tag: str) -> ColdStart:
    """Spawn every endpoint at once; time until each lists all its tools, then shut down."""
    cpu_before = children_cpu()
    mine_before = set(direct_children())

    all_ready, close_now = anyio.Event(), anyio.Event()
    pending = len(eps)

    async def one(ep: Endpoint) -> None:
        nonlocal pending
        async with ws.client(ep, tag) as client:
            expected = ep.expected_tools()
            # Polling is the point: the first *complete* listing is what is timed.
            while not expected <= {t.name for t in await client.list_tools()}:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            pending -= 1
            if pending == 0:
                all_ready.set()
            await close_now.wait()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for ep in eps:
            tg.start_soon(one, ep)
        with anyio.fail_after(120):
            await all_ready.wait()
        ready_s = time.perf_counter() - started
        closing = time.perf_counter()
        close_now.set()
    close_s = time.perf_counter() - closing
    # Only a gateway has children of its own that can be orphaned (and adopted by us).
    gateways = any(ep.upstreams for ep in eps)
    orphans = [p for p in direct_children()
               if gateways and p not in mine_before and is_upstream(p)]
    # Orphans exit on their own (their stdin is closed) but, CPU-starved, can take a
    # while; the next case must not start while they still compete for the CPU.
    left = await wait_no_children(within=120, adopted=orphans)
    if left:
        raise RuntimeError(f"processes still running 120 s after {tag}: {left}")
    return ColdStart(ready_s, close_s, len(orphans), time.perf_counter() - started,
                     children_cpu() - cpu_before)


# -- processes --------------------------------------------------------------------------


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux), so none escapes the leak check or CPU totals."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def children_cpu() -> float:
    """User+system CPU seconds of every reaped descendant so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def direct_children() -> list[int]:
    """This process's children (from /proc)."""
    return process_tree().get(os.getpid(), [])


def is_upstream(pid: int) -> bool:
    """Whether ``pid`` runs the benchmark upstream."""
    try:
        return str(UPSTREAM).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
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


# -- the run ----------------------------------------------------------------------------


@dataclass
class Results:
    """Every per-round value (ms, calls/s, s), keyed by path or case (JSON-able)."""

    plan: dict[str, Any]
    machine: dict[str, Any]
    negotiated: dict[str, str] = field(default_factory=dict)
    latency_p50_ms: dict[str, list[float]] = field(default_factory=dict)
    latency_p95_ms: dict[str, list[float]] = field(default_factory=dict)
    throughput_cps: dict[str, list[float]] = field(default_factory=dict)
    burst_ms: dict[str, list[float]] = field(default_factory=dict)
    cold: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    leaked: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, table: dict[str, list[float]], key: str, value: float) -> None:
        """Append one round's value."""
        table.setdefault(key, []).append(value)

    def cold_median(self, case: str, what: str) -> float:
        """Median over rounds of one cold-start field."""
        return statistics.median(r[what] for r in self.cold[case])


def machine_info() -> dict[str, Any]:
    """Cores, load, interpreter and library versions."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "fastmcp": version("fastmcp"),
        "mcp": version("mcp"),
        "fast-mcp-gateway": version("fast-mcp-gateway"),
    }


def rotated(items: Sequence[Any], round_no: int) -> list[Any]:
    """``items`` rotated by ``round_no`` (each goes first in turn)."""
    k = round_no % len(items)
    return [*items[k:], *items[:k]]


async def hot_phase(ws: Workspace, plan: Plan, res: Results, log: Callable[[str], None]) -> None:
    """Latency, throughput and burst over one persistent session per path."""
    eps = (ws.direct(), ws.relay(), ws.gateway(1))
    async with contextlib.AsyncExitStack() as stack:
        clients = {ep.label: await stack.enter_async_context(ws.client(ep, "hot")) for ep in eps}
        for ep in eps:
            client = clients[ep.label]
            res.negotiated[ep.label] = str(client.session.protocol_version)
            await sequential_latency(client, ep, plan.warmup_calls)
            await throughput(client, ep, plan.callers, 3)
            await burst(client, ep, plan.burst_calls, plan.burst_ms)

        async def each_round(rounds: int, what: str,
                             fn: Callable[[Client[Any], Endpoint], Awaitable[None]]) -> None:
            for r in range(rounds):
                log(f"  {what}: round {r + 1}/{rounds}")
                for ep in rotated(eps, r):
                    await fn(clients[ep.label], ep)

        async def lat(client: Client[Any], ep: Endpoint) -> None:
            samples = await sequential_latency(client, ep, plan.latency_calls)
            res.add(res.latency_p50_ms, ep.label, 1000 * percentile(samples, 50))
            res.add(res.latency_p95_ms, ep.label, 1000 * percentile(samples, 95))

        async def thr(client: Client[Any], ep: Endpoint) -> None:
            value = await throughput(client, ep, plan.callers, plan.calls_per_caller)
            res.add(res.throughput_cps, ep.label, value)

        async def bur(client: Client[Any], ep: Endpoint) -> None:
            value = await burst(client, ep, plan.burst_calls, plan.burst_ms)
            res.add(res.burst_ms, ep.label, 1000 * value)

        with anyio.fail_after(600):
            await each_round(plan.latency_rounds, "sequential latency", lat)
            await each_round(plan.throughput_rounds, f"{plan.callers} callers", thr)
            await each_round(plan.burst_rounds, f"{plan.burst_calls} x sleep_ms", bur)
    left = await wait_no_children(within=30)
    if left:
        raise RuntimeError(f"processes still running after the hot phase: {left}")


def cold_cases(ws: Workspace, plan: Plan) -> dict[str, list[Endpoint]]:
    """Cold-start cases: name -> endpoints spawned together."""
    n = plan.many_upstreams
    cases = {
        "direct x1": [ws.direct()],
        "gateway x1": [ws.gateway(1)],
        f"gateway x{n}": [ws.gateway(n)],
        "gateway x1, light upstream": [ws.gateway(1, LIGHT_UPSTREAM)],
        f"gateway x{n}, light upstream": [ws.gateway(n, LIGHT_UPSTREAM)],
    }
    if plan.cold_floor:
        cases[f"direct x{n}"] = [ws.direct()] * n
    return cases


async def cold_phase(ws: Workspace, plan: Plan, res: Results, log: Callable[[str], None]) -> None:
    """Spawn-to-first-complete-tools/list, round-robin over the cases."""
    cases = cold_cases(ws, plan)
    for r in range(plan.cold_rounds):
        for case in rotated(list(cases), r):
            log(f"  cold start: round {r + 1}/{plan.cold_rounds}: {case}")
            result = await cold_start(ws, cases[case], f"cold{r}")
            res.cold.setdefault(case, []).append(asdict(result))
            await anyio.sleep(0.3)  # let the machine settle after the teardown


# -- report -----------------------------------------------------------------------------


def report(res: Results, plan: Plan) -> tuple[str, bool]:
    """The printed tables, and whether every target was met."""
    n = plan.many_upstreams

    def med(table: dict[str, list[float]], key: str) -> float:
        return statistics.median(table[key])

    p50 = {k: med(res.latency_p50_ms, k) for k in res.latency_p50_ms}
    p95 = {k: med(res.latency_p95_ms, k) for k in res.latency_p95_ms}
    thr = {k: med(res.throughput_cps, k) for k in res.throughput_cps}
    bur = {k: med(res.burst_ms, k) for k in res.burst_ms}
    c1d, c1g = res.cold_median("direct x1", "ready_s"), res.cold_median("gateway x1", "ready_s")
    # The cold-start target is judged with the light upstream: with FastMCP upstreams,
    # 20 interpreters importing FastMCP on 2 cores measure the CPU, not the gateway.
    light1 = res.cold_median("gateway x1, light upstream", "ready_s")
    lightn = res.cold_median(f"gateway x{n}, light upstream", "ready_s")
    ok_p50 = p50[GATEWAY] <= TARGET_P50_RATIO * p50[DIRECT]
    ok_burst = bur[GATEWAY] - bur[DIRECT] <= TARGET_BURST_DELTA_MS
    ok_cold = lightn <= TARGET_COLD_RATIO * light1
    verdict = {True: "PASS", False: "FAIL"}

    rows: list[list[str]] = [
        ["per-call latency p50 (ms)", *(f"{p50[k]:.2f}" for k in (DIRECT, RELAY_LABEL, GATEWAY)),
         f"{p50[GATEWAY] / p50[DIRECT]:.2f}x", f"<= {TARGET_P50_RATIO}x", verdict[ok_p50]],
        ["per-call latency p95 (ms)", *(f"{p95[k]:.2f}" for k in (DIRECT, RELAY_LABEL, GATEWAY)),
         f"{p95[GATEWAY] / p95[DIRECT]:.2f}x", "", ""],
        [f"throughput, {plan.callers} callers on 1 session (calls/s)",
         *(f"{thr[k]:.0f}" for k in (DIRECT, RELAY_LABEL, GATEWAY)),
         f"{thr[GATEWAY] / thr[DIRECT]:.2f}x", "", ""],
        [f"{plan.burst_calls} concurrent sleep_ms({plan.burst_ms:g}) wall (ms)",
         *(f"{bur[k]:.1f}" for k in (DIRECT, RELAY_LABEL, GATEWAY)),
         f"{bur[GATEWAY] - bur[DIRECT]:+.1f} ms", f"<= +{TARGET_BURST_DELTA_MS:g} ms",
         verdict[ok_burst]],
    ]
    hot = table(["hot path (persistent sessions)", "direct", "relay", "gateway",
                 "gateway vs direct", "target", "result"], rows)

    cold_rows: list[list[str]] = []
    for case in res.cold:
        ready = res.cold_median(case, "ready_s")
        if case == f"gateway x{n}, light upstream":
            vs, target = f"{ready / light1:.2f}x light x1", f"<= {TARGET_COLD_RATIO}x"
            result = verdict[ok_cold]
        elif case == f"gateway x{n}":
            vs, target, result = f"{ready / c1g:.2f}x gateway x1", "", ""
        elif case in ("gateway x1", f"direct x{n}"):
            vs, target, result = f"{ready / c1d:.2f}x direct x1", "", ""
        else:
            vs, target, result = "", "", ""
        cold_rows.append([
            case, f"{1000 * ready:.0f}", vs, f"{res.cold_median(case, 'cpu_s'):.1f}",
            f"{1000 * res.cold_median(case, 'close_s'):.0f}",
            f"{max(r['orphans'] for r in res.cold[case]):.0f}", target, result,
        ])
    cold = table(["cold start -> complete tools/list", "ready (ms)", "ratio", "CPU (s)",
                  "close (ms)", "orphans", "target", "result"], cold_rows)

    m = res.machine
    out = [
        "",
        f"Fast MCP Gateway overhead benchmark ({plan.name} run, {res.seconds:.0f} s)",
        f"machine : {m['platform']}, {m['cpus']} CPUs ({m['usable_cpus']} usable), load avg "
        f"{' '.join(map(str, m['loadavg']))} at start, {' '.join(map(str, m['loadavg_end']))} "
        "at end",
        f"software: Python {m['python']}, fastmcp {m['fastmcp']}, mcp {m['mcp']}, "
        f"fast-mcp-gateway {m['fast-mcp-gateway']}",
        f"protocol: client mode {m['protocol']!r} (gateway -> upstream the same); negotiated: "
        + ", ".join(f"{k} {v}" for k, v in res.negotiated.items()),
        f"rounds  : latency {plan.latency_rounds}x{plan.latency_calls} calls, throughput "
        f"{plan.throughput_rounds}x{plan.callers}x{plan.calls_per_caller} calls, burst "
        f"{plan.burst_rounds}x, cold start {plan.cold_rounds}x; medians over rounds",
        "",
        hot,
        "",
        cold,
        "",
        "per-round values:",
    ]
    for title, values in (("latency p50 ms", res.latency_p50_ms),
                          ("latency p95 ms", res.latency_p95_ms),
                          ("throughput calls/s", res.throughput_cps),
                          ("burst wall ms", res.burst_ms)):
        cells = [f"{k} " + " ".join(f"{v:.1f}" for v in vs) for k, vs in values.items()]
        out.append(f"  {title:<20} " + " | ".join(cells))
    cells = [f"{k} " + " ".join(f"{1000 * r['ready_s']:.0f}" for r in rs)
             for k, rs in res.cold.items()]
    out.append(f"  {'cold ready ms':<20} " + " | ".join(cells))
    out.append("")
    out.append("leaked processes: " + (", ".join(map(str, res.leaked)) or "none"))
    ok = ok_p50 and ok_burst and ok_cold
    out.append(f"targets: {'all met' if ok else 'NOT all met'}")
    return "\n".join(out), ok


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


# -- entry point ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def workspace(protocol: str) -> AsyncIterator[Workspace]:
    """A temporary directory for configs and logs, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as root:
        yield Workspace(Path(root), protocol)


async def main_async(plan: Plan, protocol: str) -> Results:
    """Run every measurement (progress goes to stderr)."""
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s]{line}", file=sys.stderr, flush=True)

    info = machine_info()
    info["protocol"] = protocol
    info["subreaper"] = become_subreaper()
    res = Results(plan=asdict(plan), machine=info)
    async with workspace(protocol) as ws:
        try:
            log(" hot path (persistent sessions)")
            await hot_phase(ws, plan, res, log)
            log(" cold start")
            await cold_phase(ws, plan, res, log)
        except BaseException:
            for logfile in sorted(ws.logs.iterdir()):
                text = logfile.read_text(errors="replace").strip()
                if text:
                    print(f"--- {logfile.name}\n{text[-2000:]}", file=sys.stderr)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                res.leaked = await wait_no_children(within=30)
    res.machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res.seconds = time.perf_counter() - started
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run; exit 1 only if a process leaked (targets are reported)."""
    parser = argparse.ArgumentParser(
        description="Direct vs gateway (stdio -> stdio) latency, throughput and cold start."
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 1 minute)")
    parser.add_argument("--protocol", choices=["auto", "legacy"], default="auto",
                        help="client protocol mode, also used gateway -> upstream "
                             "(auto: probe 2026-07-28 first; legacy: initialize handshake)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write every per-round value to this JSON file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # SDK deprecation chatter is not a measurement
    plan = QUICK if args.quick else FULL
    res = anyio.run(main_async, plan, args.protocol)
    text, ok = report(res, plan)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps({**asdict(res), "targets_met": ok}, indent=2) + "\n")
    return 1 if res.leaked else 0


if __name__ == "__main__":
    sys.exit(main())
