"""What the hub holds for a handshake-era host between its requests, bounded per host.

``front/hub.FrontHub`` pushes idle logs (an upstream's logs outside any call),
``list_changed`` notices and resource updates to each handshake-era host; over HTTP
they go on the host's GET stream.  uvicorn's ``send`` waits once 64 KiB are unread, and
the hub sent to each host in turn: one host that opened a GET stream and never read it
held up every host's notifications, and the hub kept up to 1,000 idle logs of any size
meanwhile (a real ``serve``: 97 -> 119 MB for 400 logs of 64 KiB).

An ``Outbox`` per host connection queues its notifications and writes them from a task
of its own (started by one, ended once none is left, as ``http/sse_backlog.Backlog``
does for a call's stream), so the hub never waits on a host.  Idle logs not yet written
are held up to ``MAX_HELD_BYTES`` (each counted at least ``ITEM_BYTES``): past that a
log is dropped, the first with one WARNING naming the host's credential -- said once per
session, 500 short sessions of one host that never reads made 500 of them; now at most
one per credential per ``UNREAD_SAID_EVERY`` (``Outboxes``, one per hub, shares a
``policies.ratelimit.SaidEvery``), counting the sessions not said since.  A list change
or a resource update is never dropped but held once (one per kind, one per URI, until
written): a host that reads again re-lists and re-reads what changed, however much it
missed; the logs it missed are gone, as logs between calls are best effort.  The
stream stays open: closing it would make the host reconnect and miss the same logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from fast_mcp_gateway.policies.ratelimit import SaidEvery
from fast_mcp_gateway.upstream.held_logs import ITEM_BYTES, MAX_HELD_BYTES

logger = logging.getLogger(__name__)
UNREAD_SAID_EVERY = 60.0
"""Seconds: at most one "not reading" warning per host credential within this."""

Send = Callable[[], Coroutine[Any, Any, Any]]


class Outbox:
    """One host's notifications in order, written by a task that alone waits on it."""

    __slots__ = ("dropped", "gone", "held", "keys", "pending", "say", "who", "writer")

    def __init__(self, who: str, say: Callable[[str], int | None] | None = None) -> None:
        self.who = who  # the host's credential's name
        self.say = say  # ``SaidEvery.say`` at the hub's clock; None: always said
        self.pending: deque[tuple[Hashable, int, Send]] = deque()
        self.keys: set[Hashable] = set()  # the list changes and updates pending
        self.held = 0  # bytes counted for the notifications in ``pending``
        self.dropped = 0  # logs dropped past MAX_HELD_BYTES
        self.gone = False  # a send failed: the host left
        self.writer: asyncio.Task[None] | None = None

    def put(self, send: Send, *, size: int = 0, key: Hashable = None) -> bool:
        """Queue ``send`` (a log of ``size`` bytes; ``key``: a list change or an update,
        kept and held once).  False: not queued (dropped, or one with ``key`` pending)."""
        if self.gone or (key is not None and key in self.keys):
            return False
        size = max(size, ITEM_BYTES)
        if key is None and self.held and self.held + size > MAX_HELD_BYTES:
            unsaid = None if self.dropped else 0 if self.say is None else self.say(self.who)
            if unsaid is not None:
                logger.warning(
                    "a host (credential %r) is not reading its GET stream: %d bytes of "
                    "notifications held, its further logs between calls are dropped "
                    "(list changes and resource updates are kept; other hosts go on)%s",
                    self.who, self.held, f" ({unsaid} more of its sessions since the last "
                    "such line)" if unsaid else "")
            self.dropped += 1
            return False
        if key is not None:
            self.keys.add(key)
        self.pending.append((key, size, send))
        self.held += size
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())
        return True

    async def _write(self) -> None:
        try:
            while self.pending:
                key, size, send = self.pending[0]
                self.keys.discard(key)  # a change from now on is queued again
                await send()
                self.pending.popleft()
                self.held -= size
        except Exception:  # the host is gone: nothing more reaches it
            logger.debug("a notification for %r could not be sent", self.who, exc_info=True)
            self.gone = True
            self.pending.clear()
            self.keys.clear()
            self.held = 0
        finally:
            self.writer = None


class Outboxes:
    """Each host connection's ``Outbox`` (held weakly: gone with the connection), their
    "not reading" warnings said at most once per credential per ``UNREAD_SAID_EVERY``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._boxes: weakref.WeakKeyDictionary[Any, Outbox] = weakref.WeakKeyDictionary()
        self._said = SaidEvery(UNREAD_SAID_EVERY)
        self._clock = clock

    def of(self, connection: Any, who: str = "?") -> Outbox:
        """``connection``'s outbox, made for ``who`` (its credential's name) if none yet."""
        box = self._boxes.get(connection)
        if box is None:
            box = self._boxes[connection] = Outbox(who, self._say)
        return box

    def _say(self, who: str) -> int | None:
        return self._said.say(who, self._clock())


def caller_name(provider: Any) -> str:
    """The name of the current request's caller's credential (for ``Outbox.who``)."""
    principal = provider.pipeline.standing()()
    return str(principal.name) if principal is not None else "?"
