"""The gateway's one in-process event stream: what happened, for whoever watches live.

``EventBus.publish(kind, payload)`` never blocks and never fails: each subscriber has
its own bounded queue, and a subscriber that does not keep up loses its *oldest*
events (counted in ``Subscription.dropped``), never the publisher's time.  Publishers
are hooks that already exist on the hot paths -- the manager's transition listener
(replica state and health changes), a call-pipeline observer (each finished call), the
catalog-change listener -- wired in ``gateway.py``; the dashboard's live page
(``ui/live.py``) subscribes.  Other features publish their own kinds (e.g. alerts:
``publish("alert", {...})``) without touching this module.

A publisher on a hot path (the call observer: every call) asks ``listening`` first and
builds nothing while nobody subscribes, which is most of the time.

Publish and subscribe from the event loop's thread (every hook above runs there).
Payloads are plain JSON-able dicts that must already be safe to show: no secrets.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["Event", "EventBus", "Subscription"]

DEFAULT_QUEUE = 256


@dataclass(frozen=True, slots=True)
class Event:
    """One published event: a sequence number (per bus), unix time, kind and payload."""

    seq: int
    at: float
    kind: str
    payload: Mapping[str, Any]


@dataclass(eq=False)
class Subscription:
    """One subscriber's bounded queue (oldest dropped when full)."""

    capacity: int
    dropped: int = 0
    closed: bool = False
    woken: bool = False
    _queue: deque[Event] = field(default_factory=deque)
    _wake: anyio.Event | None = None

    def _put(self, event: Event) -> None:
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        if self._wake is not None:
            self._wake.set()

    def pending(self) -> int:
        return len(self._queue)

    def get_nowait(self) -> Event | None:
        return self._queue.popleft() if self._queue else None

    async def get(self) -> Event | None:
        """The next event, waiting for one; ``None`` once the subscription is closed,
        or once after ``wake`` (``closed`` tells them apart)."""
        while not self._queue:
            if self.closed or self.woken:
                self.woken = False
                return None
            self._wake = anyio.Event()
            await self._wake.wait()
            self._wake = None
        return self._queue.popleft()

    def wake(self) -> None:
        """Have a waiting ``get`` return ``None`` (once) without an event: its reader
        has something else to look at (``ui/live.py``: a session ended)."""
        self.woken = True
        if self._wake is not None:
            self._wake.set()

    def close(self) -> None:
        self.closed = True
        if self._wake is not None:
            self._wake.set()


class EventBus:
    """Fan-out of published events to every current subscriber."""

    def __init__(self, capacity: int = DEFAULT_QUEUE) -> None:
        self.capacity = capacity
        self._subscribers: set[Subscription] = set()
        self._seq = itertools.count(1)
        self.published = 0

    def publish(self, kind: str, payload: Mapping[str, Any]) -> Event | None:
        """Queue ``payload`` for every subscriber (O(subscribers), never blocks); the
        event, or ``None`` when nobody listens (then it costs a length check)."""
        self.published += 1
        if not self._subscribers:
            return None
        event = Event(next(self._seq), time.time(), kind, dict(payload))
        for subscriber in self._subscribers:
            subscriber._put(event)
        return event

    @contextmanager
    def subscribe(self, capacity: int | None = None) -> Iterator[Subscription]:
        """A subscription for the ``with`` block (events published from now on)."""
        subscription = Subscription(capacity or self.capacity)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            subscription.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def listening(self) -> bool:
        """Whether anyone subscribes now: a hook on a hot path checks this before it
        builds a payload (``publish`` would drop it unread)."""
        return bool(self._subscribers)

    def close(self) -> None:
        """End every subscription (their ``get`` returns ``None``): the gateway stops."""
        for subscriber in list(self._subscribers):
            subscriber.close()
