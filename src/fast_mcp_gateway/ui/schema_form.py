"""A form from a tool's JSON Schema, and the tool's arguments from that form (pure).

``fields_of(schema)`` turns an ``inputSchema`` into ``Field``s: strings, numbers and
integers (inputs), booleans (a checkbox when required, else unset/true/false), enums
(a select), arrays of scalars (one item per line), nested objects (a fieldset of their
own fields) and anything else -- unions, ``$ref`` cycles, free-form objects -- as a
JSON text box.  Local ``$ref``s (``#/$defs/...``) are followed.  Field names are
paths (``arg.address.city``) so nested values come back where they belong.

``arguments_of(fields, form)`` is the inverse: empty optional fields are left out, a
required field left empty is an error, and numbers and JSON are parsed; errors are
keyed by field name, with a message saying what is expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fast_mcp_gateway.admin.json_input import parse_json

PREFIX = "arg"
MAX_DEPTH = 6
_SCALARS = ("string", "number", "integer")


@dataclass
class Field:
    name: str  # the form field's name: a dotted path under PREFIX
    key: str  # the property's name in its object
    kind: str  # string | number | integer | boolean | enum | lines | object | json
    required: bool = False
    title: str | None = None
    description: str | None = None
    options: list[Any] = field(default_factory=list)
    children: list[Field] = field(default_factory=list)
    item_kind: str = "string"  # for "lines": the items' type
    default: Any = None

    @property
    def label(self) -> str:
        return self.title or self.key

    @property
    def default_text(self) -> str:
        if self.default is None:
            return ""
        if self.kind in ("json", "object"):
            return json.dumps(self.default)
        if self.kind == "lines" and isinstance(self.default, list):
            return "\n".join(str(v) for v in self.default)
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


def _resolve(schema: Any, root: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
    if not isinstance(schema, Mapping):
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and depth < MAX_DEPTH:
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return _resolve(target, root, depth + 1)
    # Optional[X] is anyOf [X, null]: show X (left empty = left out).
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            real = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
            if len(real) == 1:
                merged = {k: v for k, v in schema.items() if k != key}
                return {**_resolve(real[0], root, depth + 1), **merged}
    return schema


def _type(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        real = [k for k in kind if k != "null"]
        kind = real[0] if len(real) == 1 else None
    return kind if isinstance(kind, str) else None


def _field(name: str, key: str, raw: Any, required: bool, root: Mapping[str, Any],
           depth: int) -> Field:
    schema = _resolve(raw, root, depth)
    common: dict[str, Any] = {"name": name, "key": key, "required": required,
              "title": schema.get("title") if isinstance(schema.get("title"), str) else None,
              "description": schema.get("description")
              if isinstance(schema.get("description"), str) else None,
              "default": schema.get("default")}
    kind = _type(schema)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return Field(kind="enum", options=list(schema["enum"]), **common)
    if kind in _SCALARS or kind == "boolean":
        return Field(kind=kind, **common)
    if kind == "array":
        items = _resolve(schema.get("items"), root, depth + 1)
        item_kind = _type(items)
        if item_kind in _SCALARS and "enum" not in items:
            return Field(kind="lines", item_kind=item_kind or "string", **common)
    if kind == "object" and isinstance(schema.get("properties"), Mapping) and depth < MAX_DEPTH:
        return Field(kind="object", children=_children(name, schema, root, depth + 1),
                     **common)
    return Field(kind="json", **common)


def _children(prefix: str, schema: Mapping[str, Any], root: Mapping[str, Any],
              depth: int) -> list[Field]:
    props = schema.get("properties")
    needed = set(schema.get("required") or ())
    if not isinstance(props, Mapping):
        return []
    return [_field(f"{prefix}.{key}", str(key), sub, key in needed, root, depth)
            for key, sub in props.items()]


def fields_of(schema: Mapping[str, Any] | None) -> list[Field]:
    """The form fields of a tool's ``inputSchema`` (an object schema)."""
    if not isinstance(schema, Mapping):
        return []
    return _children(PREFIX, _resolve(schema, schema, 0), schema, 0)


def _scalar(kind: str, text: str) -> Any:
    if kind == "integer":
        return int(text)
    if kind == "number":
        value = float(text)
        if not math.isfinite(value):  # float() reads 'nan' and 'inf': not JSON numbers
            raise ValueError(text)
        return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() \
            else value
    return text


def _value(f: Field, form: Mapping[str, str], errors: dict[str, str]) -> tuple[bool, Any]:
    """(present, value) of one field."""
    if f.kind == "object":
        out: dict[str, Any] = {}
        for child in f.children:
            present, value = _value(child, form, errors)
            if present:
                out[child.key] = value
        return (bool(out) or f.required), out
    text = form.get(f.name, "")
    if f.kind == "boolean":
        if f.required:
            return True, text in ("on", "true")
        return (text in ("true", "false")), text == "true"
    if text.strip() == "" and f.kind != "string":
        if f.required:
            errors[f.name] = f"{f.label} is required"
        return False, None
    if text == "" and f.kind == "string":
        if f.required:
            errors[f.name] = f"{f.label} is required"
        return False, None
    try:
        if f.kind in _SCALARS:
            return True, _scalar(f.kind, text.strip() if f.kind != "string" else text)
        if f.kind == "enum":
            # The select's value is the JSON of the option (enums may hold numbers).
            return True, json.loads(text)
        if f.kind == "lines":
            return True, [_scalar(f.item_kind, line.strip()) for line in text.splitlines()
                          if line.strip()]
        return True, parse_json(text)
    except ValueError:
        expected = {"integer": "a whole number", "number": "a number",
                    "lines": f"one {f.item_kind} per line"}.get(f.kind, "valid JSON")
        errors[f.name] = f"{f.label} must be {expected}"
        return False, None


def arguments_of(fields: list[Field], form: Mapping[str, str]
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """The arguments the form describes, and errors by field name."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for f in fields:
        present, value = _value(f, form, errors)
        if present:
            out[f.key] = value
    return out, errors
