"""A store the gateway started without: it could not be reached, and is opened later.

A gateway must start while its database is away (a host reboot that brings the
gateway up before PostgreSQL, a database restarted during a deploy) as it runs on
through an outage.  ``DeferredStore(url, error)`` stands where the store will be:
until ``connect`` opens it (retrying with backoff while it stays unreachable,
``store/retry.py``; migrating it then, as any open does) every operation raises
``StoreUnavailable`` with the latest reason -- the error a running gateway's store
gives during an outage, so its users behave as they do then: the call recorder holds
its records, admin changes answer 503 ``store_unavailable``, ``/ready`` says
``degraded``.  Once open and taken in (``take_over``), every operation goes to the
opened store.  Only
``StoreUnavailable`` is waited out: a URL, password, database or role that is wrong
fails the start as before (``open_store``'s ``StorageError``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fast_mcp_gateway.store.base import Store, StoreUnavailable
from fast_mcp_gateway.store.memory import MemoryStore
from fast_mcp_gateway.store.retry import while_unavailable

# The operations a store has (every backend has MemoryStore's): the only attributes
# that raise while the store is not open.
_OPERATIONS = frozenset(name for name, member in inspect.getmembers(MemoryStore)
                        if not name.startswith("_") and inspect.iscoroutinefunction(member))
UNREAD = ("; this gateway started without its store (unreachable; /ready says 'degraded') "
          "and has not read the servers registered at runtime yet: a name of theirs is "
          "served here once the store answers (other gateways on the store may serve it "
          "now)")
"""Added to an unknown name's answer while the runtime registrations are unread (a
host called a runtime server's tool, and was offered a file server's name instead)."""
RETRY_FIRST = 0.5  # seconds before the second attempt to open; doubling up to
RETRY_MOST = 5.0  # between two attempts at most (an attempt may itself wait 10 s)


class DeferredStore:
    """The store at ``url``, not open yet (see the module docstring)."""

    def __init__(self, url: str, error: StoreUnavailable,
                 opener: Callable[[], Awaitable[Store]]) -> None:
        self.url = url
        self.error = error
        self._open = opener  # ``open_store(url)``'s next attempt
        self.connected: Store | None = None  # opened by ``connect``
        self.opened: Store | None = None  # what operations go to (``take_over``)

    @property
    def shared(self) -> bool:
        """Whether other gateways may write it: a PostgreSQL URL's store."""
        if self.opened is not None:
            return self.opened.shared
        return self.url.lower().startswith(("postgresql:", "postgres:"))

    def __getattr__(self, name: str) -> Any:
        opened = self.__dict__.get("opened")
        if opened is not None:
            return getattr(opened, name)
        if name not in _OPERATIONS:
            raise AttributeError(name)

        async def unavailable(*_: object, **__: object) -> Any:
            raise StoreUnavailable(str(self.error))

        return unavailable

    async def connect(self, before_wait: Callable[[StoreUnavailable, int], object] | None = None
                      ) -> Store:
        """Open (and migrate) the store, trying again with backoff while it cannot be
        reached; any other ``StorageError`` is raised."""
        def failed(error: StoreUnavailable, failures: int) -> None:
            self.error = error
            if before_wait is not None:
                before_wait(error, failures)

        async def attempt() -> Store:  # a coroutine function: tenacity awaits it
            return await self._open()

        self.connected = await while_unavailable(attempt, first=RETRY_FIRST,
                                                 most=RETRY_MOST, before_wait=failed)
        return self.connected

    def take_over(self) -> None:
        """From now on every operation goes to the store ``connect`` opened (once the
        gateway took it in: until then its users see the outage go on)."""
        self.opened = self.connected

    async def close(self) -> None:
        if self.connected is not None:
            await self.connected.close()

