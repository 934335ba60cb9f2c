"""Wrong arguments to an admin operation, in words: one mapping for MCP tools and REST.

pydantic's own text ("1 validation error for call[calls] ... Input should be a valid
integer ... For further information visit https://errors.pydantic.dev/...") names its
internals and links its docs.  ``invalid_fields`` turns each error into the argument's
name and what it must be, through the config loader's wording (``config.checks``), and
never echoes the value given (it may be a secret).  ``PlainArgumentsTool`` is the
``gateway_*`` tools' FastMCP tool class: a call with wrong arguments fails with that
text (``ToolError``), as any other admin error does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastmcp.exceptions import ToolError
from fastmcp.exceptions import ValidationError as ArgumentsRejected
from fastmcp.tools import FunctionTool, ToolResult
from pydantic import BaseModel, ValidationError

from fast_mcp_gateway.config.checks import explain, field_names, field_path


def invalid_fields(exc: ValidationError, model: type[BaseModel] = BaseModel,
                   known: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``(field, what is wrong and what it must be)`` for each error of ``exc``.

    ``model`` (the validated model, if any) and ``known`` (the accepted top-level
    names) let an unknown name be matched to the one meant.
    """
    known = list(known) or (field_names(model) if model is not BaseModel else [])
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        kind = err.get("type", "")
        loc = tuple(err.get("loc", ()))
        if kind in ("missing_argument", "missing_keyword_only_argument",
                    "missing_positional_only_argument"):
            message = "is required"
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
            told = describe(invalid_fields(cause, known=known))
            listed = f"accepted: {', '.join(known)}" in told  # an unknown one's answer
            raise ToolError(f"invalid arguments for '{self.name}': {told}" + (
                "" if listed else f"; its arguments: {', '.join(known) or 'none'}")) from None
