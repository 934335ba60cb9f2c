"""The measurements: each phase runs its targets round by round and records every value.

A round measures every target once, in an order shuffled anew each round, and starts
by noting the load average; a figure is the median over rounds, and every ratio is
paired (a round's value over the same round's base value), so the spread of the
ratios shows how much a shared machine moved the numbers.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from bench_harness import (
    DIRECT,
    FASTMCP,
    GATEWAY,
    MANY_TOOLS,
    RELAY_LABEL,
    UPSTREAM,
    UPSTREAM_TOOLS,
    Running,
    Workspace,
    blob,
    burst,
    close_and_adopt,
    cpu_s,
    delta,
    interleaved_latency,
    listed,
    load,
    memory_mb,
    namespaced,
    percentile,
    reap,
    rotated,
    running,
    sequential_latency,
    throughput,
    until_listed,
)

Log = Callable[[str], None]
HOT_TARGETS = (DIRECT, RELAY_LABEL, GATEWAY, FASTMCP)


@dataclass(frozen=True)
class Plan:
    """How much to measure (``--quick`` shrinks every loop)."""

    name: str = "full"
    rounds: int = 4
    latency_calls: int = 300
    callers: int = 16
    calls_per_caller: int = 40
    burst_calls: int = 64
    burst_ms: float = 50.0
    bursts_per_round: int = 3  # the round's value is their median
    warmup_calls: int = 50
    sizes_mib: tuple[float, ...] = (1.0, 5.0, 20.0)
    mib_per_size: float = 4.0  # calls per size and round: this many MiB, at least one call
    list_upstreams: int = 20
    list_tools_each: int = 50
    list_calls: int = 10
    many_upstreams: int = 20
    cold_rounds: int = 4
    cold_floor: bool = True  # also time N bare upstreams started at once
    connect_timeout: float = 10.0  # the gateway's --connect-timeout (its default: 10 s)
    ready_within: float = 120.0  # give up on a start-up after this long


FULL = Plan()
QUICK = Plan(name="quick", rounds=2, latency_calls=100, calls_per_caller=10,
             bursts_per_round=1, warmup_calls=20, sizes_mib=(1.0, 5.0), list_calls=5,
             cold_rounds=1, cold_floor=False)


# -- results ----------------------------------------------------------------------------


Values = dict[str, list[float | None]]  # target -> value per round (None: not measured)


@dataclass
class Metric:
    """One row: a value per target and round."""

    title: str
    fmt: str = "{:.2f}"
    better: str = "lower"  # "lower", "higher" or "" (no better: not compared)
    paired: bool = True  # show each target's per-round ratio to the phase's base target
    values: Values = field(default_factory=dict)

    def median(self, target: str) -> float | None:
        known = [v for v in self.values.get(target, []) if v is not None]
        return statistics.median(known) if known else None

    def ratios(self, target: str, base: str) -> list[float | None]:
        """Per round: ``target``'s value over ``base``'s (None where either is missing)."""
        mine, theirs = self.values.get(target, []), self.values.get(base, [])
        return [m / b if m is not None and b else None for m, b in zip(mine, theirs, strict=False)]


@dataclass
class Phase:
    """One phase's targets, loads at the start of each round, metrics and notes."""

    title: str
    targets: list[str]
    base: str = DIRECT
    bases: dict[str, str] = field(default_factory=dict)  # per-target base (cold start)
    loads: list[tuple[float, float, float]] = field(default_factory=list)
    metrics: dict[str, Metric] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def define(self, key: str, title: str, fmt: str = "{:.2f}", better: str = "lower",
               paired: bool = True) -> None:
        self.metrics[key] = Metric(title, fmt, better, paired)

    def put(self, key: str, target: str, round_no: int, value: float | None) -> None:
        row = self.metrics[key].values.setdefault(target, [])
        row.extend([None] * (round_no + 1 - len(row)))
        row[round_no] = value

    def base_of(self, target: str) -> str | None:
        base = self.bases.get(target, self.base if self.base in self.targets else None)
        return None if base == target else base

    def start_round(self, round_no: int, rounds: int, what: str, log: Log) -> None:
        self.loads.append(load())
        log(f" {what}: round {round_no + 1}/{rounds}, load average "
            f"{' '.join(f'{x:.2f}' for x in self.loads[-1])}")


@dataclass
class Results:
    """Everything measured, JSON-able (``asdict``)."""

    plan: dict[str, Any]
    machine: dict[str, Any]
    negotiated: dict[str, str] = field(default_factory=dict)
    phases: dict[str, Phase] = field(default_factory=dict)
    leaked: list[int] = field(default_factory=list)
    seconds: float = 0.0


def results_from_json(data: dict[str, Any]) -> tuple[Results, Plan]:
    """A run written by ``--json``, back as objects (to print its report again)."""
    plan = Plan(**{**data["plan"], "sizes_mib": tuple(data["plan"]["sizes_mib"])})
    phases = {}
    for name, raw in data["phases"].items():
        metrics = {key: Metric(**m) for key, m in raw.pop("metrics").items()}
        phases[name] = Phase(**{**raw, "metrics": metrics,
                                "loads": [tuple(x) for x in raw["loads"]]})
    res = Results(plan=data["plan"], machine=data["machine"], negotiated=data["negotiated"],
                  phases=phases, leaked=data["leaked"], seconds=data["seconds"])
    return res, plan


def per(total: float | None, count: float, scale: float = 1000.0) -> float | None:
    return None if total is None else scale * total / count


# -- hot path and large results (one persistent session per target) ---------------------


async def persistent(ws: Workspace, plan: Plan, res: Results, log: Log,
                     phases: Sequence[str]) -> None:
    """Open direct, relay, gateway and FastMCP's proxy once; run the hot and large phases."""
    one = {"up": [str(UPSTREAM)]}
    eps = [ws.direct(), ws.relay(), ws.gateway(one, namespaced({"up": UPSTREAM_TOOLS}), "hot"),
           ws.fastmcp({"": [str(UPSTREAM)]}, UPSTREAM_TOOLS, "hot")]
    baseline = os.environ.get("MCP_GATEWAY_BENCH_BASELINE")
    if baseline:  # another install's gateway in the same rounds: a before/after pair
        eps.append(ws.gateway(one, namespaced({"up": UPSTREAM_TOOLS}), "hot-base",
                              python=baseline))
    runs: dict[str, Running] = {}
    owns: dict[str, contextlib.AsyncExitStack] = {}
    try:
        for ep in eps:
            log(f"  starting {ep.label}")
            own = owns[ep.label] = contextlib.AsyncExitStack()
            run = await own.enter_async_context(running(ws, ep, "hot"))
            ready, seen = await until_listed(run, plan.ready_within)
            if ready is None:
                raise RuntimeError(f"{ep.label}: {seen}/{len(ep.tools)} tools listed after "
                                   f"{plan.ready_within:g} s")
            runs[ep.label] = run
            res.negotiated[ep.label] = run.protocol
        for run in runs.values():  # warm-up: every code path once, nothing timed
            await sequential_latency(run, plan.warmup_calls)
            await throughput(run, plan.callers, 3)
            await burst(run, plan.burst_calls, plan.burst_ms)
        if "hot" in phases:
            await hot_phase(runs, plan, res, log)
        if "large" in phases:
            await large_phase(runs, plan, res, log)
    finally:
        with anyio.CancelScope(shield=True):
            measured = [res.phases[p] for p in ("hot", "large") if p in res.phases]
            await close_all(owns, measured[0].notes if measured else [])


async def close_all(owns: dict[str, contextlib.AsyncExitStack], notes: list[str]) -> None:
    """Close each target in turn; note the processes that outlived theirs, reap them."""
    for label, own in owns.items():
        adopted = await close_and_adopt(own)
        if adopted:
            notes.append(f"{label}: {len(adopted)} upstream process(es) outlived it after "
                         "its client closed (exited on their own, reaped by the benchmark)")
        left = await reap(adopted, within=60)
        if left:
            notes.append(f"{label}: processes {left} still running 60 s after it closed")


async def hot_phase(runs: dict[str, Running], plan: Plan, res: Results, log: Log) -> None:
    """Latency, throughput, burst, CPU per call and RSS, round by round."""
    ph = res.phases["hot"] = Phase("hot path (one persistent session each, stdio)",
                                   list(runs))
    ph.define("p50", "per-call latency p50 (ms)")
    ph.define("p95", "per-call latency p95 (ms)")
    ph.define("thr", f"throughput, {plan.callers} callers on 1 session (calls/s)", "{:.0f}",
              "higher")
    ph.define("burst", f"{plan.burst_calls} concurrent sleep_ms({plan.burst_ms:g}) wall (ms)",
              "{:.1f}")
    ph.define("cpu_mid", "CPU per call, middle process (ms)", paired=False)
    ph.define("cpu_up", "CPU per call, upstream (ms)")
    ph.define("rss_mid", "RSS, middle process, 1 upstream (MB)", "{:.0f}", paired=False)
    ph.define("rss_up", "RSS, upstream (MB)", "{:.0f}", "")
    for r in range(plan.rounds):
        ph.start_round(r, plan.rounds, "hot path", log)
        order = [runs[label] for label in rotated(list(runs), r)]
        for run in order:
            run.refresh_upstream()
        for label, got in (await interleaved_latency(order, plan.latency_calls)).items():
            if got.failed is not None:
                raise RuntimeError(f"{label}: {got.failed}")
            ph.put("p50", label, r, 1000 * percentile(got.samples, 50))
            ph.put("p95", label, r, 1000 * percentile(got.samples, 95))
            ph.put("cpu_mid", label, r, per(got.cpu_mid, len(got.samples)))
            ph.put("cpu_up", label, r, per(got.cpu_up, len(got.samples)))
        for run in order:
            value = await throughput(run, plan.callers, plan.calls_per_caller)
            ph.put("thr", run.endpoint.label, r, value)
        for run in order:
            walls = [await burst(run, plan.burst_calls, plan.burst_ms)
                     for _ in range(plan.bursts_per_round)]
            ph.put("burst", run.endpoint.label, r, 1000 * statistics.median(walls))
        for run in order:
            ph.put("rss_mid", run.endpoint.label, r, memory_mb(run.middle))
            ph.put("rss_up", run.endpoint.label, r, memory_mb(run.upstream))


async def large_phase(runs: dict[str, Running], plan: Plan, res: Results, log: Log) -> None:
    """Tool results of 1, 5 and 20 MiB: wall time and the middle process's CPU per MiB."""
    ph = res.phases["large"] = Phase("large tool results (text of N MiB, same sessions)",
                                     list(runs))
    sizes = plan.sizes_mib
    for mb in sizes:
        ph.define(f"wall{mb:g}", f"{mb:g} MiB result: wall per call (ms)", "{:.0f}")
    for mb in sizes:
        ph.define(f"cpu{mb:g}", f"{mb:g} MiB result: middle CPU per call (ms)", "{:.0f}",
                  paired=False)
    for mb in sizes:
        ph.define(f"cpumb{mb:g}", f"{mb:g} MiB result: middle CPU per MiB (ms)", "{:.1f}",
                  paired=False)
    growth = f"middle CPU per MiB, {sizes[-1]:g} vs {sizes[0]:g} MiB (x)"
    ph.define("growth", growth, paired=False)
    ph.define("hwm", "peak RSS (VmHWM), middle process (MB)", "{:.0f}", paired=False)
    # Each size twice before round 1: a process's first large answers grow its heap
    # (glibc adapts its mmap threshold as they are freed; ~25,000 and ~14,000 page faults
    # for a gateway's first two 20 MiB answers, 0-5,000 from then on), a one-time cost
    # that one call per round at the largest size read as super-linear growth.
    for run in runs.values():
        for mb in (*sizes, *sizes):
            await blob(run, mb)
    for r in range(plan.rounds):
        ph.start_round(r, plan.rounds, "large results", log)
        order = [runs[label] for label in rotated(list(runs), r)]
        for mb in sizes:
            calls = max(1, round(plan.mib_per_size / mb))
            for run in order:
                before, started = cpu_s(run.middle), time.perf_counter()
                for _ in range(calls):
                    await blob(run, mb)
                wall = time.perf_counter() - started
                used = delta(cpu_s(run.middle), before)
                label = run.endpoint.label
                ph.put(f"wall{mb:g}", label, r, 1000 * wall / calls)
                ph.put(f"cpu{mb:g}", label, r, per(used, calls))
                ph.put(f"cpumb{mb:g}", label, r, per(used, calls * mb))
        for run in order:
            label = run.endpoint.label
            low = ph.metrics[f"cpumb{sizes[0]:g}"].values[label][r]
            high = ph.metrics[f"cpumb{sizes[-1]:g}"].values[label][r]
            ph.put("growth", label, r, high / low if high is not None and low else None)
            ph.put("hwm", label, r, memory_mb(run.middle, "VmHWM"))


# -- aggregated tools/list --------------------------------------------------------------


async def upstream_bytes(run: Running) -> int:
    """The JSON size of the listed tools that are the upstreams' (untimed)."""
    page = await run.client.list_tools_mcp(cache_mode="bypass")
    return sum(len(t.model_dump_json(by_alias=True, exclude_none=True))
               for t in page.tools if t.name in run.endpoint.tools)


async def lists_phase(ws: Workspace, plan: Plan, res: Results, log: Log) -> None:
    """Warm tools/list of N x M tools through the gateway (and FastMCP's proxy) against
    one upstream holding all N x M; RSS of the front process with N upstreams."""
    n, m = plan.list_upstreams, plan.list_tools_each
    tools = [f"t{i:04d}" for i in range(n * m)]
    ups = {f"u{k + 1:02d}": [str(MANY_TOOLS), "--tools", str(m), "--first", str(k * m)]
           for k in range(n)}
    exposed = namespaced({name: tools[k * m:(k + 1) * m] for k, name in enumerate(ups)})
    eps = (ws.direct(MANY_TOOLS, "--tools", str(n * m), tools=tools),
           ws.gateway(ups, exposed, "lists", MANY_TOOLS),
           ws.fastmcp(ups, exposed, "lists", MANY_TOOLS))
    ph = res.phases["lists"] = Phase(
        f"warm tools/list of {n * m} tools (direct: 1 upstream with all of them; gateway "
        f"and fastmcp: {n} upstreams x {m})", [ep.label for ep in eps])
    ph.define("p50", "tools/list p50 (ms)", "{:.1f}")
    ph.define("bytes", "tools/list size (kB, JSON)", "{:.0f}")
    # Without the front's own tools (the gateway's gateway_* admin tools): what relaying
    # the upstreams' tools costs in size (invented metadata would show here).
    ph.define("ubytes", "tools/list size, upstream tools only (kB, JSON)", "{:.0f}")
    ph.define("cpu", "CPU per tools/list, serving process (ms)", "{:.1f}")
    ph.define("rss", f"RSS, serving process (MB; gateway, fastmcp: {n} upstreams)",
              "{:.0f}", paired=False)
    runs: list[Running] = []
    owns: dict[str, contextlib.AsyncExitStack] = {}
    try:
        for ep in eps:
            log(f"  starting {ep.label} ({len(ep.tools)} tools)")
            started = time.perf_counter()
            # Its own stack, so that a target that never becomes ready is stopped at
            # once instead of crash-looping through the other targets' measurements.
            own = contextlib.AsyncExitStack()
            try:
                run = await own.enter_async_context(
                    running(ws, ep, "lists", request_timeout=plan.ready_within))
            except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                await close_all({ep.label: own}, ph.notes)
                ph.notes.append(f"{ep.label}: no session within {plan.ready_within:g} s "
                                f"({type(exc).__name__}: {exc}); not measured")
                continue
            left = plan.ready_within - (time.perf_counter() - started)
            ready, seen = await until_listed(run, max(left, 1.0))
            took = time.perf_counter() - started
            if ready is None:
                await close_all({ep.label: own}, ph.notes)
                ph.notes.append(f"{ep.label}: not ready after {plan.ready_within:g} s "
                                f"({seen}/{len(ep.tools)} tools listed); not measured")
                log(f"  {ep.label}: not ready after {plan.ready_within:g} s")
                continue
            owns[ep.label] = own
            log(f"  {ep.label} ready after {took:.1f} s")
            ph.notes.append(f"{ep.label}: all {len(ep.tools)} tools listed {took:.1f} s "
                            "after spawn")
            runs.append(run)
        for run in runs:
            for _ in range(3):
                await listed(run.client)
        for r in range(plan.rounds):
            ph.start_round(r, plan.rounds, "tools/list", log)
            for run in rotated(runs, r) if runs else []:
                server = run.middle or run.pid
                before = cpu_s(server)
                samples, size = [], 0
                for _ in range(plan.list_calls):
                    started = time.perf_counter()
                    size = (await listed(run.client))[1]
                    samples.append(time.perf_counter() - started)
                label = run.endpoint.label
                ph.put("p50", label, r, 1000 * percentile(samples, 50))
                ph.put("bytes", label, r, size / 1000)
                ph.put("ubytes", label, r, await upstream_bytes(run) / 1000)
                ph.put("cpu", label, r, per(delta(cpu_s(server), before), plan.list_calls))
                ph.put("rss", label, r, memory_mb(server))
    finally:
        with anyio.CancelScope(shield=True):
            await close_all(owns, ph.notes)
