"""The change feed of a single-process backend: the mutations made through one object.

SQLite and the in-memory store serve one gateway, so their feed is kept in memory: a
bounded log of ``Change`` with a sequence number, and a wake-up for long polls.  A
position older than the log (or from an earlier process: positions restart at 0 with
each object) answers ``complete=False``, and the caller reloads in full.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

import anyio

from fast_mcp_gateway.store.records import Change, ChangeBatch, ChangeKind


class LocalChangeFeed:
    """A bounded in-memory log of control-plane changes (see the module docstring)."""

    def __init__(self, keep: int = 1000) -> None:
        self._log: deque[Change] = deque(maxlen=keep)
        self._seq = 0
        self._changed = anyio.Event()

    def note(self, kind: ChangeKind, key: str | int) -> None:
        """Log a mutation that has been committed."""
        self._seq += 1
        self._log.append(Change(seq=self._seq, kind=kind, key=str(key), at=time.time()))
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def note_each(self, kind: ChangeKind, keys: Iterable[str]) -> None:
        """``note`` each of ``keys`` once, in order (the servers whose bindings went)."""
        for key in sorted(set(keys)):
            self.note(kind, key)

    async def changes(self, since: int = 0, *, wait: float = 0.0) -> ChangeBatch:
        if since >= self._seq and wait > 0:
            with anyio.move_on_after(wait):
                await self._changed.wait()
        if since > self._seq:  # a position this object never gave out
            return ChangeBatch(cursor=self._seq, complete=False)
        oldest = self._log[0].seq if self._log else self._seq + 1
        complete = since + 1 >= oldest
        return ChangeBatch(cursor=self._seq, complete=complete,
                           changes=[c for c in self._log if c.seq > since])
