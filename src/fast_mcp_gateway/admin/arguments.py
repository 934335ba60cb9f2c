"""Wrong arguments to an admin operation, in words: one mapping for MCP tools and REST.

pydantic's own text ("1 validation error for call[calls] ... Input should be a valid
integer ... For further information visit https://errors.pydantic.dev/...") names its
internals and links its docs.  ``invalid_fields`` turns each error into the argument's
name and what it must be, through the config loader's wording (``config.checks``), and
never echoes the value given (it may be a secret).  ``summary`` words them all as one
message: the unknown names together, with the accepted ones once, and names given beside
an object argument that belong inside it (``{"name": "x", "command": "npx"}`` for
``{"name": "x", "config": {"command": "npx"}}``: models flatten often) said so, with the
call's corrected shape (values elided).  ``PlainArgumentsTool`` is the ``gateway_*``
tools' FastMCP tool class: a call with wrong arguments fails with that text
(``ToolError``), as any other admin error does.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from fastmcp.exceptions import ToolError
from fastmcp.exceptions import ValidationError as ArgumentsRejected
from fastmcp.tools import FunctionTool, ToolResult
from pydantic import BaseModel, ValidationError

from fast_mcp_gateway.config.checks import explain, field_names, field_path
from fast_mcp_gateway.telemetry.redaction import mask_text

_UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")
_MISSING = ("missing", "missing_argument", "missing_keyword_only_argument",
            "missing_positional_only_argument")


def _server_settings() -> Collection[str]:
    from fast_mcp_gateway.config.schema import INTERNAL_FIELDS, ServerConfig

    return set(ServerConfig.model_fields) - INTERNAL_FIELDS


def _rule_fields() -> Collection[str]:
    from fast_mcp_gateway.config.alerts import AlertRule  # only a wrong call needs it

    return field_names(AlertRule)


# An object argument (by name, as the tools and the REST bodies call it), what one name
# and several inside it are, and the names that do go inside (None: any name, the
# upstream's own arguments, unless it is a typo of a name of ours).
NESTED: dict[str, tuple[str, str, Callable[[], Collection[str]] | None]] = {
    "config": ("a server setting", "server settings", _server_settings),
    "rule": ("a field of the alert rule", "fields of the alert rule", _rule_fields),
    "arguments": ("an argument for the upstream tool or prompt",
                  "arguments for the upstream tool or prompt", None),
}


def invalid_fields(exc: ValidationError, model: type[BaseModel] = BaseModel,
                   known: Sequence[str] = (), objects: Collection[str] | None = None
                   ) -> list[tuple[str, str]]:
    """``(field, what is wrong and what it must be)`` for each error of ``exc``.

    ``model`` (the validated model, if any) and ``known`` (the accepted top-level
    names) let an unknown name be matched to the one meant; ``objects`` (those of them
    that take an object; default: ``model``'s dict fields) one that belongs inside one.
    """
    known = list(known) or _known(model)
    errors = exc.errors(include_url=False)
    into, moved = _misplaced(errors, known, _objects(model) if objects is None else objects)
    out: list[tuple[str, str]] = []
    for err in errors:
        kind = err.get("type", "")
        loc = tuple(err.get("loc", ()))
        if kind in _MISSING:
            message = "is required"
        elif kind in _UNKNOWN and len(loc) == 1 and loc[0] in moved:
            message = f"is {NESTED[into][0]}: it goes inside '{into}'"
        elif kind == "unexpected_keyword_argument" or (kind == "extra_forbidden"
                                                        and len(loc) == 1 and known):
            message = "is not accepted" + (
                (_closest(str(loc[-1]), known) or f"; accepted: {', '.join(known)}")
                if known else " (no argument is)")
        elif kind == "extra_forbidden":
            message = "is not accepted" + (
                "" if model is BaseModel else explain(err, model).removeprefix("unknown field"))
        else:
            message = explain(err, model)
        out.append((field_path(loc), message))
    return out


def summary(exc: ValidationError, model: type[BaseModel] = BaseModel,
            known: Sequence[str] = (), given: Mapping[str, Any] | None = None, *,
            objects: Collection[str] | None = None,
            quote: Callable[[str], str] = lambda name: f"'{name}'") -> str:
    """Every error of ``exc`` as one message: ``'limit' must be a whole number; 'x' and
    'y' are not accepted; accepted: a, b``.

    Names given beside an object argument (``NESTED``) that belong inside it come first,
    as one sentence with the corrected call: ``given`` (the call's arguments; else read
    from the errors) gives its shape.  ``quote`` writes a name (REST's are bare).
    """
    known = list(known) or _known(model)
    objects = _objects(model) if objects is None else objects
    errors = exc.errors(include_url=False)
    fields = invalid_fields(exc, model, known, objects)
    given = given if given is not None else _given(errors)
    into, moved = _misplaced(errors, known, objects)
    clauses: list[str] = []
    if moved:
        one = len(moved) == 1
        what = NESTED[into][0 if one else 1]
        shape = _shape(known, given, into, {name: _input(errors, name) for name in moved},
                       model)
        clauses.append(f"{_names(moved, quote)} {'is' if one else 'are'} {what}, which "
                       f"{'goes' if one else 'go'} inside {quote(into)}, not beside it: "
                       f"{shape}")
    unknown: list[str] = []
    for err, (name, message) in zip(errors, fields, strict=True):
        loc = tuple(err.get("loc", ()))
        if moved and (name in moved or (err.get("type") in _MISSING and loc == (into,))):
            continue  # said above: the object is missing because its fields are beside it
        if "; accepted: " in message:  # unknown, like no known name: listed together
            if not unknown:
                clauses.append("")  # its place, filled below
            unknown.append(name)
            continue
        clauses.append(f"{quote(name)} {message}" if name else message)
    if unknown:
        verb = "is" if len(unknown) == 1 else "are"
        clauses[clauses.index("")] = (f"{_names(unknown, quote)} {verb} not accepted; "
                                      f"accepted: {', '.join(known)}")
    return "; ".join(clauses)


def _known(model: type[BaseModel]) -> list[str]:
    return field_names(model) if model is not BaseModel else []


def _given(errors: Sequence[Any]) -> Mapping[str, Any] | None:
    """The call's arguments as a missing-argument error carries them (pydantic gives the
    whole input there: a dict for a model, ``ArgsKwargs`` for a function)."""
    for err in errors:
        if err.get("type") in _MISSING:
            data = err.get("input")
            data = getattr(data, "kwargs", data)
            if isinstance(data, Mapping):
                return data
    return None


def _objects(model: type[BaseModel]) -> set[str]:
    """``model``'s fields that take an object (``dict``, or ``dict | None``)."""
    return {info.alias or name for name, info in model.model_fields.items()
            if any(kind is dict or typing.get_origin(kind) is dict
                   for kind in (info.annotation, *typing.get_args(info.annotation)))}


def object_properties(schema: Mapping[str, Any]) -> set[str]:
    """The properties of a tool's input ``schema`` that take an object."""
    def takes_object(prop: Mapping[str, Any]) -> bool:
        return prop.get("type") == "object" or any(
            takes_object(one) for one in prop.get("anyOf", ()))
    return {name for name, prop in (schema.get("properties") or {}).items()
            if takes_object(prop)}


def _misplaced(errors: Sequence[Any], known: Sequence[str], objects: Collection[str]
               ) -> tuple[str, list[str]]:
    """The object argument and the unknown top-level names that belong inside it."""
    unknown = [str(err["loc"][0]) for err in errors
               if err.get("type") in _UNKNOWN and len(err.get("loc", ())) == 1]
    for into in known:
        if into not in NESTED or into not in objects:
            continue
        fields = NESTED[into][2]
        if fields is None:  # any name may be the upstream's: unless it is a typo of ours
            return into, [name for name in unknown if not _closest(name, known)]
        inside = set(fields())
        return into, [name for name in unknown if name in inside]
    return "", []


def _input(errors: Sequence[Any], name: str) -> Any:
    return next((err.get("input") for err in errors
                 if err.get("type") in _UNKNOWN and tuple(err.get("loc", ())) == (name,)), None)


def _shape(known: Sequence[str], given: Mapping[str, Any] | None, into: str,
           moved: Mapping[str, Any], model: type[BaseModel]) -> str:
    """The call with the ``moved`` names inside ``into``, every value elided (a value
    may be a secret): ``{"name": "…", "config": {"command": "…", "args": […]}}``."""
    if given is not None:
        top = [name for name in given if name in known and name != into]
    else:  # what must be given, at least
        top = [name for name, info in model.model_fields.items()
               if info.is_required() and name != into]
    inner = dict(given.get(into) or {}) if given is not None and isinstance(
        given.get(into), Mapping) else {}
    inner.update(moved)
    parts = [f"{json.dumps(name)}: {_elided(given.get(name) if given else '')}"
             for name in top]
    nested = ", ".join(f"{json.dumps(str(k))}: {_elided(v)}" for k, v in inner.items())
    parts.append(f"{json.dumps(into)}: {{{nested}}}")
    return "{" + ", ".join(parts) + "}"


def _elided(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{…}"
    if isinstance(value, list | tuple):
        return "[…]"
    return '"…"' if isinstance(value, str) else "…"


def _names(names: Sequence[str], quote: Callable[[str], str]) -> str:
    quoted = [quote(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _closest(word: str, known: Sequence[str]) -> str:
    import difflib  # here, not at the top: only a typo needs it (~0.15 MB of RSS)

    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(fields: Sequence[tuple[str, str]]) -> str:
    """``'limit' must be a whole number; 'name' is required``."""
    return "; ".join(f"'{name}' {message}" if name else message for name, message in fields)


class PlainArgumentsTool(FunctionTool):
    """A ``gateway_*`` tool: wrong arguments fail with a plain message naming them."""

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        try:
            return await super().run(arguments)
        except ArgumentsRejected as exc:
            cause = exc.__cause__
            if not isinstance(cause, ValidationError):
                raise
            known = list(self.parameters.get("properties") or {})
            # Masked: an unknown argument's name may be a token the host sent as a key.
            told = mask_text(summary(cause, known=known, given=arguments,
                                     objects=object_properties(self.parameters)))
            listed = f"accepted: {', '.join(known)}" in told  # an unknown one's answer
            raise ToolError(f"invalid arguments for '{self.name}': {told}" + (
                "" if listed else f"; its arguments: {', '.join(known) or 'none'}")) from None
