"""Whether the store can be reached, said once per outage.

Every part of the gateway that uses the store meets an outage on its own (the call
recorder's write, the change feed's poll, the pin and name writers, the opening of a
store the gateway started without), and asyncpg's pool logged each failed reconnect
("Failed to restore the pool connection floor; retrying", every 1 to 60 s).  An
operator needs two lines: when the store went (what, since when, what the gateway does
meanwhile) and when it is back.  ``StoreOutage`` is the one place that says them: each
part reports ``lost(error)`` and ``back()``; the first report of an outage logs, the
rest only keep its reason current.  ``quiet_pool_floor`` (installed when a PostgreSQL
store is opened) drops asyncpg's line -- for the gateway's own pools only: asyncpg logs
it on its one ``asyncpg.pool`` logger, shared by every pool of the process (an
application embedding the gateway may have its own, whose lines are its own business),
and names no pool in it; so the gateway's pools connect through ``pool_connect``, which
marks the errors of their connection attempts, and the filter drops only the lines
whose error is marked.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

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
        # A recovery is news, not a problem: INFO (the outage itself was a WARNING).
        logger.info("store back after %s (unreachable since %s): %s",
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


_MARK = "_fast_mcp_gateway_pool"  # on the errors of the gateway's pools' connects


def pool_connect(connect: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``connect`` (``asyncpg.connect``) for a gateway pool (``create_pool(connect=)``):
    its failures are marked as this pool's, so that ``PoolFloor`` knows its lines."""
    async def connecting(*args: Any, **kwargs: Any) -> Any:
        try:
            return await connect(*args, **kwargs)
        except Exception as exc:
            with contextlib.suppress(AttributeError, TypeError):  # a slotted exception
                setattr(exc, _MARK, True)
            raise

    return connecting


def from_gateway_pool(error: BaseException | None) -> bool:
    """Whether ``error`` came from a connection attempt of a gateway pool."""
    return bool(getattr(error, _MARK, False))


class PoolFloor(logging.Filter):
    """asyncpg's pool, reconnecting its idle connection while the database is away,
    logs each failed attempt (every 1, 2, 4 ... 60 s, with a traceback); the gateway's
    ``StoreOutage`` says the outage once instead.  Only the gateway's pools' lines are
    dropped (their errors marked: ``pool_connect``); ``quieted`` counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.quieted = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if (isinstance(record.msg, str) and record.msg.startswith(
                "Failed to restore the pool connection floor")
                and record.exc_info and from_gateway_pool(record.exc_info[1])):
            self.quieted += 1
            return False
        return True


def quiet_pool_floor() -> PoolFloor:
    """Drop the gateway's pools' "Failed to restore the pool connection floor" lines
    (installed once per process: the filter installed, or the one installed before)."""
    pool = logging.getLogger("asyncpg.pool")
    for installed in pool.filters:
        if isinstance(installed, PoolFloor):
            return installed
    floor = PoolFloor()
    # First among the logger's filters: it needs the record's error, which another
    # filter may fold into its text (the CLI's ``OneLineErrors``, installed before).
    pool.filters.insert(0, floor)
    return floor
