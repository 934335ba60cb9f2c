"""Lean JSON schemas for the ``gateway_*`` tools' definitions.  Pure.

Every host pays for a listed tool's definition in every prompt; pydantic's schemas say
some things at length that JSON Schema can say shortly, with the same meaning.
"""

from __future__ import annotations

from typing import Any

_NULLABLE_KEYS = frozenset({"type", "description", "items", "additionalProperties", "minimum",
                            "maximum", "exclusiveMinimum", "minLength", "format"})


def lean_schema(schema: Any) -> Any:
    """``schema`` as pydantic makes it, said in fewer bytes with the same meaning (every
    host pays for it in every prompt): ``anyOf [X, null]`` of a simple type becomes
    ``type: [X, "null"]``, and ``default: null`` (an optional parameter is one that is
    not required) is left out."""
    if isinstance(schema, list):
        return [lean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: lean_schema(v) for k, v in schema.items()
           if not (k == "default" and v is None)}
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = options[1 - options.index({"type": "null"})]
        if isinstance(other, dict) and isinstance(other.get("type"), str) \
                and set(other) <= _NULLABLE_KEYS and not set(other) & (set(out) - {"anyOf"}):
            del out["anyOf"]
            out.update(other, type=[other["type"], "null"])
    return out
