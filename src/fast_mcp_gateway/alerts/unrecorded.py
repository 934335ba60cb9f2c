"""What a gateway that does not hold the alerts lease saw happen, for its catch-up.

A gateway not holding the lease evaluates the rules on calls too but announces nothing
(``engine.py``).  When the holder dies its lease runs on for up to
``LEASE_EVALUATIONS`` intervals, and what happened then was announced by nobody; the
gateway taking the lease over announced only the difference between the history's last
event and what fires now: an alert that fired, resolved and fired again meanwhile was
told as nothing at all (the history said firing already), or one firing.
``SeenTransitions`` keeps the transitions of each alert this gateway saw while it did
not hold the lease (the newest ``SEEN_PER_ALERT``); ``unrecorded`` says which of them the
history lacks.

No clock is compared: the gateways' clocks differ (a transition seen here 15 s behind
the holder's clock looked older than the holder's last event, and was never told; one
seen ahead looked newer than events the holder had recorded after it, and was told
again).  Each transition seen is noted with the id of its alert's newest event in the
store just after (``note``): the history as it stood.  The holder's events after that id
are its record of the transitions this gateway saw since (an alert's transitions
alternate, so they pair in order); those beyond are missing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fast_mcp_gateway.alerts.states import Key, Transition
from fast_mcp_gateway.store import StorageError, Store

SEEN_PER_ALERT = 32
"""Transitions kept per (rule, server) while another gateway holds the lease: a flapping
alert keeps its newest."""


@dataclass(frozen=True)
class Seen:
    """A transition seen here, with the history as it stood: ``known`` is the id of its
    alert's newest event then (0: none; None: the store could not be read, so it is told
    -- twice rather than never), ``ordinal`` how many of this alert's transitions this
    gateway saw since that event was written (0: this one is that event, seen here
    later, the two gateways evaluating apart)."""

    transition: Transition
    known: int | None
    ordinal: int


class SeenTransitions:
    """Transitions seen while another gateway held the alerts lease, per alert."""

    def __init__(self) -> None:
        self._seen: dict[Key, deque[Seen]] = {}
        self._runs: dict[Key, tuple[int, int]] = {}  # the newest noted: (known, ordinal)
        self._pending: list[Transition] = []

    def saw(self, transition: Transition) -> None:
        """Seen in the evaluation under way; ``note`` keeps it."""
        self._pending.append(transition)

    async def note(self, store: Store | None) -> None:
        """Keep the transitions just seen, each with its alert's newest event in
        ``store`` (one read per transition; they are few)."""
        pending, self._pending = self._pending, []
        for transition in pending:
            key = (transition.rule, transition.server)
            run = self._runs.get(key)
            try:
                if store is None:
                    raise StorageError("no store")
                newest = await store.alert_events(rule=key[0], server=key[1], limit=1)
            except StorageError:  # told at the catch-up; the run goes on
                seen = Seen(transition, None, 0)
                if run is not None:
                    self._runs[key] = (run[0], run[1] + 1)
            else:
                known = (newest[0].id or 0) if newest else 0
                if run is not None and run[0] == known:
                    ordinal = run[1] + 1
                else:
                    ordinal = 0 if newest and newest[0].state == transition.state else 1
                self._runs[key] = (known, ordinal)
                seen = Seen(transition, known, ordinal)
            self._seen.setdefault(key, deque(maxlen=SEEN_PER_ALERT)).append(seen)

    def keys(self) -> set[Key]:
        return set(self._seen)

    async def unrecorded(self, store: Store, key: Key) -> list[Transition]:
        """The transitions of ``key`` seen here that the history lacks, oldest first
        (``StorageError`` when it cannot be read)."""
        seen = list(self._seen.get(key, ()))
        deepest = max((s.ordinal for s in seen), default=0)
        events = await store.alert_events(rule=key[0], server=key[1],
                                          limit=max(deepest, 1)) if deepest else []
        return missed(seen, [e.id or 0 for e in events])

    def clear(self) -> None:
        self._seen.clear()
        self._runs.clear()
        self._pending.clear()


def missed(seen: list[Seen], ids: list[int]) -> list[Transition]:
    """Those of ``seen`` the history lacks, ``ids`` being those of its newest events of
    their alert (at least the newest ``max(ordinal)``): a transition seen ``ordinal``
    transitions after event ``known`` is recorded when the history has that many events
    after it."""
    return [s.transition for s in seen
            if s.known is None or s.ordinal > sum(1 for i in ids if i > s.known)]
