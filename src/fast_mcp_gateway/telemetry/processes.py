"""The resident memory of upstream server processes, read from Linux's ``/proc`` when
``/metrics`` is scraped (``mcp_gateway_upstream_resident_memory_bytes``).

A stdio server is often a launcher (``uvx``, ``npx``, a shell script) whose child does
the work, so a server's memory is its process's and every descendant's, found through
``/proc/<pid>/task/<tid>/children`` (a few small reads per process: no walk of every
process on the host).  A page two of them share counts in each, as when summing their
``process_resident_memory_bytes``.  A process gone meanwhile counts nothing; without
``/proc`` (macOS, Windows) the memory is unknown (``None``) and the metric is left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# A server forking without bound must not make a scrape slow: past this many processes
# under one replica's (or per_client session's) process, the rest are not counted.  Per
# tree, not per server: a per_client server has a tree per host session.  The walk runs
# on the event loop at each scrape (~0.4 ms for a process of 11 threads, one read of
# ``children`` per thread, measured under load).
MAX_TREE = 256


def descendants(pid: int, limit: int = MAX_TREE) -> list[int]:
    """``pid`` and its descendants (up to ``limit`` processes), as ``/proc`` lists them."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < limit:
        current = todo.pop()
        if current in found:
            continue
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:  # gone, or not ours to read
            continue
        for task in tasks:  # a child is listed under the thread that forked it
            try:
                with open(f"/proc/{current}/task/{task}/children", "rb") as file:
                    todo.extend(int(child) for child in file.read().split())
            except OSError:
                continue
    return found


def resident_bytes(pids: Iterable[int]) -> int | None:
    """The resident memory of ``pids`` and their descendants, in bytes; ``None`` where
    ``/proc`` is not there to read."""
    if not os.path.exists("/proc/self/statm"):
        return None
    total = 0
    for pid in pids:
        for process in descendants(pid):
            try:
                with open(f"/proc/{process}/statm", "rb") as file:
                    total += int(file.read().split()[1]) * _PAGE
            except (OSError, IndexError, ValueError):
                continue  # exited since it was listed
    return total
