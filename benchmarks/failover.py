"""Failover benchmark: 2 replicas, one killed every few seconds, under 16 callers.

    python benchmarks/failover.py [--seconds 30] [--every 3] [--callers 16]

The gateway runs as ``mcp-gateway serve`` (stdio) in front of ``replicas: 2`` copies of
``benchmarks/upstream.py``, whose ``sleep_ms`` is declared idempotent in the config.
Every ``--every`` seconds one replica (alternating) gets SIGKILL.  Reported:

* success rate of the idempotent calls (target >= 99 %),
* call latency p50/p99 overall and within 1 s after each kill ("during failover"),
* time from each kill until that replica serves again as a new process (target <= 5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
TARGET_SUCCESS = 0.99
TARGET_RESTART_S = 5.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def replicas(client: Client[Any]) -> list[dict[str, Any]]:
    health = await client.call_tool("gateway_health", {"detail": True})  # pid: null too
    return list(health.structured_content["servers"][0]["replicas"])  # type: ignore[index]


async def run(seconds: float, every: float, callers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "servers.yaml"
        config.write_text(
            "servers:\n  up:\n    command: ${GATEWAY_PYTHON}\n"
            f"    args: [{json.dumps(str(HERE / 'upstream.py'))}]\n"
            "    replicas: 2\n    balance: least_inflight\n"
            "    idempotent_tools: [sleep_ms, echo]\n"
            "    retry: {attempts: 3, backoff: {initial: 0.01, max: 0.1}}\n"
            "    timeouts: {call: 5}\n"
        )
        transport = StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve",
                                                    "--config", str(config),
                                                    "--db", str(Path(tmp) / "store.db"),
                                                    "--log-level", "WARNING"],
                                   keep_alive=False, log_file=Path(tmp) / "gateway.log")
        calls: list[tuple[float, float, bool]] = []  # (start, latency s, ok)
        errors: dict[str, int] = {}
        kills: list[float] = []
        restarts: list[float] = []
        async with Client(transport, timeout=30) as client:
            for _ in range(20):
                await client.call_tool_mcp("up_sleep_ms", {"ms": 1})
            started = time.monotonic()
            deadline = started + seconds

            async def caller() -> None:
                while time.monotonic() < deadline:
                    t0 = time.monotonic()
                    try:
                        result = await client.call_tool_mcp("up_sleep_ms", {"ms": 5})
                        ok = not result.is_error
                        if not ok:
                            text = str(getattr(result.content[0], "text", result.content[0]))
                            errors[text[:160]] = errors.get(text[:160], 0) + 1
                    except Exception as exc:  # noqa: BLE001 - a failed call is what we count
                        ok = False
                        errors[repr(exc)[:160]] = errors.get(repr(exc)[:160], 0) + 1
                    calls.append((t0, time.monotonic() - t0, ok))

            async def killer() -> None:
                victim = 0
                while time.monotonic() + every < deadline:
                    await anyio.sleep(every)
                    state = await replicas(client)
                    pid = state[victim]["pid"]
                    if pid is None or state[victim]["state"] != "ready":
                        continue
                    os.kill(pid, signal.SIGKILL)
                    killed_at = time.monotonic()
                    kills.append(killed_at)
                    while time.monotonic() - killed_at < 30:
                        now = (await replicas(client))[victim]
                        if now["state"] == "ready" and now["pid"] not in (None, pid):
                            restarts.append(time.monotonic() - killed_at)
                            break
                        await anyio.sleep(0.05)
                    victim = 1 - victim

            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                for _ in range(callers):
                    tg.start_soon(caller)
    ok = [c for c in calls if c[2]]
    during = [lat for t0, lat, _ in calls if any(0 <= t0 - k <= 1.0 for k in kills)]
    return {
        "calls": len(calls), "ok": len(ok), "success_rate": len(ok) / max(1, len(calls)),
        "p50_ms": 1000 * percentile([c[1] for c in calls], 0.50),
        "p99_ms": 1000 * percentile([c[1] for c in calls], 0.99),
        "failover_p99_ms": 1000 * percentile(during, 0.99),
        "kills": len(kills), "restarts_s": restarts,
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    r = anyio.run(run, args.seconds, args.every, args.callers)
    restarts = r["restarts_s"]
    ok_success = r["success_rate"] >= TARGET_SUCCESS
    ok_restart = bool(restarts) and max(restarts) <= TARGET_RESTART_S
    verdict = {True: "PASS", False: "FAIL"}
    print(f"failover: 2 replicas, {args.callers} callers, SIGKILL every {args.every:g}s, "
          f"{args.seconds:g}s, load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  idempotent calls      {r['ok']}/{r['calls']} ok = {100 * r['success_rate']:.2f} %"
          f"   (target >= {100 * TARGET_SUCCESS:g} %)  {verdict[ok_success]}")
    print(f"  latency p50 / p99     {r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms")
    print(f"  p99 within 1 s of a kill  {r['failover_p99_ms']:.1f} ms")
    if restarts:
        print(f"  restart after SIGKILL median {statistics.median(restarts):.2f} s, max "
              f"{max(restarts):.2f} s over {len(restarts)}/{r['kills']} kills"
              f"   (target <= {TARGET_RESTART_S:g} s)  {verdict[ok_restart]}")
    else:
        print(f"  no restart observed after {r['kills']} kills  FAIL")
    for text, count in r["errors"].items():
        print(f"  {count:6d} x {text}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
