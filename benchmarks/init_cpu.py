"""CPU and wall time of a process to its ``initialize`` answer: bare FastMCP vs gateways.

    python benchmarks/init_cpu.py [--rounds N] [--baseline OTHER/bin/python]
                                  [--first initialize|discover]

Each round spawns, in rotated order, the benchmark's upstream itself (``bare``: a
FastMCP server), ``mcp-gateway serve`` in front of it from this install (``gateway``)
and, with ``--baseline``, from another install (``gateway@base``).  The host writes
its first request at once (``--first``: ``initialize``, as a handshake-era host does, or
``server/discover`` at 2026-07-28, as fastmcp's ``Client`` in its default ``auto`` mode
does, and so ``run.py``'s cold phase) and reads the answer at raised priority (when run
as root), then reads the process's user+system CPU from /proc: what it spent to
answer, not what it did after (a gateway goes on with its upstream's connect, and adds
its admin tools, right after answering).  A gateway answers the opening request before
it imports its server stack (``front/early.py``), so its figures are those of reading
the config and starting its upstream; ``run.py``'s cold *ready* row is the time to the
catalog.  Wall and CPU are medians over rounds, with the
load average per round: on a shared machine wall times are noise, CPU is the figure to
compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
UPSTREAM = HERE / "upstream.py"
TICK = os.sysconf("SC_CLK_TCK")
INITIALIZE = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "init-cpu", "version": "1"}}}) + "\n"
DISCOVER = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "server/discover",
    "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                         "io.modelcontextprotocol/clientInfo": {"name": "init-cpu",
                                                                "version": "1"},
                         "io.modelcontextprotocol/clientCapabilities": {}}}}) + "\n"
FIRST = {"initialize": INITIALIZE, "discover": DISCOVER}


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def argv_of(target: str, python: str, root: Path) -> list[str]:
    if target == "bare":
        return [python, str(UPSTREAM)]
    config = root / f"servers-{target}.yaml"
    config.write_text(f"servers:\n  up:\n    command: {python}\n    args: [{str(UPSTREAM)!r}]\n")
    return [python, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
            "--log-level", "WARNING", "--db", str(root / f"store-{target}.db")]


def answer_once(argv: list[str], root: Path, first: str = INITIALIZE) -> tuple[float, float]:
    """Spawn ``argv``, send ``first``, return (wall, CPU) at the answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled modules cached
    started = time.perf_counter()
    with (root / "stderr.log").open("ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=log, env=env, cwd=root)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(first.encode())
        process.stdin.flush()
        line = process.stdout.readline()
        wall = time.perf_counter() - started
        cpu = cpu_seconds(process.pid)
        process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if b'"result"' not in line:
        raise SystemExit(f"{argv[:3]}: no result to the first request: {line[:200]!r}")
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--baseline", help="another install's python (gateway@base)")
    parser.add_argument("--first", choices=sorted(FIRST), default="initialize",
                        help="the host's first request (default initialize)")
    args = parser.parse_args()
    targets = {"bare": sys.executable, "gateway": sys.executable}
    if args.baseline:
        targets["gateway@base"] = args.baseline
    with contextlib.suppress(OSError):  # the reader wakes at the answer, not a slice later
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    results: dict[str, list[tuple[float, float]]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="init-cpu-") as tmp:
        root = Path(tmp)
        names = list(targets)
        for r in range(args.rounds):
            load = os.getloadavg()[0]
            for target in names[r % len(names):] + names[:r % len(names)]:
                results[target].append(answer_once(argv_of(target, targets[target], root),
                                                   root, FIRST[args.first]))
                time.sleep(0.3)
            print(f"round {r + 1}/{args.rounds}, load {load:.2f}: " + "  ".join(
                f"{t} {results[t][-1][0] * 1000:.0f} ms / {results[t][-1][1] * 1000:.0f} "
                "ms CPU" for t in names), flush=True)
    print(f"\nfirst request: {args.first}")
    bare = results["bare"]
    print(f"\n{'target':14} {'wall (ms)':>10} {'vs bare':>8} {'CPU (ms)':>9} {'vs bare':>8}"
          "   (medians; ratios: median of per-round ratios)")
    for target, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        wall_x = statistics.median(w / b[0] for (w, _), b in zip(runs, bare, strict=True))
        cpu_x = statistics.median(c / b[1] for (_, c), b in zip(runs, bare, strict=True))
        print(f"{target:14} {wall * 1000:10.0f} {wall_x:7.2f}x {cpu * 1000:9.0f} {cpu_x:7.2f}x")
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
