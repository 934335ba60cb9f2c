"""RSS of stdio middle processes at three milestones: gateways of several trees and FastMCP's proxy.

    python benchmarks/rss_compare.py [--rounds 3] [--calls 300] [--callers 16]
                                     TARGET [TARGET ...]

A TARGET is a source tree (its ``src`` goes first on ``PYTHONPATH``: ``mcp-gateway
serve`` from that tree) or ``proxy`` (``fastmcp_proxy.py``).  Each round starts every
target, in alternating order, in front of one ``upstream.py`` with a fresh store,
and reads the middle process's ``VmRSS`` / ``RssAnon`` / ``RssFile`` when the session is
open (``init``), once the upstream's tools are listed (``list``) and after ``--calls``
sequential calls plus ``--callers`` x 50 concurrent ones (``calls``, the figure the hot
phase's "RSS, middle process" row compares).  Medians over rounds, MB (10^6 B).
``MCP_GATEWAY_*`` and ``MALLOC_*`` variables reach the gateways, so a feature can be
turned off for all of them (``MCP_GATEWAY_RECORD_CALLS=false``,
``MCP_GATEWAY_EVENT_LOOP=asyncio``) to see what it costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

HERE = Path(__file__).resolve().parent
KEYS = (("VmRSS", ""), ("RssAnon", " anon"), ("RssFile", " file"))
PY = sys.executable


def status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in dict(KEYS):
            out[key] = int(value.split()[0]) * 1024 / 1e6
    return out


def children(pid: int) -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(proc.name))
    return found


async def measure(target: str, root: Path, args: argparse.Namespace) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k.startswith(("MCP_GATEWAY_", "MALLOC_"))}
    if target == "proxy":
        argv, tool = [str(HERE / "fastmcp_proxy.py"), PY, str(HERE / "upstream.py")], "echo"
    else:
        config = root / "servers.yaml"
        config.write_text(f"servers:\n  u:\n    command: {PY}\n"
                          f"    args: [{json.dumps(str(HERE / 'upstream.py'))}]\n")
        argv = ["-m", "fast_mcp_gateway", "serve", "--config", str(config), "--log-level",
                "WARNING", "--db", str(root / f"store-{time.monotonic_ns()}.db")]
        env["PYTHONPATH"], tool = f"{target}/src", "u_echo"
    before = children(os.getpid())
    transport = StdioTransport(PY, argv, env=env, keep_alive=False, log_file=root / "log")
    out: dict[str, float] = {}
    async with Client(transport, timeout=120) as client:
        (pid,) = children(os.getpid()) - before

        def take(milestone: str) -> None:
            for key, label in KEYS:
                out[milestone + label] = status(pid)[key]

        take("init")
        # Until the upstream's tools are listed (it connects after the answer).
        while not any(t.name == tool for t in await client.list_tools()):  # noqa: ASYNC110
            await anyio.sleep(0.05)
        take("list")
        for i in range(args.calls):
            await client.call_tool(tool, {"text": f"ping {i}"})

        async def caller() -> None:
            for _ in range(50):
                await client.call_tool(tool, {"text": "x"})

        async with anyio.create_task_group() as tg:
            for _ in range(args.callers):
                tg.start_soon(caller)
        take("calls")
    return out


async def run(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, float]]] = {t: [] for t in args.targets}
    with tempfile.TemporaryDirectory(prefix="rss-compare-") as tmp:
        for r in range(args.rounds):
            for target in args.targets if r % 2 == 0 else args.targets[::-1]:
                results[target].append(await measure(target, Path(tmp), args))
    for target, rows in results.items():
        cells = "  ".join(f"{k} {statistics.median(row[k] for row in rows):6.1f}"
                          for k in rows[0])
        print(f"{target}\n    {cells}\n    calls per round: "
              + " ".join(f"{row['calls']:.1f}" for row in rows))



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("targets", nargs="+", help="source trees, or 'proxy'")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--callers", type=int, default=16)
    args: Any = parser.parse_args(argv)
    args.targets = [t if t == "proxy" else str(Path(t).resolve()) for t in args.targets]
    anyio.run(run, args)


if __name__ == "__main__":
    main()
