"""What the death signal costs a stdio server's start (spawn.py).

    python benchmarks/spawn.py [--spawns 200] [--loop asyncio|uvloop|both] [--bare]

Starts ``/bin/true`` (stdin/stdout piped, its own session, as a stdio server starts)
``--spawns`` times with the death signal and as many times without, interleaved (with,
without, with, ...), and reports the median and p90 of the time ``open_server_process``
takes to return -- the event loop is blocked for most of it -- and of the time until the
process has exited (exec included).  The gateway's modules are imported first, so the
process forks at a gateway's size (a spawn with a ``preexec_fn`` cannot use vfork,
whose cost does not grow with the parent); ``--bare`` skips that import.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import anyio

from fast_mcp_gateway import spawn


async def _one(with_signal: bool) -> tuple[float, float]:
    started = time.perf_counter()
    if with_signal:  # the gateway's start now
        process = await spawn.open_server_process("/bin/true", [], env=None,
                                                  stderr=subprocess.DEVNULL)
    else:  # the SDK's start, as before
        process = await anyio.open_process(["/bin/true"], stderr=subprocess.DEVNULL,
                                           start_new_session=True)
    spawned = time.perf_counter()
    await process.wait()
    ended = time.perf_counter()
    await process.aclose()
    return (spawned - started) * 1000, (ended - started) * 1000


async def _measure(spawns: int) -> dict[str, tuple[list[float], list[float]]]:
    assert spawn.death_signal_setup() is not None, "no prctl here: nothing to measure"
    out: dict[str, tuple[list[float], list[float]]] = {"with": ([], []), "without": ([], [])}
    for _ in range(5):  # warm-up
        await _one(True)
        await _one(False)
    for _ in range(spawns):
        for name in ("with", "without"):
            spawn_ms, exit_ms = await _one(name == "with")
            out[name][0].append(spawn_ms)
            out[name][1].append(exit_ms)
    return out


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=200)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument("--bare", action="store_true")
    args = parser.parse_args()
    if not args.bare:
        import fast_mcp_gateway.gateway  # noqa: F401 - a gateway-sized parent
    statm = Path(f"/proc/{os.getpid()}/statm").read_text().split()
    rss = int(statm[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
    print(f"parent RSS {rss} MiB; {args.spawns} spawns each, interleaved")
    for loop in (["asyncio", "uvloop"] if args.loop == "both" else [args.loop]):
        result = anyio.run(_measure, args.spawns,
                           backend_options={"use_uvloop": loop == "uvloop"})
        for name, (spawn_ms, exit_ms) in result.items():
            print(f"{loop:8} {name:8} spawn median {statistics.median(spawn_ms):.3f} ms"
                  f"  p90 {_p(spawn_ms, 0.9):.3f} ms   to exit median "
                  f"{statistics.median(exit_ms):.3f} ms  p90 {_p(exit_ms, 0.9):.3f} ms")


if __name__ == "__main__":
    main()
