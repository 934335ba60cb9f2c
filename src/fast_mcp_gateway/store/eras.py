"""What ``protocol: auto`` learned about a server's protocol era, kept across restarts.

``auto`` opens a server's session in the era that costs it less, and moves it when a
tool turns out to need the other (``upstream/session.py: Era``, ``upstream/era_switch.py``):
a guard-style tool needs 2026-07-28, a tool that asks by push needs the handshake era.
Learning it costs a refused call and a reconnect; kept here, a restarted gateway (or
another gateway on the same PostgreSQL) opens the server in that era from the start.
A need is kept for one way of starting the server (``start``: a digest of its command,
arguments, directory or URL): a server started another way is another server, and
learns again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

EraName = Literal["2026-07-28", "handshake"]


@dataclass(frozen=True, kw_only=True)
class EraNeed:
    """A server's learned need for one protocol era."""

    server: str
    start: str  # how the server is started (``upstream/era_memory.start_of``)
    era: EraName
    reason: str  # what showed the need (a tool's name and what it did)
    at: float  # unix seconds, when it was learned


class EraStore(Protocol):
    """The needs ``auto`` learned, one per server (a newer one replaces it)."""

    async def era_needs(self) -> list[EraNeed]:
        """Every kept need, by server name."""
        ...

    async def put_era_need(self, need: EraNeed) -> None:
        """Keep ``need``, replacing the server's earlier one."""
        ...
