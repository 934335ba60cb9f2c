"""The keepalive pings of a running call's SSE stream, for both HTTP express lanes.

The 2026-07-28 lane (``lane.py``) pings a call's answer every ``SSE_DEFER`` seconds
(``: ping``, making the answer a stream first); the session lane (``session_reply.py``)
pings a handshake-era call's stream as sse-starlette does (``: ping - <time>`` every
15 s).  One timer on the event loop per call, no task until a ping is due: each ping
is written in a task of its own (the call's task is busy with the call), cancelled
with the timer when the call ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Pinger:
    """Every ``every`` seconds until ``stop``: ``ping()`` awaited in a task of its own."""

    __slots__ = ("every", "handle", "loop", "ping", "tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop, every: float,
                 ping: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.loop, self.every, self.ping = loop, every, ping
        self.tasks: set[asyncio.Task[None]] = set()
        self.handle: asyncio.TimerHandle | None = loop.call_later(every, self._tick)

    def _tick(self) -> None:
        task = self.loop.create_task(self.ping())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self.handle = self.loop.call_later(self.every, self._tick)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        for task in self.tasks:
            task.cancel()


__all__ = ["Pinger"]
