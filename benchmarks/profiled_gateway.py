"""``python -m fast_mcp_gateway`` under ``cProfile``, switched on and off by signals.

    python benchmarks/profiled_gateway.py OUT.prof serve --config ...

SIGUSR1 starts profiling the main thread (the event loop), SIGUSR2 stops it and writes
``OUT.prof`` (``pstats``).  ``lane_cpu.py --profile`` uses it for one measured round;
the profiler's own overhead inflates every figure, so read call counts and relative
times from it, and CPU per call from a run without it.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
from typing import Any

out = sys.argv.pop(1)
profile = cProfile.Profile()


def start(*_: Any) -> None:
    profile.enable()


def stop(*_: Any) -> None:
    profile.disable()
    profile.dump_stats(out)


signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.argv[0] = "mcp-gateway"
runpy.run_module("fast_mcp_gateway", run_name="__main__", alter_sys=True)
