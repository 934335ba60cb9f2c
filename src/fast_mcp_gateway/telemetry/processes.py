"""The resident memory of upstream server processes, read from Linux's ``/proc`` when
``/metrics`` is scraped (``mcp_gateway_upstream_resident_memory_bytes``).

A stdio server is often a launcher (``uvx``, ``npx``, a shell script) whose child does
the work, so a server's memory is its process's and every descendant's, found through
``/proc/<pid>/task/<tid>/children`` (a few small reads per process: no walk of every
process on the host).  A page two of them share counts in each, as when summing their
``process_resident_memory_bytes``.  A process gone meanwhile counts nothing; without
``/proc`` (macOS, Windows) the memory is unknown (``None``) and the metric is left out.

The walk runs on the event loop (~0.4 ms per process), so a scrape reuses a server's
last walk for ``MAX_AGE`` seconds while its processes are the same (``ResidentMemory``):
Prometheus scrapes every 15-60 s, and back-to-back scrapes -- several scrapers, or
anyone who can reach a ``metrics_public`` port -- cost one walk per server per
``MAX_AGE``.  A replica restarted or a per-client session opened or ended (another set
of processes) is walked at once: the count and the memory beside it never disagree.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# A server forking without bound must not make a scrape slow: past this many processes
# under one replica's (or per_client session's) process, the rest are not counted.  Per
# tree, not per server: a per_client server has a tree per host session.  The walk runs
# on the event loop at each scrape (~0.4 ms for a process of 11 threads, one read of
# ``children`` per thread, measured under load).
MAX_TREE = 256
MAX_AGE = 5.0  # seconds a server's walk is reused while its processes are the same


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


class ResidentMemory:
    """``resident_bytes`` per server, each walk reused for ``max_age`` seconds while the
    server's processes are the same (see the module docstring).  ``walk`` and ``clock``
    are injected for tests; ``walks`` counts the walks made."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_age: float = MAX_AGE,
                 walk: Callable[[Iterable[int]], int | None] = resident_bytes) -> None:
        self.clock, self.max_age, self.walk = clock, max_age, walk
        self.walks = 0
        self._known: dict[str, tuple[float, frozenset[int], int | None]] = {}

    def __call__(self, server: str, pids: Iterable[int]) -> int | None:
        now, procs = self.clock(), frozenset(pids)
        known = self._known.get(server)
        if known is not None and known[1] == procs and now - known[0] < self.max_age:
            return known[2]
        value = self.walk(procs)
        self.walks += 1
        # Only fresh entries are kept: a server removed by a reload is forgotten.
        self._known = {name: entry for name, entry in self._known.items()
                       if now - entry[0] < self.max_age}
        self._known[server] = (now, procs, value)
        return value
