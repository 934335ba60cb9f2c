"""A value worked out from an object, remembered while the object stays the same.

The call paths ask per call what only changes with a catalog or a reload (whether a
tool's input schema names a credential or declares ``Mcp-Param`` headers, whether a
server's headers take the caller's token): worked out once per object, not per call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Obj = TypeVar("Obj")
V = TypeVar("V")

LIMIT = 4096
"""Keys remembered at most; past it, the memory starts over."""


class Remembered(Generic[Obj, V]):
    """``work(obj)`` per key, worked out again when the key's object is another one
    (a new catalog's schema, a reloaded config): compared by identity, so an object
    that changes in place must not be given."""

    __slots__ = ("_values", "_work")

    def __init__(self, work: Callable[[Obj], V]) -> None:
        self._work = work
        self._values: dict[Hashable, tuple[Obj, V]] = {}

    def __call__(self, key: Hashable, obj: Obj) -> V:
        known = self._values.get(key)
        if known is not None and known[0] is obj:
            return known[1]
        value = self._work(obj)
        if len(self._values) >= LIMIT:
            self._values.clear()
        self._values[key] = (obj, value)
        return value

    def forget(self) -> None:
        self._values.clear()
