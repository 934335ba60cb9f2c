"""A change signal: wake whoever waits for a condition on some state to hold."""

from __future__ import annotations

from collections.abc import Callable

import anyio


class ChangeSignal:
    """Call ``notify()`` after each change; ``wait_until`` re-checks its predicate then."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        event, self._event = self._event, anyio.Event()
        event.set()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait until ``predicate()`` holds; False if it does not within ``within`` seconds."""
        with anyio.move_on_after(within):
            while not predicate():
                await self._event.wait()
            return True
        return predicate()
