"""What a gateway that does not hold the alerts lease saw happen, for its catch-up.

A gateway not holding the lease evaluates the rules on calls too but announces nothing
(``engine.py``).  When the holder dies its lease runs on for up to
``LEASE_EVALUATIONS`` intervals, and what happened then was announced by nobody; the
gateway taking the lease over announced only the difference between the history's last
event and what fires now: an alert that fired, resolved and fired again meanwhile was
told as nothing at all (the history said firing already), or one firing.
``SeenTransitions`` keeps the transitions of each alert this gateway saw while it did
not hold the lease (the newest ``SEEN_PER_ALERT``); ``missed`` says which of them the
history lacks.  Pure: times are the transitions' own.
"""

from __future__ import annotations

from collections import deque

from fast_mcp_gateway.alerts.states import Key, Transition
from fast_mcp_gateway.store import AlertEvent

SEEN_PER_ALERT = 32
"""Transitions kept per (rule, server) while another gateway holds the lease: a flapping
alert keeps its newest."""


class SeenTransitions:
    """Transitions seen while another gateway held the alerts lease, per alert."""

    def __init__(self) -> None:
        self._seen: dict[Key, deque[Transition]] = {}

    def saw(self, transition: Transition) -> None:
        key = (transition.rule, transition.server)
        self._seen.setdefault(key, deque(maxlen=SEEN_PER_ALERT)).append(transition)

    def keys(self) -> set[Key]:
        return set(self._seen)

    def missed(self, key: Key, last: AlertEvent | None) -> list[Transition]:
        """The transitions of ``key`` seen here that the history, whose newest event of
        it is ``last`` (None: none), lacks: those after it.  The holder and this gateway
        evaluate apart, so one transition is seen at two times: the first seen after
        ``last`` in ``last``'s own state is ``last`` itself, seen here later (an alert's
        transitions alternate: another in between would be after ``last`` too)."""
        seen = [t for t in self._seen.get(key, ()) if last is None or t.at > last.at]
        if seen and last is not None and seen[0].state == last.state:
            del seen[0]
        return seen

    def clear(self) -> None:
        self._seen.clear()
