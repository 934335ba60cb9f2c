"""Retrying a store operation while the database is unreachable, with growing waits.

What the call recorder and the control plane's change feed ask of a retry: no limit on
attempts, only ``StoreUnavailable`` retried (anything else is raised at once), waits of
``first`` seconds doubling up to ``most`` (tenacity's ``wait_exponential``), and a
callback before each wait (to log the outage once).  This small loop rather than
tenacity: importing tenacity costs ~0.5 MB of RSS for the life of a gateway that, on
the default path, never retries (issue 15); tenacity stays for the alert webhook's
deliveries, imported by the first one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from fast_mcp_gateway.store.base import StoreUnavailable

T = TypeVar("T")


async def while_unavailable(action: Callable[[], Awaitable[T]], *, first: float, most: float,
                            before_wait: Callable[[StoreUnavailable, int], object] | None = None
                            ) -> T:
    """``await action()`` until it ends without ``StoreUnavailable``; its result.

    After the n-th ``StoreUnavailable`` (n = 1, 2, ...) ``before_wait(error, n)`` is
    called, then the loop waits ``min(first * 2 ** (n - 1), most)`` seconds and tries
    again.  Any other exception, and cancellation, ends the loop at once.
    """
    failures = 0
    delay = first
    while True:
        try:
            return await action()
        except StoreUnavailable as exc:
            failures += 1
            if before_wait is not None:
                before_wait(exc, failures)
        # Outside the handler: the error (and its traceback) is not held over the wait.
        await anyio.sleep(min(delay, most))
        delay = min(delay * 2, most)  # capped, so an outage of days cannot overflow it
