"""Reading JSON text strictly, and naming what is in it: stdlib only, for every layer.

The stdio front (its screen, and the reader that answers the opening request before
the stack is imported), the admin surfaces' strict reader (``admin/json_input``) and
the errors that say what a value was (the named invalid params, a REST body) share
these: ``no_constant`` refuses ``NaN`` and ``Infinity`` (Python's parser takes them;
they are not JSON), ``finite_float`` a number beyond a float's range (read as infinity),
``nesting`` measures how deep arrays and objects go without
recursion, ``json_kind`` names a value's JSON type for an error's text.
"""

from __future__ import annotations

import math
from typing import Any

_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
          int: "a number", float: "a number", type(None): "null"}


def no_constant(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: NaN and Infinity are not JSON values."""
    raise ValueError(f"{name} is not a JSON value; write a number, or null")


def finite_float(text: str) -> float:
    """``json.loads``'s ``parse_float``: a number beyond a 64-bit float's range (``1e400``)
    is refused, not read as infinity (no JSON value; the SDK's parser reads it so too,
    and its session sends it on as null)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is beyond a 64-bit float's range; write a "
                         "smaller number")
    return value


def nesting(value: Any, bound: int) -> int:
    """How deep ``value``'s arrays and objects nest (0 for a scalar); walked without
    recursion, and not past ``bound + 1``."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= bound:
                level.extend((v, depth + 1) for v in
                             (item.values() if isinstance(item, dict) else item))
    return deepest


def json_kind(value: Any) -> str:
    """What JSON calls ``value``'s type, for an error's text ("an array", "null"): never
    the value itself, which may be a secret."""
    return _KINDS.get(type(value), type(value).__name__)
