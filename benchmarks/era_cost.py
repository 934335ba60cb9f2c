"""What the upstream session's era costs: gateway and upstream CPU per call, and
throughput, for a host of each era, with ``protocol: legacy`` and ``2026-07-28``.

    python benchmarks/era_cost.py [--calls 2000] [--rounds 3] [--base PYTHON]
                                  [--only HOST:PROTOCOL ...]

Every combination runs once per round, in the same order each round (alternating
eras), each with a fresh ``mcp-gateway serve`` in front of ``benchmarks/upstream.py``
over stdio; 8 concurrent callers share one host session.  CPU is user+system time of
the gateway and of the upstream process from ``/proc`` (10 ms ticks), per call.

``--base`` runs each combination a second time, next to it, with another install's
gateway (its python, e.g. ``/work/main/.venv/bin/python``), and prints the paired
per-round ratios (this / base; which one goes first alternates by round): on a
shared machine only those are comparable.
``--only auto:legacy`` (host mode : upstream protocol) keeps the rows named.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

PY = sys.executable
UPSTREAM = Path(__file__).resolve().parent / "upstream.py"
TICK = os.sysconf("SC_CLK_TCK")
CALLERS = 8


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


async def measure(root: Path, protocol: str, host: str, calls: int,
                  python: str = PY) -> tuple[float, ...]:
    """(gateway ms/call, upstream ms/call, calls/s) for one combination, the gateway
    run by ``python``."""
    config = root / f"servers-{protocol}.yaml"
    config.write_text(f"servers:\n  up:\n    command: {PY}\n    args: [{UPSTREAM}]\n"
                      f"    protocol: {protocol}\n")
    transport = StdioTransport(python, ["-m", "fast_mcp_gateway", "serve", "--config",
                                        str(config),
                                    "--db", str(root / f"store-{protocol}-{host}.db"),
                                    "--log-level", "WARNING"], keep_alive=False)
    before = set(children(os.getpid()))
    async with Client(transport, mode=host) as client:
        (gateway,) = [p for p in children(os.getpid()) if p not in before]
        for _ in range(100):  # warm up; the upstream is connected by now
            await client.call_tool_mcp("up_echo", {"text": "hi"})
        (upstream,) = children(gateway)
        g0, u0, started = cpu_s(gateway), cpu_s(upstream), time.perf_counter()

        async def caller(n: int) -> None:
            for _ in range(n):
                await client.call_tool_mcp("up_echo", {"text": "hi"})

        async with anyio.create_task_group() as tg:
            for _ in range(CALLERS):
                tg.start_soon(caller, calls // CALLERS)
        wall = time.perf_counter() - started
        done = calls // CALLERS * CALLERS
        return ((cpu_s(gateway) - g0) / done * 1000, (cpu_s(upstream) - u0) / done * 1000,
                done / wall)


async def main(calls: int, rounds: int, base: str | None, only: list[str]) -> None:
    results: dict[tuple[str, str, str], list[tuple[float, ...]]] = {}
    combos = [(host, protocol) for host in ("auto", "legacy")
              for protocol in ("legacy", "2026-07-28")
              if not only or f"{host}:{protocol}" in only]
    builds = [("this", PY)] + ([("base", base)] if base else [])
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(1, rounds + 1):
            for host, protocol in combos:
                for build, python in (builds if r % 2 else builds[::-1]):  # order rotates
                    row = await measure(Path(tmp), protocol, host, calls, python)
                    results.setdefault((host, protocol, build), []).append(row)
                    print(f"round {r} load {os.getloadavg()[0]:.1f}  {build}  host {host:6}  "
                          f"upstream {protocol:10}  gateway {row[0]:.2f} ms/call  upstream "
                          f"{row[1]:.2f} ms/call  {row[2]:.0f} calls/s", flush=True)
    print("\nmedians (host mode 'auto' = 2026-07-28, 'legacy' = handshake era)")
    for (host, protocol, build), rows in results.items():
        g, u, t = (statistics.median(row[i] for row in rows) for i in range(3))
        print(f"  {build}  host {host:6}  upstream {protocol:10}  gateway {g:.2f}  upstream "
              f"{u:.2f} ms/call  {t:.0f} calls/s")
    if base:
        print("\npaired per-round ratios this/base: gateway CPU per call, calls/s (median)")
        for host, protocol in combos:
            mine, theirs = results[(host, protocol, "this")], results[(host, protocol, "base")]
            cpu = [a[0] / b[0] for a, b in zip(mine, theirs, strict=True) if b[0]]
            rate = [a[2] / b[2] for a, b in zip(mine, theirs, strict=True)]
            print(f"  host {host:6}  upstream {protocol:10}  CPU "
                  f"{' '.join(f'{x:.2f}' for x in cpu)} (median {statistics.median(cpu):.2f})"
                  f"  calls/s {' '.join(f'{x:.2f}' for x in rate)} "
                  f"(median {statistics.median(rate):.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per combination")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are printed)")
    parser.add_argument("--base", help="another install's python, run right after each row")
    parser.add_argument("--only", nargs="*", default=[],
                        help="HOST:PROTOCOL rows to run, e.g. auto:legacy")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rounds, args.base, args.only)
