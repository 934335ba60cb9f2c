"""Admin operations in flight, which a stop waits for (bounded) before the store closes.

An admin operation runs from its store write through its audit in ``context.
finishing`` (shielded: a caller's cancellation lands after it), and uvicorn does not
wait for a request it cancelled at a stop (``Task.cancel()`` past
``timeout_graceful_shutdown``): such an operation went on while the gateway stopped
its servers, detached the control plane and closed the store under it -- its audit
entry dropped without a word (``ControlPlane.audit`` with no store), or its write
sent to a closed store.  A SIGHUP reload, which the stop never cancels, did the same.

Now each such operation is ``running`` here (its actor, action and target: what its
audit entry will say), and the stop, before it stops the servers:

* ``ended(within)`` waits up to ``grace`` seconds (``stop_grace``, default 5) for them;
  those that end are written and audited as at any other time.  One stop asks twice
  over HTTP (as the MCP sessions end, then the provider's ``before_stop``) and over
  stdio (the host's EOF, then ``before_stop``): the second waits only what is left of
  the first's bound, not ``grace`` again (the stop took up to three graces, and its
  hard exit came as the second wait ended);
* for those still running it logs one line naming them; once the servers are
  stopped (their waits end with them) most end before the store closes;
* the audit entries of those still running as the store is about to close
  (``unspilled()``; ``ControlPlane.unfinished``) are spilled with what else the stop
  holds (``result``: ``UNFINISHED``): the next start with the store writes them.  Each
  is handed out once: serve's hard-exit backstop (a thread) may spill it first while
  the loop is still stopping, and the stop's spill then leaves it.  An operation that
  ends after that has its own entry spilled at once (``HeldAudit.add`` after
  ``close``): nothing is dropped, nothing is written to a closed store.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fast_mcp_gateway.upstream.signals import ChangeSignal

if TYPE_CHECKING:
    from fast_mcp_gateway.admin.context import Actor

logger = logging.getLogger(__name__)

GRACE = 5.0
"""Seconds a stop waits for admin operations in flight before it stops the servers: the
default of the ``stop_grace`` setting (``MCP_GATEWAY_STOP_GRACE``), which also bounds
uvicorn's wait for HTTP requests in flight (``http/serving.py``) and sets serve's hard
exit (``cli/serve.hard_exit_after``: three of them over HTTP)."""
UNFINISHED = ("unfinished: still running when the gateway stopped and closed its store; "
              "what it did is not known here (check the target's state now)")
"""The ``result`` of the audit entry spilled for an operation the stop did not see end."""


@dataclass(frozen=True)
class Running:
    """One operation in flight: what its audit entry will say, and since when."""

    actor: Actor
    action: str
    target: str | None
    arguments: Any = None
    since: float = field(default_factory=time.monotonic)

    def describe(self, now: float) -> str:
        target = f" {self.target!r}" if self.target is not None else ""
        return f"{self.action}{target} by {self.actor.id} (for {now - self.since:.0f} s)"


class InFlight:
    """The admin operations running now (see the module docstring)."""

    def __init__(self, grace: float = GRACE) -> None:
        self._running: dict[int, Running] = {}
        self._ids = itertools.count()
        self._changed = ChangeSignal()
        self._spilled: set[int] = set()  # keys spilled as unfinished (``unspilled``)
        self._lock = threading.Lock()  # ``unspilled`` runs in the hard exit's thread too
        self.grace = grace  # tests shorten it
        self._until: float | None = None  # the bound of this stop's wait, once begun

    @contextmanager
    def running(self, actor: Actor, action: str, target: str | None,
                arguments: Any = None) -> Iterator[None]:
        """Count the block as the operation ``action`` of ``actor`` on ``target``."""
        key = next(self._ids)
        self._running[key] = Running(actor, action, target, arguments)
        try:
            yield
        finally:
            del self._running[key]
            self._spilled.discard(key)
            if not self._running:
                self._until = None  # a later stop waits anew
            self._changed.notify()

    def __len__(self) -> int:
        return len(self._running)

    def now(self) -> list[Running]:
        """The operations running now, oldest first."""
        return list(self._running.values())

    def unspilled(self) -> list[Running]:
        """The operations running now that were not handed out before (each is spilled
        as unfinished once, by whichever of the stop and the hard exit comes first);
        from now on they are not handed out again."""
        with self._lock:
            fresh = [(k, r) for k, r in list(self._running.items()) if k not in self._spilled]
            self._spilled.update(k for k, _ in fresh)
        return [r for _, r in fresh]

    async def ended(self, within: float | None = None) -> list[Running]:
        """Wait up to ``within`` (``grace``) seconds for every operation to end; those
        still running then, named in one line (none: nothing said)."""
        if not self._running:
            return []
        if within is None:  # ``grace`` from this stop's first wait (module docstring)
            now = time.monotonic()
            if self._until is None:
                self._until, within = now + self.grace, self.grace
            elif now >= self._until:
                return self.now()  # this stop's wait is over; the first said so
            else:
                within = self._until - now
        bound = within
        logger.info("stopping: waiting up to %g s for %d admin operation(s) in flight: %s",
                    bound, len(self._running), self._named())
        if await self._changed.wait_until(lambda: not self._running, bound):
            return []
        still = self.now()
        logger.warning("stopping: %d admin operation(s) still running after %g s, stopping "
                       "the servers under them: %s; each is audited when it ends, or, still "
                       "running when the store closes, spilled as unfinished (written at "
                       "the next start)", len(still), bound, self._named())
        return still

    def _named(self) -> str:
        now = time.monotonic()
        return "; ".join(r.describe(now) for r in self._running.values())
