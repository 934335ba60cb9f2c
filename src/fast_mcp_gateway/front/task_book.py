"""The tasks a gateway process relays (``front/tasks.py``): ``TaskRecord`` and ``TaskBook``.

A record is made where a task is created (``TaskCall``) or, with shared keys, where an
instance that did not create it first serves a ``tasks/*`` for it (``task_ids.adopt``).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.store import Invocation
from fast_mcp_gateway.upstream.replica import Upstream

TASK_PREFIX = "gwt-"
MAX_TASKS = 10_000
"""Tasks remembered at once; beyond, the oldest of the caller holding the most is
forgotten first."""
DEFAULT_KEEP = 3600.0
"""Seconds a task is remembered when its upstream gave no ``ttlMs``."""
MAX_KEEP = 86_400.0


@dataclass(slots=True)
class TaskRecord:
    """One relayed task: where it lives upstream and who may see it."""

    task_id: str                  # the gateway's, as the host knows it
    upstream_id: str
    server: str
    exposed: str                  # the tool's exposed name
    replica: Upstream             # the replica (or per-client session) that owns it
    connects: int                 # the replica's connect count when it was created
    owner: tuple[str, str]        # the caller: principal kind and name
    expires: float
    created: str                  # the upstream's createdAt
    lost: str | None = None       # why the task failed on the gateway's side
    started: Invocation | None = None  # its call's record fields (``ended`` is made of it)
    t0: float = 0.0               # its call's start (perf_counter)
    ended: Invocation | None = None  # its end, as recorded (once)
    # Its call's arguments, while the task is known: an error may echo their secrets
    # (its record's and each answer to its host are masked with them).
    arguments: Any = None
    # Its call had credential-like arguments this process never held (another gateway
    # instance created the task): an error text is not recorded, as it cannot be masked.
    unmaskable: bool = False


def owner_of(principal: Principal) -> tuple[str, str]:
    """The identity a task is bound to: the principal's kind and name."""
    return principal.kind, principal.name


class TaskBook:
    """The tasks relayed by this gateway process, bounded (``limit``) and expiring."""

    def __init__(self, limit: int = MAX_TASKS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self._clock = limit, clock
        self._tasks: OrderedDict[str, TaskRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    @staticmethod
    def keep(ttl_ms: Any) -> float:
        """Seconds a task the upstream keeps ``ttl_ms`` is remembered (a minute's grace)."""
        if isinstance(ttl_ms, int | float) and not isinstance(ttl_ms, bool) and ttl_ms >= 0:
            return float(min(ttl_ms / 1000 + 60, MAX_KEEP))
        return DEFAULT_KEEP

    def expiry(self, ttl_ms: Any) -> float:
        """When a task the upstream keeps ``ttl_ms`` is forgotten (``keep``)."""
        return self._clock() + self.keep(ttl_ms)

    def expiry_in(self, seconds: float) -> float:
        """When a task to be kept ``seconds`` more is forgotten (an adopted one)."""
        return self._clock() + seconds

    def add(self, record: TaskRecord) -> None:
        """Remember ``record``; past ``limit`` the caller holding the most tasks forgets
        its oldest: forgetting the oldest of all let one caller that made ``limit``
        tasks end every other caller's (their ``tasks/result`` then "Unknown task")."""
        tasks = self._tasks
        tasks[record.task_id] = record
        now = self._clock()
        while tasks and next(iter(tasks.values())).expires <= now:
            tasks.popitem(last=False)
        if len(tasks) > self.limit:
            held = Counter(r.owner for r in tasks.values())
            while len(tasks) > self.limit:
                most = max(held.values())
                oldest = next(t for t, r in tasks.items() if held[r.owner] == most)
                held[tasks.pop(oldest).owner] -= 1

    def get(self, task_id: str) -> TaskRecord | None:
        record = self._tasks.get(task_id)
        if record is not None and record.expires <= self._clock():
            del self._tasks[task_id]
            return None
        return record
