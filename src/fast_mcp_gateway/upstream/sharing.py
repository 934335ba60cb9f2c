"""One copy of each JSON schema value the upstream catalogs hold.

A parsed ``tools/list`` keeps every tool's ``inputSchema`` / ``outputSchema`` as
nested dicts and lists: ~2-3 KB per tool, most of it small objects that repeat across
tools (``{"type": "string"}``, a shared ``$defs`` entry, an ``anyOf`` of a type and
``null``), and whole schemas that repeat across the tools of one server.  ``SchemaPool``
replaces each value by the one equal copy it has seen, bottom-up, so that equal
sub-trees are one object, within one server's list (``share_tool_schemas``).

Contract: shared values are read-only.  Nothing in the gateway writes into an upstream
schema (lists relay them, FastMCP components take a shallow copy of the top level,
search and pinning read them); a writer must copy first.  Equality is exact JSON
equality, key order included (``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` stay two
objects: lists relay the upstream's order), and ``True``/``1``/``1.0`` are different
values, as are ``0.0`` and ``-0.0``.
"""

from __future__ import annotations

import math
from typing import Any

_Key = tuple[Any, ...]


def _leaf(value: Any) -> tuple[Any, ...]:
    """A scalar's part of its container's key: its type and value, a float's sign too
    (``0.0 == -0.0``: a schema's ``-0.0`` was listed as another tool's ``0.0``)."""
    if type(value) is float:
        return (float, value, math.copysign(1.0, value))
    return (type(value), value)


class SchemaPool:
    """Canonical copies of JSON values, for one catalog fetch.

    Meant to be dropped after the fetch: its keys cost about what sharing saves
    across catalogs (measured on 26 real servers' 359 tools: a process-wide pool
    grew their schemas 2.42 -> 2.58 MB, a pool per ``tools/list`` shrank them to
    1.59 MB)."""

    def __init__(self) -> None:
        self._values: dict[_Key, Any] = {}

    def share(self, value: Any) -> Any:
        """``value`` with every dict and list in it replaced by the pool's equal copy
        (the value itself when it is the first of its kind)."""
        return self._share(value)[0]

    def _share(self, value: Any) -> tuple[Any, _Key | None]:
        # The key of a container names its children's shared copies by id: children are
        # interned first, so equal children are the same object (and stay alive, held by
        # the pool, while keys name them).
        if isinstance(value, dict):
            parts: list[Any] = ["d"]
            fresh: dict[str, Any] | None = None
            for k, v in value.items():
                child, key = self._share(v)
                parts.append(k)
                parts.append(key if key is not None else _leaf(v))
                if child is not v:
                    if fresh is None:
                        fresh = dict(value)
                    fresh[k] = child
            return self._canonical(tuple(parts), value if fresh is None else fresh)
        if isinstance(value, list):
            items: list[Any] = []
            parts = ["l"]
            for v in value:
                child, key = self._share(v)
                items.append(child)
                parts.append(key if key is not None else _leaf(v))
            return self._canonical(tuple(parts), items)
        return value, None

    def _canonical(self, key: _Key, value: Any) -> tuple[Any, _Key]:
        try:
            hash(key)
        except TypeError:   # not JSON (a set, a model): left as it is
            return value, ("x", id(value))
        kept = self._values.setdefault(key, value)
        return kept, ("s", id(kept))

    def __len__(self) -> int:
        return len(self._values)


def share_tool_schemas(tools: list[Any]) -> None:
    """Each tool's ``input_schema``, ``output_schema`` and ``_meta`` as one pool's shared
    copies (in place: the tool objects are the caller's, fresh from one ``tools/list``)."""
    pool = SchemaPool()
    for tool in tools:
        tool.input_schema = pool.share(tool.input_schema)
        if tool.output_schema is not None:
            tool.output_schema = pool.share(tool.output_schema)
        if tool.meta is not None:   # FastMCP servers send {"fastmcp": {"tags": []}} each
            tool.meta = pool.share(tool.meta)
