"""``python -m fast_mcp_gateway`` under ``cProfile``, switched on and off by signals.

    python benchmarks/profiled_gateway.py OUT.prof serve --config ...

SIGUSR1 starts profiling the main thread (the event loop), SIGUSR2 stops it and writes
``OUT.prof`` (``pstats``).  ``lane_cpu.py --profile`` uses it for one measured round;
the profiler's own overhead inflates every figure, so read call counts and relative
times from it, and CPU per call from a run without it.

Times are the main thread's CPU time (``time.thread_time``), not wall time: on two
shared cores a ``send()`` to the host or the upstream wakes that process, which often
takes the gateway's core at once, and a wall-clock profile charged that wait to the
write (uvicorn's and the tap's socket writes read 0.6 and 1.1 ms per call at load 6,
against 0.02 and 0.04 ms of CPU).  ``PROFILE_CLOCK=wall`` profiles wall time instead.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
import time
from typing import Any

out = sys.argv.pop(1)
profile = (cProfile.Profile() if os.environ.get("PROFILE_CLOCK") == "wall"
           else cProfile.Profile(time.thread_time))


def start(*_: Any) -> None:
    profile.enable()


def stop(*_: Any) -> None:
    profile.disable()
    profile.dump_stats(out)


signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.argv[0] = "mcp-gateway"
runpy.run_module("fast_mcp_gateway", run_name="__main__", alter_sys=True)
