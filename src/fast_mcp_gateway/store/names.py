"""Exposed-name bindings: which (server, name) each exposed tool or prompt name belongs to.

Two servers can make the same exposed name ('a_b' + 'c' and 'a' + 'b_c' both make
'a_b_c'); the one named first keeps it and the other gets a hashed suffix
(``routing/naming.py``).  Kept here, that choice outlives the moment: a server slow to
start after a restart, or one that drops a tool for a while, finds its names still its
own, and a host calling a name as it was listed never runs another server's tool.  The
store makes the bindings last across restarts and agree between the gateways on one
PostgreSQL (``claim_names`` is insert-if-absent: the first claim of a name wins).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

NameKind = Literal["tool", "prompt", "resource", "template"]


@dataclass(frozen=True, kw_only=True)
class NameBinding:
    """An exposed name and the server's component it belongs to."""

    kind: NameKind
    exposed: str
    server: str
    original: str  # the name the server's rules give it (the upstream's, unless renamed)
    base: str  # the name it would have had with nothing colliding, when it was bound
    at: float  # unix seconds, when it was bound


class NameStore(Protocol):
    """The bindings, one per (kind, exposed name) and one per (kind, server, original)."""

    async def name_bindings(self) -> list[NameBinding]:
        """Every binding, by kind and exposed name."""
        ...

    async def claim_names(self, claims: Sequence[NameBinding]) -> list[NameBinding]:
        """Keep each claim unless its name or its component is bound already (the earlier
        binding stays).  A binding of the claim's component made for another ``base``
        (its namespace or the separator changed since) is replaced.  Returns the
        bindings that hold the claimed names and components now, by kind and name: the
        claims kept, and the earlier ones the claimant must adopt."""
        ...

    async def release_names(self, server: str) -> int:
        """Forget every binding of ``server`` (it was removed); returns how many."""
        ...

    async def forget_names(self, bindings: Sequence[NameBinding]) -> int:
        """Forget each of ``bindings`` (a name its server stopped offering long ago:
        ``routing/bindings.py``), matched by kind, name, server and original: a row that
        binds the name to another component now stays.  Returns how many went."""
        ...


def claimed(rows: Iterable[NameBinding], claims: Sequence[NameBinding]) -> list[NameBinding]:
    """Of ``rows``, those holding a claimed name or component, by kind and name (what
    ``claim_names`` returns)."""
    names = {(c.kind, c.exposed) for c in claims}
    parts = {(c.kind, c.server, c.original) for c in claims}
    return sorted((r for r in rows if (r.kind, r.exposed) in names
                   or (r.kind, r.server, r.original) in parts),
                  key=lambda r: (r.kind, r.exposed))
