"""The search-mode meta-tools: ``search_tools``, ``call_tool`` and ``call_tools``.

Their definitions are constants -- they never change with the catalog -- so a host's
prompt cache survives servers coming and going.  ``call_tool`` / ``call_tools``
resolve the exposed name exactly as a direct ``tools/call`` does (hidden tools get
the same refusal) and run the tool's own ``UpstreamTool.run``: the same call
pipeline (route rules, authorization, curation, retries, records), nothing bypassed.

The gateway's own ``gateway_*`` tools are behind search too (server ``gateway``):
found only by callers with scope ``admin`` (``SearchCatalog.caller_is_admin``), and
run by ``call_tool`` as FastMCP would run them, so their own checks (the scope,
``gateway.admin``, restricted inspection) refuse exactly as on a direct call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import mcp_types as types
from fastmcp.exceptions import ToolError
from fastmcp.exceptions import ValidationError as ArgumentsError
from fastmcp.server.context import Context
from fastmcp.tools.base import Tool, ToolResult
from fastmcp.utilities.tasks import TaskConfig
from pydantic import PrivateAttr
from pydantic import ValidationError as PydanticValidationError

from fast_mcp_gateway.front.calls import front_of
from fast_mcp_gateway.front.components import GatewayTool
from fast_mcp_gateway.routing.search import (
    CALL_TOOL,
    CALL_TOOLS,
    MAX_K,
    META_TOOL_NAMES,
    OWN_SERVER,
    SEARCH_TOOL,
    SearchIndex,
    folded,
)

MAX_BATCH = 20
COPIES_LOOKED_AT = 4
"""search_tools ranks k times this many, so that k distinct tools remain once copies
of one tool (one server started under several names) are folded into one card."""
_READ_ONLY = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)


class SearchCatalog(Protocol):
    """What the meta-tools need of the provider."""

    own: dict[str, Tool]
    """The gateway's own tools, by name: every one (the index holds those the current
    ``gateway.admin`` allows; a call of another is refused by the tool, naming it)."""

    def search_index(self) -> SearchIndex: ...

    def caller_servers(self) -> frozenset[str] | None:
        """The servers the current caller may see (None: every one)."""
        ...

    def routed_away(self) -> Callable[[str], bool] | None:
        """Whether a rule routes a tool outside the caller's servers (None: none is)."""
        ...

    def caller_is_admin(self) -> bool:
        """Whether the current caller has scope ``admin`` (finds the gateway's own tools)."""
        ...

    def callable_tool(self, name: str) -> GatewayTool | None:
        """The tool a direct ``tools/call`` of ``name`` would run (None: no such tool)."""
        ...

    def unknown_call(self, kind: str, name: str, arguments: Any = None) -> str:
        """What a host is told for a call of a name it cannot reach (``front/unknown.py``),
        counted in the metrics and recorded."""
        ...



class _MetaTool(Tool):
    task_config: TaskConfig = TaskConfig(mode="forbidden")
    _catalog: SearchCatalog = PrivateAttr()


_CALL_KEYS = ("name", "arguments")
_CALL_FIX = ": put the tool's exposed name in 'name' and its parameters in 'arguments'"


def _only(given: dict[str, Any], keys: tuple[str, ...], what: str, fix: str = "") -> None:
    """Refuse a key ``what`` does not take, as its schema says (hosts rarely check): a
    model's 'args' for 'arguments' was dropped, and the tool ran with no arguments."""
    extra = [key for key in given if key not in keys]
    if extra:
        takes = " and ".join(filter(None, [", ".join(f"'{k}'" for k in keys[:-1]),
                                           f"'{keys[-1]}'"]))
        them = ", ".join(f"{k!r}" for k in extra) + (" is" if len(extra) == 1 else " are")
        raise ToolError(f"{what} takes {takes}; {them} not one of them{fix}")


class SearchTools(_MetaTool):
    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:
        _only(arguments, ("query", "server", "k"), "search_tools")
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError("search_tools needs a 'query': a few words saying what the tool "
                            "should do")
        k = arguments.get("k", 5)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ToolError(f"'k' must be a whole number from 1 to {MAX_K}")
        server = arguments.get("server")
        if server is not None and not isinstance(server, str):
            raise ToolError("'server' must be a server name (text)")
        catalog = self._catalog
        index, visible, own = (catalog.search_index(), catalog.caller_servers(),
                               catalog.caller_is_admin())
        # More than k: copies of one tool on several servers fold into one card.
        hits = index.search(query, k * COPIES_LOOKED_AT, server, visible, own=own,
                            skip=catalog.routed_away())
        if server not in (None, OWN_SERVER) and not hits and server not in (
                known := index.servers(visible, own=own)):
            # A typo found nothing, as a query without a match does: say which it was.
            # (The gateway's own server is named in the tool's description: with the
            # admin tools off, or for a caller without scope admin, it has none.)
            raise ToolError(f"no tools of a server '{server}' to search (no such server, or "
                            f"it is not connected); servers: {', '.join(sorted(known))}; "
                            "or leave 'server' out to search every one")
        cards = [doc.card(copies) for doc, copies in folded(hits, k)]
        return ToolResult(content=json.dumps({"tools": cards}, ensure_ascii=False),
                          structured_content={"tools": cards})


async def _call(catalog: SearchCatalog, name: Any, arguments: Any,
                context: Context | None) -> ToolResult:
    if not isinstance(name, str) or not name:
        raise ToolError("'name' must be the exposed name of a tool (from search_tools)")
    if name in META_TOOL_NAMES:
        raise ToolError(f"'{name}' is a search meta-tool; call it directly")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        # A model often writes the object as JSON text: say so, and what to send.
        got = ("text (JSON written as a string?)" if isinstance(arguments, str)
               else "an array" if isinstance(arguments, list)
               else "true/false" if isinstance(arguments, bool) else "a number")
        raise ToolError(f"'arguments' must be an object of the tool's parameters, got "
                        f"{got}: pass the object itself, as {{\"path\": \"...\"}}, "
                        "not a string holding it")
    tool = catalog.callable_tool(name)
    if tool is not None:
        return await tool._upstream_tool.run(arguments, front_of(context))
    own = catalog.own.get(name)
    if own is None:
        raise ToolError(catalog.unknown_call("tool", name, arguments))
    try:   # its own checks (scope admin, restricted inspection) refuse as on a direct call
        return await own.run(arguments)
    except ToolError:
        raise
    except (ArgumentsError, PydanticValidationError) as exc:
        raise ToolError(f"invalid arguments for '{name}': {exc}") from exc
    except Exception as exc:  # as FastMCP words a direct call's failure (not a batch's end)
        raise ToolError(f"Error calling tool '{name}': {exc}") from exc


class CallTool(_MetaTool):
    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:
        _only(arguments, _CALL_KEYS, "call_tool", _CALL_FIX)
        return await _call(self._catalog, arguments.get("name"), arguments.get("arguments"),
                           context)


class CallTools(_MetaTool):
    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:
        _only(arguments, ("calls",), "call_tools")
        calls = arguments.get("calls")
        if not isinstance(calls, list) or not 1 <= len(calls) <= MAX_BATCH:
            raise ToolError(f"'calls' must be a list of 1 to {MAX_BATCH} "
                            "{name, arguments} objects")
        results: list[dict[str, Any]] = [{} for _ in calls]

        async def one(i: int, spec: Any) -> None:
            name = spec.get("name") if isinstance(spec, dict) else None
            try:
                if not isinstance(spec, dict):
                    raise ToolError("each call must be an object {name, arguments}")
                _only(spec, _CALL_KEYS, "each call", _CALL_FIX)
                result = await _call(self._catalog, name, spec.get("arguments"), context)
            except ToolError as exc:
                results[i] = {"name": name, "isError": True, "error": str(exc)}
                return
            entry: dict[str, Any] = {"name": name, "isError": bool(result.is_error),
                                     "content": [
                block.model_dump(mode="json", by_alias=True, exclude_none=True)
                for block in result.content]}
            if result.structured_content is not None:
                entry["structuredContent"] = result.structured_content
            results[i] = entry

        async with anyio.create_task_group() as tg:
            for i, spec in enumerate(calls):
                tg.start_soon(one, i, spec)
        return ToolResult(content=json.dumps({"results": results}, ensure_ascii=False),
                          structured_content={"results": results})


_ARGS_SCHEMA = {"type": "object", "description": "the tool's arguments, as its inputSchema "
                                                 "(from search_tools) says",
                "additionalProperties": True}


def meta_tools(catalog: SearchCatalog) -> dict[str, Tool]:
    """The three meta-tools, bound to ``catalog``; their definitions are constants."""
    search = SearchTools(
        name=SEARCH_TOOL, title="Search tools",
        description="Find the tools (of every connected server) that can do a task. Returns "
                    "cards with each tool's exact name, server, description and input schema; "
                    f"then call one with {CALL_TOOL}. The gateway's own admin tools are "
                    f"under server '{OWN_SERVER}'.",
        parameters={"type": "object", "properties": {
            "query": {"type": "string",
                      "description": "what you want to do, in a few words"},
            "server": {"type": "string",
                       "description": "only tools of this server (optional)"},
            "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5,
                  "description": "how many tools to return"},
        }, "required": ["query"], "additionalProperties": False},
        annotations=_READ_ONLY,
    )
    call = CallTool(
        name=CALL_TOOL, title="Call a tool",
        description=f"Call a tool found with {SEARCH_TOOL}, by its exact name, with arguments "
                    "matching its input schema. Returns the tool's own result.",
        parameters={"type": "object", "properties": {
            "name": {"type": "string", "description": "the tool's name, from search_tools"},
            "arguments": _ARGS_SCHEMA,
        }, "required": ["name"], "additionalProperties": False},
    )
    batch = CallTools(
        name=CALL_TOOLS, title="Call several tools",
        description=f"Call up to {MAX_BATCH} tools in parallel; returns one result per call, "
                    "in order (a failed call does not stop the others).",
        parameters={"type": "object", "properties": {
            "calls": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": {
                "type": "object", "properties": {
                    "name": {"type": "string"}, "arguments": _ARGS_SCHEMA},
                "required": ["name"], "additionalProperties": False}},
        }, "required": ["calls"], "additionalProperties": False},
    )
    tools: dict[str, Tool] = {}
    for tool in (search, call, batch):
        tool._catalog = catalog
        tools[tool.name] = tool
    return tools
