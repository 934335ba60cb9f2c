"""Lean, portable JSON schemas for the ``gateway_*`` tools' definitions.  Pure.

Every host pays for a listed tool's definition in every prompt; pydantic's schemas say
some things at length that JSON Schema can say shortly, with the same meaning.  Each
property keeps one ``type`` (no ``type: [X, "null"]`` arrays): hosts that map tool
schemas onto a single-type dialect (the OpenAPI subset of Gemini function
declarations) reject or weaken those, and the MCP Inspector's strict check warns.
"""

from __future__ import annotations

from typing import Any

_NULL = {"type": "null"}


def lean_output_schema(schema: Any) -> Any:
    """An output schema as pydantic makes it, without ``default: null`` (a result field
    that can be null stays ``anyOf [X, null]``: absent is not null there)."""
    if isinstance(schema, list):
        return [lean_output_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: lean_output_schema(v) for k, v in schema.items()
            if not (k == "default" and v is None)}


def lean_schema(schema: Any) -> Any:
    """An input schema in fewer bytes with the same meaning: an optional parameter whose
    default is null is one that may be left out, so ``anyOf [X, null]`` +
    ``default: null`` becomes ``X`` (the tool treats absent and null alike); every
    other ``default: null`` is left out."""
    if isinstance(schema, list):
        return [lean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: lean_schema(v) for k, v in schema.items()
           if not (k == "default" and v is None)}
    properties = schema.get("properties")
    if isinstance(properties, dict):
        required = set(schema.get("required") or ())
        out["properties"] = {
            name: _absent_is_null(out["properties"][name])
            if name not in required and isinstance(prop, dict) and "default" in prop
            and prop["default"] is None else out["properties"][name]
            for name, prop in properties.items()}
    return out


def _absent_is_null(prop: dict[str, Any]) -> dict[str, Any]:
    """``prop`` without its null branch (kept as it is if it has none, or if the other
    branch cannot be merged into it)."""
    options = prop.get("anyOf")
    if not isinstance(options, list) or _NULL not in options:
        return prop
    rest = [o for o in options if o != _NULL]
    out = {k: v for k, v in prop.items() if k != "anyOf"}
    if len(rest) == 1 and isinstance(rest[0], dict) and not set(rest[0]) & set(out):
        return {**rest[0], **out}
    return {**out, "anyOf": rest}
