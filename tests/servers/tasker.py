"""A FastMCP 4 upstream whose tools run as MCP tasks (the ``io.modelcontextprotocol/tasks``
extension, SEP-2663), for ``tests/test_tasks.py``.

FastMCP 4.2 declares task tools (``@mcp.tool(task=True)``, ``TaskConfig(mode=...)``) but
ships no engine: that is the ``fastmcp-tasks`` package, which pins ``fastmcp`` 4.1.
``TinyTasks`` is the smallest engine on FastMCP's public extension API that speaks the
extension's wire: an opted-in ``tools/call`` of a task tool is answered at once with a
``CreateTaskResult`` (``resultType: "task"``), the tool runs in the background, and
``tasks/get`` (result inlined once completed), ``tasks/update`` and ``tasks/cancel``
follow it.  Tasks live in this process's memory (as with ``fastmcp-tasks``' default
in-memory backend): a restart loses them.

Run as ``tasker.py http <port-file>`` it serves streamable HTTP on 127.0.0.1 (one
process that several gateways reach by URL, ``tests/test_tasks_shared.py``).

Tools: ``crunch`` (``task=True``: optional), ``hold`` (``required``: runs until
``release`` is called with its gate, so tests need no timing), ``release`` and
``pid`` (plain).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from fastmcp import FastMCP
from fastmcp.server.context import Context
from fastmcp.server.extensions import MethodBinding, ServerExtension, ToolCallContinuation
from fastmcp.utilities.tasks import TASKS_EXTENSION_ID, TaskConfig
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequestParams, CallToolResult, RequestParams
from mcp_types.jsonrpc import INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field

GATES: dict[str, anyio.Event] = {}


def _gate(name: str) -> anyio.Event:
    return GATES.setdefault(name, anyio.Event())


class TaskParams(RequestParams):
    model_config = ConfigDict(populate_by_name=True)
    task_id: str = Field(alias="taskId")


class UpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


class Wire(BaseModel):
    """A result given as its wire keys."""

    model_config = ConfigDict(extra="allow")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Task:
    def __init__(self, task_id: str) -> None:
        self.task_id, self.status = task_id, "working"
        self.created = self.updated = _now()
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.runner: asyncio.Future[None] | None = None

    def wire(self, *, detailed: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"taskId": self.task_id, "status": self.status,
                                "createdAt": self.created, "lastUpdatedAt": self.updated,
                                "ttlMs": 60_000, "pollIntervalMs": 20}
        if detailed and self.result is not None:
            data["result"] = self.result
        if detailed and self.error is not None:
            data["error"] = self.error
        return data


class TinyTasks(ServerExtension):
    identifier = TASKS_EXTENSION_ID

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}

    def methods(self) -> Sequence[MethodBinding]:
        versions = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [MethodBinding("tasks/get", TaskParams, self._get, versions),
                MethodBinding("tasks/update", UpdateParams, self._update, versions),
                MethodBinding("tasks/cancel", TaskParams, self._cancel, versions)]

    def _task(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> _Task:
        if self.client_settings(ctx) is None:
            raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                           message="the client did not declare the tasks extension")
        task = self.tasks.get(task_id)
        if task is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Task not found: {task_id}")
        return task

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> Wire:
        return Wire(**self._task(ctx, params.task_id).wire(detailed=True), resultType="complete")

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateParams) -> Wire:
        self._task(ctx, params.task_id)
        return Wire(resultType="complete")

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> Wire:
        task = self._task(ctx, params.task_id)
        if task.status == "working":
            if task.runner is not None:
                task.runner.cancel()
            task.status, task.updated = "cancelled", _now()
        return Wire(resultType="complete")

    async def intercept_tool_call(self, params: CallToolRequestParams, context: Context,
                                  call_next: ToolCallContinuation) -> Any:
        tool = await context.fastmcp.get_tool(params.name)
        if tool is None or not tool.task_config.supports_tasks():
            return await call_next()
        rc = context.request_context
        opted = (rc is not None and rc.protocol_version in MODERN_PROTOCOL_VERSIONS
                 and context.client_extension_settings(TASKS_EXTENSION_ID) is not None)
        if not opted:
            if tool.task_config.mode == "required":
                raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                               message=f"Tool {tool.name!r} requires the tasks extension")
            return await call_next()
        task = _Task(uuid.uuid4().hex)
        self.tasks[task.task_id] = task
        # An asyncio task, not a task group held across the extension's lifespan
        # (FastMCP exits lifespans in another task's cancel scope).
        task.runner = asyncio.ensure_future(self._run(task, tool, dict(params.arguments or {})))
        return Wire(**task.wire(detailed=False), resultType="task")

    async def _run(self, task: _Task, tool: Any, arguments: dict[str, Any]) -> None:
        try:
            result = await tool.run(arguments)
        except Exception as exc:  # noqa: BLE001 - the task's failure
            task.status, task.error = "failed", {"code": -32603, "message": str(exc)}
        else:
            task.result = CallToolResult(
                content=result.content, structured_content=result.structured_content,
            ).model_dump(by_alias=True, mode="json", exclude_none=True)
            task.status = "completed"
        task.updated = _now()



mcp = FastMCP("tasker")
mcp.add_extension(TinyTasks())


@mcp.tool(task=True)
async def crunch(n: int) -> str:
    """Optional task: runs as a task when the client opts in, else inline."""
    return f"crunched {n * 2}"


@mcp.tool(task=TaskConfig(mode="required"))
async def hold(gate: str) -> str:
    """Runs only as a task, until ``release(gate)``."""
    await _gate(gate).wait()
    return f"released {gate}"


@mcp.tool(task=True)
async def sign_in(user: str, api_key: str) -> str:
    """Optional task that fails, its error echoing the key given (as upstreams do)."""
    raise ValueError(f"user {user} could not sign in with key {api_key}")


@mcp.tool
def release(gate: str) -> str:
    _gate(gate).set()
    return f"opened {gate}"


@mcp.tool
def pid() -> int:
    return os.getpid()


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    if sys.argv[1:2] == ["http"]:  # streamable HTTP on 127.0.0.1; its port to argv[2]
        from loopback_http import serve

        anyio.run(serve, mcp.http_app(path="/mcp"), sys.argv[2])
    else:
        mcp.run(show_banner=False, log_level="WARNING")
