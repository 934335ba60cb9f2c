"""What a host is told when a request's parameters do not fit the MCP schema.

The MCP SDK answers such a request with a bare ``-32602 "Invalid request parameters"``
(``data: ""``): a host that sent a tool's arguments as a list, a number as a tool's
name or no ``uri`` to ``resources/read`` could not tell what to change, where the same
request sent to a server directly (a TypeScript-SDK server, for one) names the field.
``NamedInvalidParams``, an SDK server middleware, words the answer instead: the method,
each offending parameter's path and what was wrong with it, and what to do.  The code
stays ``-32602``.  The values sent are never quoted (they may hold secrets): only the
JSON type of a value that had the wrong one.  Only the request's own validation (a
``...Request`` or ``...Params`` model, as the SDK checks them) is worded so: another
``ValidationError`` a handler lets out (a result's) is not the host's parameters, and
keeps the SDK's answer.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import ValidationError

from fast_mcp_gateway.config.json_text import json_kind

_SHOWN = 5  # problems named at most


def describe(method: str, error: ValidationError) -> tuple[str, list[dict[str, str]]]:
    """The message for ``method``'s parameters failing ``error``, and its problems as
    ``{"path", "problem"}`` items (the error's ``data``)."""
    problems: list[dict[str, str]] = []
    for item in error.errors(include_url=False, include_context=False):
        path = ".".join(str(part) for part in item["loc"]) or "params"
        if not path.startswith("params"):
            path = f"params.{path}"
        problem = str(item["msg"])
        if str(item["type"]).endswith("_type"):  # a value of the wrong JSON type
            problem = f"{problem} (got {json_kind(item.get('input'))})"
        problems.append({"path": path, "problem": problem})
    named = "; ".join(f"{p['path']}: {p['problem']}" for p in problems[:_SHOWN])
    more = f"; ... ({len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    message = (f"Invalid parameters for {method}: {named}{more}. Send the request again "
               f"with parameters as the MCP specification defines {method}'s")
    return message, problems


class NamedInvalidParams:
    """Turns the SDK's unworded ``ValidationError`` of a request's parameters into an
    ``MCPError`` (``-32602``) that names them; every other outcome passes as is."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any],
                      call_next: CallNext) -> HandlerResult:
        try:
            return await call_next(ctx)
        except ValidationError as exc:
            if ctx.request_id is None or not exc.title.endswith(("Request", "Params")):
                raise  # a notification (nothing to answer), or not the parameters
            message, problems = describe(ctx.method, exc)
            raise MCPError(code=INVALID_PARAMS, message=message,
                           data={"method": ctx.method, "errors": problems}) from exc
