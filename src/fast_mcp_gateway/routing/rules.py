"""Route rules: send calls of matching exposed names to another server (pure).

A rule has a ``pattern`` matched against the exposed tool name -- ``exact``, ``prefix``
or ``wildcard`` (``fnmatch``: ``*``, ``?``, ``[...]``) -- a ``priority`` (higher wins,
then the older rule) and a ``target`` server.  The called tool keeps its original name:
a rule ``search_*`` -> ``search-v2`` makes ``search_web`` call ``web`` on ``search-v2``.
Without a matching rule, the default route is the tool's own namespace.

A caller limited to some servers (a token's ``servers``) may call a tool only where its
call goes: a tool a rule sends elsewhere is left out of its lists and
search results (``outside``), and a call of it is refused saying so (``front/calls.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

Match = Literal["exact", "prefix", "wildcard"]


@dataclass(frozen=True)
class Route:
    id: int
    pattern: str
    match: Match
    target: str
    priority: int = 0
    # When the store says it was made (None: not from the store); shown, never matched.
    created_at: float | None = field(default=None, compare=False)

    def matches(self, name: str) -> bool:
        if self.match == "exact":
            return name == self.pattern
        if self.match == "prefix":
            return name.startswith(self.pattern)
        return fnmatchcase(name, self.pattern)


class RouteTable:
    """Rules in decision order: priority (high first), then age (old first)."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes = sorted(routes, key=lambda r: (-r.priority, r.id))

    def rule_for(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.matches(name)), None)

    def outside(self, servers: frozenset[str] | None) -> Callable[[str], bool] | None:
        """Whether a rule sends a tool (by exposed name) to a server not in ``servers``;
        None when no rule can: no rules, or ``servers`` None (every server)."""
        if not self.routes or servers is None:
            return None
        return lambda name: (rule := self.rule_for(name)) is not None \
            and rule.target not in servers
