"""Gateway CPU per express-lane call, this tree against another install, interleaved.

    python benchmarks/lane_cpu.py [--calls 2000] [--rounds 4] [--callers 1]
                                  [--base /work/main/.venv/bin/python]
                                  [--profile out.prof] [--protocol auto|legacy]
                                  [--http-upstream]

Spawns one ``mcp-gateway serve`` per interpreter (this one, and ``--base``'s if given)
in front of ``upstream.py``, warms each up, then runs ``--calls`` ``echo`` calls per
round on each in turn (the order shuffled each round), with ``--callers`` concurrent
callers, and prints the gateway's user+system CPU per call (``/proc``, 10 ms ticks) per
round and the median, with the load average.  CPU per call is far less sensitive to a
busy machine than latency, so it is the figure to compare on a shared host.

``--http-upstream`` serves the upstream over streamable HTTP (``upstream.py --http``)
and has the gateways reach it by URL: with ``--protocol legacy``, a handshake-era host
on stdio in front of a handshake-era HTTP upstream (Claude Desktop and a remote
server); printed too, the TCP connections opened per call (``tcp_opens``: the whole
network namespace's, so others' show up as noise).

``--profile FILE`` runs this tree's gateway under ``profiled_gateway.py`` and writes a
``cProfile`` of its last round: call counts per call are exact (e.g. ``_run_once``, the
event loop's turns per call, on asyncio's loop only: set MCP_GATEWAY_EVENT_LOOP=asyncio, as
uvloop's turns are compiled), times are inflated by the profiler and include waits in
system calls.  (py-spy's samples of this process were misattributed: not used.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import anyio
from bench_harness import (
    HERE,
    PY,
    UPSTREAM,
    UPSTREAM_TOOLS,
    Workspace,
    cpu_s,
    delta,
    load,
    namespaced,
    profiled,
    rotated,
    running,
    sequential_latency,
    tcp_opens,
    throughput,
)
from bench_http import http_upstream


async def main(args: argparse.Namespace) -> None:
    pythons = {"this": PY}
    if args.base:
        pythons["base"] = args.base
    with tempfile.TemporaryDirectory(prefix="lane-cpu-") as root, \
            contextlib.ExitStack() as processes:
        ws = Workspace(Path(root), args.protocol, 10.0)
        eps = {label: ws.gateway({"up": [str(UPSTREAM)]}, namespaced({"up": UPSTREAM_TOOLS}),
                                 f"lane-{label}", python=python)
               for label, python in pythons.items()}
        if args.http_upstream:  # the same gateways, their upstream reached by URL
            _, url, _ = await http_upstream(ws, processes)
            for label in eps:
                (ws.root / f"servers-lane-{label}.yaml").write_text(
                    f"servers:\n  up:\n    url: {url}\n    protocol: {args.protocol}\n")
        if args.profile:  # the same command line, under the signal-switched profiler
            ep = eps["this"]
            eps["this"] = replace(ep, args=(str(HERE / "profiled_gateway.py"),
                                            args.profile, *ep.args[2:]))
        async with contextlib.AsyncExitStack() as stack:
            runs = {label: await stack.enter_async_context(running(ws, ep, label))
                    for label, ep in eps.items()}
            for run in runs.values():
                await sequential_latency(run, 200)
                await throughput(run, 16, 5)
            per_call: dict[str, list[float]] = {label: [] for label in runs}
            opened: dict[str, list[float]] = {label: [] for label in runs}
            p50: dict[str, list[float]] = {label: [] for label in runs}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}: load {load()}", file=sys.stderr)
                for label in rotated(list(runs), r):
                    run = runs[label]
                    last = bool(args.profile) and label == "this" and r == args.rounds - 1
                    each = max(1, args.calls // args.callers)
                    with profiled(run, last):
                        before, opens = cpu_s(run.middle), tcp_opens()
                        if args.callers == 1:
                            p50[label].append(1000 * statistics.median(
                                await sequential_latency(run, each)))
                        else:
                            await throughput(run, args.callers, each)
                        used = delta(cpu_s(run.middle), before)
                    assert used is not None
                    ms = 1000 * used / (each * args.callers)
                    per_call[label].append(ms)
                    opened[label].append(((tcp_opens() or 0) - (opens or 0))
                                         / (each * args.callers))
                    print(f"  {label:5s} {ms:.3f} ms/call, {opened[label][-1]:.2f} TCP "
                          "connections opened per call", file=sys.stderr)
            for label, values in per_call.items():
                print(f"{label}: gateway CPU per call median {statistics.median(values):.3f} ms"
                      f" (rounds: {', '.join(f'{v:.3f}' for v in values)}); TCP connections"
                      f" opened per call {statistics.median(opened[label]):.2f}"
                      + (f"; p50 {statistics.median(p50[label]):.3f} ms" if p50[label] else ""))
            print(f"load at end: {load()} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--base", help="another install's python (e.g. main's .venv)")
    parser.add_argument("--profile", help="write a cProfile of this tree's last round")
    parser.add_argument("--protocol", default="auto", choices=("auto", "legacy"))
    parser.add_argument("--http-upstream", action="store_true",
                        help="the upstream over streamable HTTP, by URL")
    options = parser.parse_args()
    if options.profile:
        options.profile = os.path.abspath(options.profile)
    anyio.run(main, options)
