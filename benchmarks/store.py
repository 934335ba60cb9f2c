"""Store benchmark: statistics over many invocation rows, and the cost of call logging.

    python benchmarks/store.py [--rows 1000000] [--calls 3000] [--store URL | --postgres]

1. Fills a fresh store (a SQLite file in a temporary folder, ``--store URL`` as
   ``open_store`` takes it, e.g. memory:// or postgresql://..., or ``--postgres``: a
   throwaway PostgreSQL started with tests/pg.py) with ``--rows`` invocation records (100
   tools on 10 servers over 24 h) through the gateway's batch writer (the ``Recorder``,
   batches of 500 as the gateway writes them), reports the insert rate, and times the
   statistics queries
   the admin tool and ``mcp-gateway stats`` run: overall, per server, per tool, for one
   server, and a page of the newest calls with a filter.  Target: each <= 200 ms.
2. Calls a tool through an in-process gateway ``--calls`` times with call logging off
   and on (interleaved rounds, same upstream) and reports p50 and throughput.
   Target: logging costs <= 5 %.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client, FastMCP
from fastmcp.client.transports import ClientTransport, FastMCPTransport

from fast_mcp_gateway import Gateway, GatewaySettings, parse_config
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.store import Invocation, Store, open_store
from fast_mcp_gateway.telemetry.recorder import Recorder

TARGET_QUERY_MS = 200.0
TARGET_LOGGING_COST = 0.05


async def fill(store: Store, rows: int, log: Any) -> float:
    """Write ``rows`` records through the gateway's batch writer; returns the seconds."""
    rng = random.Random(7)
    now = time.time()
    recorder = Recorder(store, capacity=20_000, retention_seconds=None, retention_rows=None,
                        flush_interval=0.05)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        await tg.start(recorder.run)
        for i in range(rows):
            server = f"server{i % 10}"
            recorder.record(Invocation(
                id=f"{i:09d}", trace_id=f"{i:032x}", client="stdio", kind="tool",
                exposed=f"{server}_tool{i % 100}", server=server, original=f"tool{i % 100}",
                started_at=now - 86400 + 86400 * i / rows,
                duration_ms=rng.lognormvariate(2.5, 0.7),
                status="error" if rng.random() < 0.03 else "success", replica=server,
            ))
            if (i + 1) % 10_000 == 0:  # stay within the queue, as a steady load would
                await recorder.flushed(within=600)
                if (i + 1) % 200_000 == 0:
                    log(f"  inserted {i + 1:,} rows")
        await recorder.flushed(within=600)
        tg.cancel_scope.cancel()
    if recorder.dropped or recorder.failed_writes:
        raise SystemExit(f"the writer lost records: {recorder.stats()}")
    return time.perf_counter() - started


async def timed(fn: Any) -> float:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        await fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


async def query_phase(rows: int, url: str | None, log: Any
                      ) -> tuple[float, list[tuple[str, float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(url or Path(tmp) / "bench.db")
        try:
            seconds = await fill(store, rows, log)
            log(f"  filled {rows:,} rows in {seconds:.1f}s ({rows / seconds:,.0f} rows/s)")
            since = time.time() - 3600 * 24
            return rows / seconds, [
                ("stats, all calls, 24 h", await timed(lambda: store.stats(since=since))),
                ("stats per server, 24 h", await timed(
                    lambda: store.stats(since=since, group_by="server"))),
                ("stats per tool, 24 h", await timed(
                    lambda: store.stats(since=since, group_by="tool"))),
                ("stats of one server, 1 h", await timed(
                    lambda: store.stats(since=time.time() - 3600, server="server3"))),
                ("newest 50 errors of one server", await timed(
                    lambda: store.invocations(server="server3", status="error", limit=50))),
                ("page 2 of one tool's calls", await timed(lambda: _two_pages(store))),
            ]
        finally:
            await store.close()


async def _two_pages(store: Store) -> None:
    _, cursor = await store.invocations(tool="server1_tool11", limit=50)
    await store.invocations(tool="server1_tool11", limit=50, cursor=cursor)


def upstream() -> FastMCP[Any]:
    mcp = FastMCP("up")

    @mcp.tool
    def echo(text: str) -> str:
        return text

    return mcp


async def logging_phase(calls: int, url: str | None, rounds: int = 5
                        ) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:

        def factory(config: ServerConfig, stderr: object) -> ClientTransport:
            return FastMCPTransport(upstream())

        config = parse_config({"servers": {"up": {"url": "http://127.0.0.1:9/in-memory"}}})
        gateways = {
            "off": Gateway(config, GatewaySettings(db=None), transport_factory=factory),
            "on": Gateway(config, GatewaySettings(db=url or str(Path(tmp) / "calls.db")),
                          transport_factory=factory),
        }
        async with Client(gateways["off"].server) as off, Client(gateways["on"].server) as on:
            clients = {"off": off, "on": on}
            for client in clients.values():
                for _ in range(100):
                    await client.call_tool_mcp("up_echo", {"text": "x"})
            for r in range(rounds):
                for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    t0 = time.perf_counter()
                    for _ in range(calls // rounds):
                        await clients[mode].call_tool_mcp("up_echo", {"text": "x"})
                    results[mode].append((time.perf_counter() - t0) / (calls // rounds) * 1e6)
            recorder = gateways["on"].recorder
            assert recorder is not None and await recorder.flushed(10)
            assert recorder.dropped == 0
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--store", default=None,
                        help="store URL (default: a new SQLite file)")
    parser.add_argument("--postgres", action="store_true",
                        help="run against a throwaway PostgreSQL (tests/pg.py; needs the "
                             "Debian postgresql package)")
    args = parser.parse_args()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    cluster = None
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.pg import PgCluster, postgres_binaries

        binaries = postgres_binaries()
        if binaries is None:
            raise SystemExit("--postgres: no PostgreSQL binaries (apt-get install postgresql)")
        cluster = PgCluster(binaries)
        cluster.start(durable=True)  # fsync on, as deployed
        args.store = cluster.create_database("bench")
    try:
        log(f"filling a store with {args.rows:,} invocation rows ...")
        rate, queries = anyio.run(query_phase, args.rows, args.store, log)
        log(f"calling through the gateway {args.calls} times with logging off and on ...")
        calls = anyio.run(logging_phase, args.calls, args.store)
    finally:
        if cluster is not None:
            cluster.destroy()
    where = "a throwaway PostgreSQL" if cluster else (args.store or "a SQLite file")

    verdict = {True: "PASS", False: "FAIL"}
    print(f"\n{where}: {args.rows:,} rows written through the batch writer at "
          f"{rate:,.0f} rows/s")
    print(f"store queries over {args.rows:,} invocation rows (median of 5)")
    for name, ms in queries:
        print(f"  {name:<34} {ms:8.1f} ms   {verdict[ms <= TARGET_QUERY_MS]}"
              f" (<= {TARGET_QUERY_MS:g} ms)")
    off, on = statistics.median(calls["off"]), statistics.median(calls["on"])
    cost = on / off - 1
    print(f"\ncall logging, in-process gateway, {args.calls} calls in interleaved rounds")
    print(f"  per call: off {off:.0f} us, on {on:.0f} us -> cost {100 * cost:+.1f} %   "
          f"{verdict[cost <= TARGET_LOGGING_COST]} (<= {100 * TARGET_LOGGING_COST:g} %)")
    print(f"  rounds off {' '.join(f'{v:.0f}' for v in calls['off'])} | "
          f"on {' '.join(f'{v:.0f}' for v in calls['on'])} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
