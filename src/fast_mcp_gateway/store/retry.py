"""Retrying a store operation while the database is unreachable, with growing waits.

What the call recorder and the control plane's change feed ask of a retry: no limit on
attempts, only ``StoreUnavailable`` retried (anything else is raised at once), waits of
``first`` seconds doubling up to ``most``, and a callback before each wait (to log the
outage once).  The retrying is tenacity's (``AsyncRetrying``, ``wait_exponential``),
imported when an operation first fails: importing tenacity costs ~0.5 MB of RSS for the
life of a gateway, and on the default path the store never goes away (issue 15).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from fast_mcp_gateway.store.base import StoreUnavailable

if TYPE_CHECKING:
    from tenacity import RetryCallState

T = TypeVar("T")


async def while_unavailable(action: Callable[[], Awaitable[T]], *, first: float, most: float,
                            before_wait: Callable[[StoreUnavailable, int], object] | None = None
                            ) -> T:
    """``await action()`` until it ends without ``StoreUnavailable``; its result.
    ``action`` must be a coroutine function (or a partial of one): tenacity calls
    anything else without awaiting what it returns.

    After the n-th ``StoreUnavailable`` (n = 1, 2, ...) ``before_wait(error, n)`` is
    called, then the loop waits ``min(first * 2 ** (n - 1), most)`` seconds and tries
    again.  Any other exception, and cancellation, ends the loop at once.
    """
    try:
        return await action()  # the common case: no retry machinery at all
    except StoreUnavailable as exc:
        error = exc
    from tenacity import (
        AsyncRetrying,
        retry_if_exception_type,
        stop_never,
        wait_exponential,
    )

    def told(state: RetryCallState) -> None:
        if before_wait is not None and state.outcome is not None:
            failed = state.outcome.exception()
            if isinstance(failed, StoreUnavailable):
                before_wait(failed, state.attempt_number + 1)

    if before_wait is not None:
        before_wait(error, 1)
    del error  # its traceback is not held over the wait
    await anyio.sleep(min(first, most))
    retrying = AsyncRetrying(
        # Attempt n here is the (n + 1)-th in all: its wait is first * 2 ** n, capped.
        wait=wait_exponential(multiplier=first * 2, exp_base=2, max=most),
        retry=retry_if_exception_type(StoreUnavailable), stop=stop_never,
        before_sleep=told, sleep=anyio.sleep, reraise=True)
    return await retrying(action)
