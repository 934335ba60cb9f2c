"""The ``gateway_*`` tools as hosts list them, without loading the admin operations.

Most sessions never call an admin tool, yet building the 37 of them (FastMCP parses
each adapter; pydantic makes validators, serializers and schemas for it and its result
models) and importing the operations behind them cost ~2.5 MB of RSS for the life of
the process.  ``tools.json`` holds each tool's definition exactly as ``mcp_tools``
builds it (name, description, annotations, input and output schema), generated from
the declarations by ``python -m fast_mcp_gateway.admin.doc``;
``tests/test_admin_listed.py`` fails when it differs from them.

A ``ListedTool`` is one definition as a FastMCP tool.  Its first call builds the
declared tool (``mcp_tools.made_tool``, loading the operations and their models) and
every call runs that one: arguments, errors, the scope check and results are the
declared tool's own.  Lists, search and ``AdminVisibility`` read only the definition.
Every tool is added whatever ``gateway.admin`` says; the mode as of now decides what is
listed and found (``mode_allows``) and what a call may do (``scope.turned_off``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import mcp_types as types
from fastmcp import FastMCP
from fastmcp.tools import Tool, ToolResult
from fastmcp.utilities.tasks import TaskConfig
from pydantic import PrivateAttr

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.scope import PrincipalResolver
from fast_mcp_gateway.config.schema import AdminKind

SPECS = Path(__file__).with_name("tools.json")
"""The admin tools' definitions, in declaration order (generated: see the module doc)."""

Spec = dict[str, Any]


def load_specs(path: Path | None = None) -> list[Spec]:
    """The definitions: ``name``, ``description``, ``annotations`` (as listed),
    ``parameters`` and ``output_schema`` of each admin tool.  Equal parts are one object
    (the result models recur across tools: 0.38 -> 0.09 MB); nothing changes them."""
    seen: dict[tuple[Any, ...], Any] = {}

    def share(value: Any) -> Any:
        if isinstance(value, list):
            value = [share(item) for item in value]
            key: tuple[Any, ...] = ("l", *map(_identity, value))
        elif isinstance(value, str):
            key = ("s", value)
        elif isinstance(value, dict):
            key = ("d", *((k, _identity(v)) for k, v in value.items()))
        else:
            return value
        return seen.setdefault(key, value)

    def obj(pairs: list[tuple[str, Any]]) -> Any:  # inner objects come first
        return share({k: share(v) if isinstance(v, list | str) else v for k, v in pairs})

    specs: list[Spec] = json.loads((path or SPECS).read_bytes(), object_pairs_hook=obj)
    return specs


def _identity(value: Any) -> Any:
    """A shared part by its object, any other JSON value by its type and value (so
    that ``1``, ``1.0`` and ``true`` stay apart)."""
    return id(value) if isinstance(value, dict | list | str) else (type(value), value)


def spec_of(tool: Tool) -> Spec:
    """What ``tools.json`` holds of a built admin tool (what hosts are shown of it)."""
    annotations = tool.annotations
    return {"name": tool.name, "description": tool.description,
            "annotations": None if annotations is None else annotations.model_dump(
                mode="json", by_alias=True, exclude_none=True),
            "parameters": tool.parameters, "output_schema": tool.output_schema}


class ListedTool(Tool):
    """An admin tool listed from its definition; built when it is first called."""

    _build: Callable[[], Tool] = PrivateAttr()
    _built: Tool | None = PrivateAttr(default=None)

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        if self._built is None:
            self._built = self._build()
        return await self._built.run(arguments)


def listed_tool(spec: Spec, build: Callable[[], Tool]) -> ListedTool:
    annotations = spec["annotations"]
    tool = ListedTool(
        name=spec["name"], description=spec["description"], parameters=spec["parameters"],
        output_schema=spec["output_schema"], tags=set(), task_config=TaskConfig(
            mode="forbidden"),
        annotations=None if annotations is None else types.ToolAnnotations.model_validate(
            annotations))
    tool._build = build
    return tool


def is_read_only(spec: Spec) -> bool:
    return bool((spec["annotations"] or {}).get("readOnlyHint"))


def add_listed_tools(server: FastMCP[Any], ctx: AdminContext, principal: PrincipalResolver,
                     registered: Callable[[Tool], None],
                     specs: Sequence[Spec]) -> Iterator[str]:
    """Add every admin tool to ``server`` as a listed tool, each calling its operation
    over ``ctx`` for callers ``principal()`` says have scope ``admin``, and pass each to
    ``registered`` (search holds them).  All of them, whatever ``gateway.admin`` says
    now: what is listed and found follows the current mode (``mode_allows``), so that a
    reload widening it needs no restart; a call checks it again (``scope.turned_off``).
    One per step (yields its name)."""
    for spec in specs:
        registered(server.add_tool(listed_tool(
            spec, functools.partial(_declared_tool, spec["name"], ctx, principal))))
        yield spec["name"]


def mode_allows(ctx: AdminContext, specs: Sequence[Spec]) -> Callable[[str], bool]:
    """Whether ``gateway.admin``, as of now (``ctx.options``, which a reload replaces),
    allows the admin tool of that name: ``full`` all, ``read_only`` the read-only ones,
    ``off`` none.  Lists and search read it on every use; names not in ``specs``: no."""
    kinds: dict[str, AdminKind] = {
        spec["name"]: "read" if is_read_only(spec) else "mutate" for spec in specs}

    def allows(name: str) -> bool:
        kind = kinds.get(name)
        return kind is not None and ctx.options.allows_admin(kind)

    return allows


def _declared_tool(name: str, ctx: AdminContext, principal: PrincipalResolver) -> Tool:
    from fast_mcp_gateway.admin import mcp_tools  # the operations and their models

    return mcp_tools.made_tool(mcp_tools.declared(name), ctx, principal)
