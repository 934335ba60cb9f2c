"""Route rules: send calls of matching exposed names to another server (pure).

A rule has a ``pattern`` matched against the exposed tool name -- ``exact``, ``prefix``
or ``wildcard`` (``fnmatch``: ``*``, ``?``, ``[...]``) -- a ``priority`` (higher wins,
then the older rule) and a ``target`` server.  The called tool keeps its original name:
a rule ``search_*`` -> ``search-v2`` makes ``search_web`` call ``web`` on ``search-v2``.
Without a matching rule, the default route is the tool's own namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
