"""Gateway CPU per HTTP-front call, this tree against another install, interleaved.

    python benchmarks/http_cpu.py [--calls 1000] [--rounds 4] [--auth none|token|jwt] [--stdio]
                                  [--protocol auto|legacy]
                                  [--base /work/main/.venv/bin/python] [--profile out.prof]

Serves ``upstream.py --http`` and one ``mcp-gateway serve --transport http`` per
interpreter in front of it (by URL, as ``bench_http.py`` does), one persistent fastmcp
client each, and one straight to the upstream (``direct``); then ``--calls`` sequential
``echo`` calls per round on each in turn (order shuffled each round), printing the gateway's and
the upstream's CPU per call (``/proc``) and the p50 latency per round, then their
medians and the median of each round's p50 over that round's ``direct`` p50, with the
load average.  ``--profile FILE`` runs this tree's gateway under
``profiled_gateway.py`` and writes a ``cProfile`` of its last round.  ``--protocol
legacy``: the clients and the gateways' upstream sessions use the initialize handshake
(a handshake-era host on its session: the session lane, ``http/session_lane.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from bench_harness import (
    HERE,
    PY,
    UPSTREAM_TOOLS,
    Endpoint,
    Running,
    Workspace,
    cpu_s,
    delta,
    load,
    percentile,
    profiled,
    rotated,
    sequential_latency,
)
from bench_http import (
    BENCH_TOKEN,
    _own_upstream,
    auth_section,
    free_port,
    gateway_config,
    http_client,
    http_upstream,
    process,
    until_serving,
)


async def main(args: argparse.Namespace) -> None:
    from fastmcp.server.auth.providers.jwt import RSAKeyPair

    pythons = {"this": PY, **({"base": args.base} if args.base else {})}
    keys = RSAKeyPair.generate()
    credential = {"none": None, "token": BENCH_TOKEN, "jwt": keys.create_token(
        subject="bench-user", issuer="https://idp.bench.invalid/", audience="mcp-gateway",
        scopes=["tools"], expires_in_seconds=24 * 3600)}[args.auth]
    auth = None if args.auth == "none" else auth_section(keys.public_key)
    with tempfile.TemporaryDirectory(prefix="http-cpu-") as root, contextlib.ExitStack() as ps:
        ws = Workspace(Path(root), args.protocol, 10.0)
        _, up_url, upstream = await http_upstream(ws, ps)
        settings = {k: v for k, v in os.environ.items() if k.startswith("MCP_GATEWAY_")}
        urls: dict[str, tuple[str, int]] = {}
        for label, python in pythons.items():
            port = free_port()
            config = gateway_config(ws, label, None if args.stdio else up_url, auth)
            argv = ["-m", "fast_mcp_gateway", "serve", "--transport", "http", "--host",
                    "127.0.0.1", "--port", str(port), "--config", str(config),
                    "--log-level", "WARNING", "--db", str(ws.root / f"store-{label}.db")]
            if args.profile and label == "this":
                argv = [str(HERE / "profiled_gateway.py"), args.profile, *argv[2:]]
            proc = ps.enter_context(process(argv, ws.logs / f"gw-{label}.log", settings,
                                            python))
            urls[label] = (f"http://127.0.0.1:{port}/mcp", proc.pid)
        async with contextlib.AsyncExitStack() as clients:
            runs: dict[str, Running] = {}
            upstream_pid = upstream.pid
            direct: Any = await clients.enter_async_context(http_client(up_url, ws.protocol))
            runs["direct"] = Running(Endpoint("direct", (), "", frozenset(UPSTREAM_TOOLS)),
                                     direct, upstream_pid, None, upstream_pid, "")
            for label, (url, pid) in urls.items():
                await until_serving(url, ws.protocol, credential, "up_echo", 120)
                client: Any = await clients.enter_async_context(
                    http_client(url, ws.protocol, credential))
                ep = Endpoint(label, (), "up_", frozenset("up_" + t for t in UPSTREAM_TOOLS))
                own = _own_upstream(pid) if args.stdio else upstream_pid
                runs[label] = Running(ep, client, pid, pid, own or upstream_pid, "")
            for run in runs.values():
                await sequential_latency(run, 200)
            cpu: dict[str, list[float]] = {label: [] for label in runs}
            up_cpu: dict[str, list[float]] = {label: [] for label in runs}
            p50: dict[str, list[float]] = {label: [] for label in runs}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}: load {load()}", file=sys.stderr)
                for label in rotated(list(runs), r):
                    run = runs[label]
                    last = bool(args.profile) and label == "this" and r == args.rounds - 1
                    with profiled(run, last):
                        before, up_before = cpu_s(run.middle), cpu_s(run.upstream)
                        samples = await sequential_latency(run, args.calls)
                        used = delta(cpu_s(run.middle), before)
                        up_used = delta(cpu_s(run.upstream), up_before)
                    if used is not None:
                        cpu[label].append(1000 * used / args.calls)
                    if up_used is not None:
                        up_cpu[label].append(1000 * up_used / args.calls)
                    p50[label].append(1000 * percentile(samples, 50))
                    mid = f"{cpu[label][-1]:.3f} ms CPU/call, " if used is not None else ""
                    print(f"  {label:6s} {mid}upstream {up_cpu[label][-1]:.3f} ms/call, "
                          f"p50 {p50[label][-1]:.3f} ms", file=sys.stderr)
            for label in runs:
                mid = (f"CPU/call median {statistics.median(cpu[label]):.3f} ms "
                       f"(rounds: {', '.join(f'{v:.3f}' for v in cpu[label])}), "
                       if cpu[label] else "")
                ratio = ("" if label == "direct" else ", p50/direct median {:.2f}x".format(
                    statistics.median(a / b for a, b in zip(p50[label], p50["direct"],
                                                              strict=True))))
                print(f"{label}: {mid}upstream CPU/call median "
                      f"{statistics.median(up_cpu[label]):.3f} ms, "
                      f"p50 median {statistics.median(p50[label]):.3f} ms{ratio}")
            print(f"load at end: {load()} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--auth", default="none", choices=("none", "token", "jwt"))
    parser.add_argument("--base", help="another install's python (e.g. main's .venv)")
    parser.add_argument("--profile", help="write a cProfile of this tree's last round")
    parser.add_argument("--protocol", default="auto", choices=("auto", "legacy"),
                        help="client and gateway-to-upstream protocol mode (as run.py's)")
    parser.add_argument("--stdio", action="store_true",
                        help="the gateways spawn their own upstream.py over stdio "
                             "(bench_http's gateway/stdio row) instead of the HTTP one")
    options = parser.parse_args()
    if options.profile:
        options.profile = os.path.abspath(options.profile)
    anyio.run(main, options)
