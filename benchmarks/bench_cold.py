"""Cold start: spawn a case's processes, time initialize and the first complete listing.

``MCP_GATEWAY_BENCH_BASELINE`` adds ``gateway@base x1``, another install's gateway, to
the same rounds.  "initialize answered" is the client's connect: with ``--protocol
auto`` (the default) fastmcp's ``Client`` opens with ``server/discover`` at 2026-07-28
(and falls back to ``initialize`` for a handshake-era server), with ``legacy`` with
``initialize``.  The CPU a process spent to that answer is measured by ``init_cpu.py``
(``--first discover`` or ``initialize``): read here, after the client's handshake, it
would include whatever the process did after answering.

Each case starts from nothing (a fresh process tree per case and round); a case that is
not ready within ``Plan.ready_within`` is reported as such and not started again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from bench_harness import (
    LIGHT_TOOLS,
    LIGHT_UPSTREAM,
    UPSTREAM,
    UPSTREAM_TOOLS,
    Endpoint,
    Workspace,
    children_cpu,
    children_of,
    listed,
    memory_mb,
    namespaced,
    rotated,
    wait_no_children,
)
from bench_phases import Log, Phase, Plan, Results

# -- cold start -------------------------------------------------------------------------


@dataclass
class Start:
    """One cold start of one case (times in seconds; None: did not happen)."""

    initialize_s: float | None  # spawn -> every client initialized
    ready_s: float | None  # spawn -> every expected tool listed
    seen: int  # expected tools listed when it ended
    expected: int
    cpu_s: float  # CPU of the whole process tree
    close_s: float
    orphans: int
    rss_mb: float | None  # the one spawned process, when there is one
    error: str = ""


async def cold_start(ws: Workspace, eps: Sequence[Endpoint], tag: str, within: float) -> Start:
    """Spawn ``eps`` at once, wait for complete listings (at most ``within`` s), close."""
    cpu_before = children_cpu()
    mine_before = set(children_of(os.getpid()))
    count = len(eps)
    inited: list[float | None] = [None] * count
    ready: list[float | None] = [None] * count
    seen = [0] * count
    errors: list[str] = []
    settled, close_now = anyio.Event(), anyio.Event()
    outcomes = 0

    def settle() -> None:
        nonlocal outcomes
        outcomes += 1
        if outcomes == count:
            settled.set()

    scopes = [anyio.CancelScope() for _ in eps]

    async def one(i: int, ep: Endpoint) -> None:
        with scopes[i]:
            try:
                async with ws.client(ep, f"{tag}-{i}", timeout=within) as client:
                    inited[i] = time.perf_counter() - started

                    async def poll() -> None:
                        while True:
                            names = set((await listed(client))[0])
                            seen[i] = len(ep.tools & names)
                            if seen[i] == len(ep.tools):
                                ready[i] = time.perf_counter() - started
                                settle()
                                return
                            await anyio.sleep(0.05)

                    async with anyio.create_task_group() as inner:
                        inner.start_soon(poll)
                        await close_now.wait()
                        inner.cancel_scope.cancel()
            except Exception as exc:  # noqa: BLE001 - a failed start is a result
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                if ready[i] is None:
                    settle()

    started = time.perf_counter()
    rss = None
    async with anyio.create_task_group() as tg:
        for i, ep in enumerate(eps):
            tg.start_soon(one, i, ep)
        with anyio.move_on_after(within):
            await settled.wait()
        spawned = [p for p in children_of(os.getpid()) if p not in mine_before]
        rss = memory_mb(spawned[0]) if len(spawned) == 1 else None
        closing = time.perf_counter()
        close_now.set()
        for i, scope in enumerate(scopes):
            if inited[i] is None:  # still initializing: stop waiting for it
                scope.cancel()
    close_s = time.perf_counter() - closing
    # Every client is closed: a new child of ours now is an upstream that outlived its
    # gateway and was re-parented to us.  Orphans exit on their own (their stdin is
    # closed) but, CPU-starved, can take a while; the next case must not start while
    # they still compete for the CPU.
    orphans = [p for p in children_of(os.getpid()) if p not in mine_before]
    left = await wait_no_children(within=120, adopted=orphans)
    if left:
        errors.append(f"processes {left} still running 120 s after closing")
    init_times = [t for t in inited if t is not None]
    ready_times = [t for t in ready if t is not None]
    return Start(
        initialize_s=max(init_times) if len(init_times) == count else None,
        ready_s=max(ready_times) if len(ready_times) == count else None,
        seen=sum(seen), expected=sum(len(ep.tools) for ep in eps),
        cpu_s=children_cpu() - cpu_before, close_s=close_s, orphans=len(orphans), rss_mb=rss,
        error="; ".join(sorted(set(errors))),
    )


def cold_cases(ws: Workspace, plan: Plan) -> dict[str, list[Endpoint]]:
    """Cold-start cases: name -> endpoints spawned together."""
    n = plan.many_upstreams
    names = [f"up{i:02d}" for i in range(1, n + 1)]
    heavy = {name: [str(UPSTREAM)] for name in names}
    light = {name: [str(LIGHT_UPSTREAM)] for name in names}
    cases = {
        "direct x1": [ws.direct()],
        "fastmcp x1": [ws.fastmcp({"": [str(UPSTREAM)]}, UPSTREAM_TOOLS, "cold1")],
        "gateway x1": [ws.gateway({"up": [str(UPSTREAM)]},
                                  namespaced({"up": UPSTREAM_TOOLS}), "cold1")],
        f"gateway x{n}": [ws.gateway(heavy, namespaced(dict.fromkeys(names, UPSTREAM_TOOLS)),
                                     f"cold{n}")],
        "gateway x1, light upstream": [ws.gateway(
            {"up": [str(LIGHT_UPSTREAM)]}, namespaced({"up": LIGHT_TOOLS}), "cold1-light",
            LIGHT_UPSTREAM)],
        f"gateway x{n}, light upstream": [ws.gateway(
            light, namespaced(dict.fromkeys(names, LIGHT_TOOLS)), f"cold{n}-light",
            LIGHT_UPSTREAM)],
    }
    if plan.cold_floor:
        cases[f"direct x{n}"] = [ws.direct()] * n
    baseline = os.environ.get("MCP_GATEWAY_BENCH_BASELINE")
    if baseline:  # another install's gateway in the same rounds: a before/after pair
        cases["gateway@base x1"] = [ws.gateway(
            {"up": [str(UPSTREAM)]}, namespaced({"up": UPSTREAM_TOOLS}), "cold1-base",
            python=baseline)]
    return cases


async def cold_phase(ws: Workspace, plan: Plan, res: Results, log: Log) -> None:
    """Spawn-to-first-complete-tools/list, round-robin over the cases."""
    n = plan.many_upstreams
    cases = cold_cases(ws, plan)
    ph = res.phases["cold"] = Phase(
        f"cold start -> complete tools/list (gateway --connect-timeout "
        f"{plan.connect_timeout:g} s; given up after {plan.ready_within:g} s)", list(cases),
        base="direct x1",
        bases={f"gateway x{n}": f"direct x{n}" if plan.cold_floor else "gateway x1",
               f"gateway x{n}, light upstream": "gateway x1, light upstream"})
    ph.define("init", "initialize answered (ms)", "{:.0f}")
    ph.define("ready", "ready (ms)", "{:.0f}")
    ph.define("cpu", "CPU (s)", "{:.1f}", paired=False)
    ph.define("close", "close (ms)", "{:.0f}", paired=False)
    ph.define("orphans", "orphans", "{:.0f}", paired=False)
    ph.define("rss", "RSS at ready (MB)", "{:.0f}", paired=False)
    given_up: set[str] = set()
    for r in range(plan.cold_rounds):
        ph.start_round(r, plan.cold_rounds, "cold start", log)
        for case in rotated(list(cases), r):
            if case in given_up:
                continue
            log(f"  cold start: round {r + 1}/{plan.cold_rounds}: {case}")
            start = await cold_start(ws, cases[case], f"cold{r}", plan.ready_within)
            ph.put("init", case, r, None if start.initialize_s is None
                   else 1000 * start.initialize_s)
            ph.put("ready", case, r, None if start.ready_s is None else 1000 * start.ready_s)
            ph.put("cpu", case, r, start.cpu_s)
            ph.put("close", case, r, 1000 * start.close_s)
            ph.put("orphans", case, r, start.orphans)
            ph.put("rss", case, r, start.rss_mb)
            if start.ready_s is None:
                given_up.add(case)
                why = f" ({start.error})" if start.error else ""
                ph.notes.append(f"{case}: not ready after {plan.ready_within:g} s in round "
                                f"{r + 1} ({start.seen}/{start.expected} tools listed){why}; "
                                "not started again")
                log(f"  {case}: not ready after {plan.ready_within:g} s")
            await anyio.sleep(0.3)  # let the machine settle after the teardown
