"""Gateway benchmark: direct, a byte relay, the gateway and FastMCP's proxy, side by side.

One command, one run, interleaved round by round::

    python benchmarks/run.py [--quick] [--rounds 4] [--only hot,http,http-legacy,large,lists,cold]
                             [--connect-timeout 10] [--protocol auto|legacy] [--json out.json]

Every target is stdio end to end and uses the same client (a fastmcp ``Client`` over
``StdioTransport``):

* direct:  client --stdio--> ``python benchmarks/upstream.py``
* relay:   client --stdio--> ``python benchmarks/relay.py`` --stdio--> upstream
  (a byte copier: the cost of one more process and pipe hop, and nothing else)
* gateway: client --stdio--> ``python -m fast_mcp_gateway serve`` --stdio--> upstream
* fastmcp: client --stdio--> ``python benchmarks/fastmcp_proxy.py`` --stdio--> upstream
  (FastMCP's own proxy, one persistent session per upstream)

Phases: ``hot`` (latency, throughput, burst, CPU per call, RSS), ``http`` (the same
upstream over streamable HTTP: direct, the gateway without auth, with a static token and
with a JWT, FastMCP's proxy over HTTP; see ``bench_http.py``), ``http-legacy`` (the
same in the handshake era, whatever ``--protocol`` says: hosts with ``initialize`` and
``Mcp-Session-Id``, as Claude Desktop, the Inspector and mcp 1.x clients speak over
HTTP, and the gateways and the proxy reaching the upstream the same way), ``large`` (1, 5,
20 MiB results: CPU per MiB), ``lists`` (warm tools/list of 20 x 50 tools against one
upstream with all 1,000; RSS with twenty upstreams) and ``cold`` (start-up, including
20 FastMCP upstreams against the same 20 started directly).  ``benchmarks/README.md``
explains every number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from bench_cold import cold_phase
from bench_harness import Workspace, become_subreaper, wait_no_children
from bench_http import http_phase
from bench_phases import (
    FULL,
    QUICK,
    Plan,
    Results,
    lists_phase,
    persistent,
    results_from_json,
)
from bench_report import report

PHASES = ("hot", "http", "http-legacy", "large", "lists", "cold")


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


@contextlib.asynccontextmanager
async def workspace(protocol: str, plan: Plan) -> AsyncIterator[Workspace]:
    """A temporary directory for configs, stores and logs, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as root:
        yield Workspace(Path(root), protocol, plan.connect_timeout)


async def main_async(plan: Plan, protocol: str, phases: Sequence[str]) -> Results:
    """Run the chosen phases (progress goes to stderr)."""
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s]{line}", file=sys.stderr, flush=True)

    info = machine_info()
    info["protocol"] = protocol
    info["subreaper"] = become_subreaper()
    res = Results(plan=asdict(plan), machine=info)
    async with workspace(protocol, plan) as ws:
        try:
            if "hot" in phases or "large" in phases:
                log(" persistent sessions: " + ", ".join(p for p in ("hot", "large")
                                                         if p in phases))
                await persistent(ws, plan, res, log, phases)
            if "http" in phases:
                log(" HTTP front")
                await http_phase(ws, plan, res, log)
            if "http-legacy" in phases:
                log(" HTTP front, handshake era")
                await http_phase(ws, plan, res, log, "http-legacy", "legacy")
            if "lists" in phases:
                log(" aggregated tools/list")
                await lists_phase(ws, plan, res, log)
            if "cold" in phases:
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


def phase_list(text: str) -> list[str]:
    """``hot,large`` -> the phases, each checked."""
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PHASES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown phase(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(PHASES)}, comma-separated")
    return chosen


def sizes(text: str) -> tuple[float, ...]:
    """``1,5,20`` -> sizes in MiB, ascending, each > 0."""
    try:
        values = tuple(sorted(float(x) for x in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give MiB sizes like 1,5,20") from None
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be > 0 MiB")
    return values


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be > 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run; exit 1 only if a process leaked (targets are reported)."""
    parser = argparse.ArgumentParser(
        description="Direct vs relay vs gateway vs FastMCP's proxy (stdio -> stdio), "
                    "interleaved round by round."
    )
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds, fewer calls, 1 cold-start round without the floor")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per phase (default 4; quick 2)")
    parser.add_argument("--cold-rounds", type=int, default=None,
                        help="rounds of the cold-start phase (default: --rounds; quick 1)")
    parser.add_argument("--only", type=phase_list, default=list(PHASES), metavar="PHASES",
                        help=f"comma-separated phases to run (default: all of {','.join(PHASES)})")
    parser.add_argument("--skip", type=phase_list, default=[], metavar="PHASES",
                        help="comma-separated phases not to run")
    parser.add_argument("--sizes", type=sizes, default=None, metavar="MIB",
                        help="large-result sizes in MiB (default 1,5,20; quick 1,5)")
    parser.add_argument("--connect-timeout", type=positive, default=None, metavar="S",
                        help="the gateway's --connect-timeout per upstream (default 10, the "
                             "gateway's own default)")
    parser.add_argument("--ready-within", type=positive, default=None, metavar="S",
                        help="give up on a start-up after S seconds and report it as not "
                             "ready (default 120)")
    parser.add_argument("--protocol", choices=["auto", "legacy"], default="auto",
                        help="client protocol mode, also used gateway/proxy -> upstream "
                             "(auto: 2026-07-28 where supported; legacy: initialize handshake)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write every per-round value to this JSON file")
    parser.add_argument("--report", type=Path, default=None, metavar="PATH",
                        help="measure nothing: print the report of a run saved with --json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # SDK deprecation chatter is not a measurement
    if args.report is not None:
        try:
            saved, saved_plan = results_from_json(json.loads(args.report.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--report {args.report}: not a run saved with --json ({exc})")
        print(report(saved, saved_plan)[0])
        return 0
    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        changes["rounds"] = args.rounds
        if not args.quick:
            changes["cold_rounds"] = args.rounds
    if args.cold_rounds is not None:
        if args.cold_rounds < 1:
            parser.error("--cold-rounds must be at least 1")
        changes["cold_rounds"] = args.cold_rounds
    for flag, key in (("sizes", "sizes_mib"), ("connect_timeout", "connect_timeout"),
                      ("ready_within", "ready_within")):
        if getattr(args, flag) is not None:
            changes[key] = getattr(args, flag)
    plan = replace(plan, **changes)
    phases = [p for p in PHASES if p in args.only and p not in args.skip]
    if not phases:
        parser.error("--only/--skip leave no phase to run")
    res = anyio.run(main_async, plan, args.protocol, phases)
    text, ok = report(res, plan)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps({**asdict(res), "targets_met": ok}, indent=2) + "\n")
    return 1 if res.leaked else 0


if __name__ == "__main__":
    sys.exit(main())
