"""Whether the store can be reached, said once per outage.

Every part of the gateway that uses the store meets an outage on its own (the call
recorder's write, the change feed's poll, the pin and name writers, the opening of a
store the gateway started without), and asyncpg's pool logged each failed reconnect
("Failed to restore the pool connection floor; retrying", every 1 to 60 s).  An
operator needs two lines: when the store went (what, since when, what the gateway does
meanwhile) and when it is back.  ``StoreOutage`` is the one place that says them: each
part reports ``lost(error)`` and ``back()``; the first report of an outage logs, the
rest only keep its reason current.  ``quiet_pool_floor`` (installed when a PostgreSQL
store is opened) drops asyncpg's line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("fast_mcp_gateway.store")

MEANWHILE = ("meanwhile the gateway serves its upstreams and calls, holds the call records "
             "(written when it is back; spilled to its data folder if it stops first), "
             "answers admin changes and histories 503 store_unavailable and /ready "
             "'degraded'")


class StoreOutage:
    """The store's reachability as its users found it last (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.since: float | None = None  # when the current outage began
        self.reason = ""  # the store's own words for the latest failure

    @property
    def down(self) -> bool:
        return self.since is not None

    def lost(self, error: BaseException, *, starting: bool = False) -> None:
        """A use of the store found it unreachable (``starting``: the gateway is starting
        without it).  The first report of an outage is logged."""
        self.reason = str(error)
        if self.since is not None:
            return
        self.since = self.clock()
        if starting:
            logger.warning("started without the store, connecting again with backoff until "
                           "it answers: %s; the upstreams of the config file are served, "
                           "runtime registrations and route rules apply once it is back; "
                           "%s", error, MEANWHILE)
        else:
            logger.warning("store unreachable since %s, retrying with backoff: %s; %s",
                           _utc(self.since), error, MEANWHILE)

    def back(self, then: str = "writing what was held") -> None:
        """A use of the store succeeded: an outage, if any, is over (logged once)."""
        if self.since is None:
            return
        since, self.since = self.since, None
        logger.warning("store back after %s (unreachable since %s): %s",
                       _duration(self.clock() - since), _utc(since), then)


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"


class PoolFloor(logging.Filter):
    """asyncpg's pool, reconnecting its idle connection while the database is away,
    logs each failed attempt (every 1, 2, 4 ... 60 s, with a traceback); the gateway's
    ``StoreOutage`` says the outage once instead.  ``quieted`` counts the lines dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.quieted = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(
                "Failed to restore the pool connection floor"):
            self.quieted += 1
            return False
        return True


def quiet_pool_floor() -> PoolFloor:
    """Drop asyncpg's "Failed to restore the pool connection floor" lines (once per
    process: the filter installed, or the one installed before)."""
    pool = logging.getLogger("asyncpg.pool")
    for installed in pool.filters:
        if isinstance(installed, PoolFloor):
            return installed
    floor = PoolFloor()
    pool.addFilter(floor)
    return floor
