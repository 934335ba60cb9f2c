"""What a lane call's SSE stream holds for a host that does not read it, bounded.

Both HTTP lanes (``lane._Reply``, ``session_reply.SessionReply``) relay an upstream's
logs and progress to the call's host as they come, from the upstream session's reader
(``upstream/relay.HostRelay``, ``upstream/stdio_tap``).  uvicorn's ``send`` waits for
the host to read once the connection's write buffer passes its high-water mark (64 KiB):
a host that POSTed a call and read nothing stopped that reader, so every other host's
calls on the upstream waited (30 s on a real gateway, the upstream marked UNHEALTHY by
its health probe).

``Backlog`` writes a stream's events from a task of its own, started when an event
comes and ending once none is left, so whoever queues one never waits on the host.  The
events not yet written are held up to ``MAX_HELD_BYTES`` (besides the one being
written; each counted with ``EVENT_BYTES`` for its ASGI message: counted by its body
alone, a flood of tiny progress held 8,330 events, 2.9 MB): a notification past that
is dropped, the first one with a warning, and the
stream's own events (its head, a question to the host) are always kept.  The answer
(``flushed`` first) is written by the call's task, which alone waits on its host.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

logger = logging.getLogger(__name__)

MAX_HELD_BYTES = 1 << 20
"""The bytes of events one stream holds for its host before notifications are dropped."""
EVENT_BYTES = 256
"""What a queued event costs besides its body (its ASGI message: a dict, a bytes object;
tracemalloc measured 224)."""


class Backlog:
    """One response's events in order, written by a task that alone waits on the host."""

    __slots__ = ("dropped", "era", "held", "pending", "send", "who", "writer")

    def __init__(self, send: Any, era: str, who: str) -> None:
        self.send = send
        self.era, self.who = era, who  # the host's protocol era and credential's name
        self.pending: deque[dict[str, Any]] = deque()
        self.held = 0  # bytes of the bodies in ``pending`` (the one being written too)
        self.dropped = 0  # notifications dropped past MAX_HELD_BYTES
        self.writer: asyncio.Task[None] | None = None

    def put(self, message: dict[str, Any], *, droppable: bool = True) -> bool:
        """Queue an ASGI message for the host (False: dropped, the host not keeping up)."""
        size = _size(message)
        if droppable and self.held and self.held + size > MAX_HELD_BYTES:
            if not self.dropped:
                logger.warning(
                    "a %s host (credential %r) is not reading the SSE stream of its call: "
                    "%d bytes of events held, its further logs and progress on that stream "
                    "are dropped (the call and other hosts go on)", self.era, self.who,
                    self.held)
            self.dropped += 1
            return False
        self.pending.append(message)
        self.held += size
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())
        return True

    async def _write(self) -> None:
        try:
            while self.pending:
                message = self.pending[0]
                await self.send(message)
                self.pending.popleft()
                self.held -= _size(message)
        except Exception:  # the host is gone: nothing more reaches it
            logger.debug("an SSE event for %r could not be written", self.who, exc_info=True)
            self.pending.clear()
            self.held = 0
        finally:
            self.writer = None

    def drop(self) -> None:
        """Let go of every event not written, the one being written with its writer
        (cancelled): the stream ends unread (its session was ended, DELETE), and held
        up to ``MAX_HELD_BYTES`` until the host's socket closed."""
        self.pending.clear()
        self.held = 0
        if self.writer is not None:
            self.writer.cancel()

    async def flushed(self) -> None:
        """Wait until every queued event is written (the call's task, before its answer)."""
        while self.writer is not None:
            await asyncio.wait({self.writer})


def _size(message: dict[str, Any]) -> int:
    return len(message.get("body", b"")) + EVENT_BYTES
