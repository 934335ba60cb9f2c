"""Retention in a task of its own, beside the call recorder's writer.

The store's ``prune`` (call records, their aggregates, audit, health, inspector and
alert entries past their age; the oldest records beyond ``max_rows``) ran inside the
recorder's writer loop, after a batch: while it ran no record was written, and a large
prune (in batches now: 3M PostgreSQL records take ~15 s) let the calls' records pile
up in the bounded queue, beyond 10 000 dropped.  ``Retention.run`` is its own task,
started and stopped with the recorder (``Recorder.run`` starts it, ``Recorder.stopping``
cancels it): records are written while a prune runs.

- One prune at a time: the task prunes, then waits ``every`` seconds (or ``now()``),
  then prunes again; the first at start, so a gateway restarted more often than
  ``every`` still prunes.
- A stop cancels a running prune: the store's batches are each their own transaction,
  so the batches committed stay pruned, the one cut short is rolled back (PostgreSQL)
  or ends before the cancellation lands (SQLite), and the next run prunes the rest.
- A failed prune never ends the task nor the recorder: it is logged once, in words,
  until a prune succeeds again (then one line says so); an unreachable store the
  gateway's ``StoreOutage`` has said already is not said again.
- Gateways sharing a PostgreSQL store prune it one at a time (its retention lock,
  store/postgres_retention.py): a run that finds another gateway pruning is skipped
  (``PruneSkipped``; said at DEBUG, counted in ``skipped``) and the next run tries again.
"""

from __future__ import annotations

import logging
import time

import anyio
import anyio.abc

from fast_mcp_gateway.store.base import InvocationStore, PruneSkipped, StoreUnavailable
from fast_mcp_gateway.store.outage import StoreOutage

__all__ = ["Retention"]

logger = logging.getLogger(__name__)


class Retention:
    """Prunes ``store`` at start and every ``every`` seconds (see the module docstring).

    ``runs`` counts the prunes that ended (succeeded, failed or skipped), ``failures``
    the failed ones, ``skipped`` those another gateway's prune stood in for, ``removed``
    the call records removed; ``running`` says whether one is running now."""

    def __init__(self, store: InvocationStore, *, max_age_seconds: float | None,
                 max_rows: int | None, every: float = 300.0) -> None:
        self.store = store
        self.max_age_seconds = max_age_seconds
        self.max_rows = max_rows
        self.every = every
        self.outage: StoreOutage | None = None  # the gateway's reporter of store outages
        self.runs = 0
        self.failures = 0
        self.skipped = 0
        self.removed = 0
        self.running = False
        self._failing_since: float | None = None  # the first failure of the current streak
        self._said = False  # that streak's failure was logged
        self._wake = anyio.Event()
        self._ended = anyio.Event()  # set (and replaced) as each prune ends
        self._scope: anyio.CancelScope | None = None
        self._stopped = False

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Prune until ``stop()`` or cancelled; returns when stopped."""
        with anyio.CancelScope() as self._scope:
            if self._stopped:  # stopped before it started
                self._scope.cancel()
            task_status.started()
            while True:
                self._wake = anyio.Event()  # a now() from here on asks for the next run
                await self._prune()
                with anyio.move_on_after(self.every):
                    await self._wake.wait()

    def now(self) -> None:
        """Prune now (or, while a prune runs, once more right after it)."""
        self._wake.set()

    def stop(self) -> None:
        """End the task: a prune running is cancelled (module docstring)."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def ended(self, runs: int, within: float = 60.0) -> bool:
        """Wait until ``runs`` prunes have ended in all (for tests); False after
        ``within`` seconds."""
        with anyio.move_on_after(within):
            while self.runs < runs:
                await self._ended.wait()
            return True
        return False

    async def _prune(self) -> None:
        self.running = True
        try:
            removed = await self.store.prune(max_age_seconds=self.max_age_seconds,
                                             max_rows=self.max_rows)
        except PruneSkipped as skipped:  # neither a success nor a failure: streaks go on
            self.skipped += 1
            logger.debug("retention skipped this run: %s; trying again in %g s", skipped,
                         self.every)
        except Exception as exc:  # noqa: BLE001 - retention tries again at the next run
            self.failures += 1
            self._failed(exc)
        else:
            self.removed += removed
            self._succeeded()
        finally:
            self.running = False
            self.runs += 1
            ended, self._ended = self._ended, anyio.Event()
            ended.set()

    def stats(self) -> dict[str, int]:
        """The counters, as ``Recorder.stats`` gives them (and the metrics)."""
        return {"retention_runs": self.runs, "retention_failures": self.failures,
                "retention_skipped": self.skipped, "retention_removed": self.removed}

    def _failed(self, error: Exception) -> None:
        if self._failing_since is None:
            self._failing_since = time.time()
        if self._said:
            return
        if (isinstance(error, StoreUnavailable) and self.outage is not None
                and self.outage.down):
            return  # the outage's own line said it; the next run tries again
        self._said = True
        logger.warning("retention could not prune the call log, audit and statistics: %s;"
                       " trying again every %g s (what it would remove is kept until then;"
                       " calls and their records go on)", error, self.every)

    def _succeeded(self) -> None:
        since, self._failing_since = self._failing_since, None
        if since is not None and self._said:
            # A recovery is news, not a problem: INFO (the failure was a WARNING).
            logger.info("retention prunes again (failing since %s)",
                           time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)))
        self._said = False
