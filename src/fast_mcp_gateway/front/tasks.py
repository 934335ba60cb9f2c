"""MCP tasks through the gateway: the ``io.modelcontextprotocol/tasks`` extension (SEP-2663).

What the installed stack has (fastmcp 4.2, mcp 2.3): tasks left the core protocol at
2026-07-28 and continue as this extension, negotiated per request (the client repeats
``extensions`` in each request's ``_meta`` client capabilities) and only on 2026-07-28
wires; the 2025-11-25 task methods (``tasks/result``, ``tasks/list``, ``params.task``)
exist in the SDK as types only and are never dispatched.  So a task is relayed when
the host is a 2026-07-28 host that opted in, and the server's session is 2026-07-28:

1. ``GatewayTasks.intercept_tool_call`` (FastMCP's extension hook, after its own
   lookup, before the tool body) takes such a ``tools/call`` through the one
   ``CallPipeline`` (route rule, principal, curation, rate limits, balancing, records)
   with the ``TaskCall`` encoding: the upstream request carries the host's opt-in.
   An upstream that answers ``resultType: "task"`` created a task on the replica that
   answered; the host gets the same answer under a gateway task id (``gwt-`` + 144
   random bits), kept in ``TaskBook`` (bounded, expiring with the upstream's
   ``ttlMs``) with the server, the replica, the upstream's id and the caller.  An
   upstream that answers inline (its choice) answers as any call.
2. ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` from the host are answered
   for the caller that created the task only (another caller, an expired or made-up
   id: "Unknown task", nothing disclosed), still within the caller's servers, by
   the replica that owns the task, with the ids swapped both ways and links in an
   inlined result exposed as in any result.
3. A replica that is gone (not connected, or restarted and no longer knowing the
   task: in-memory task engines lose them) turns the task into a ``failed`` one
   whose error says so; ``tasks/get`` answers that from then on.

Calls that stay plain calls: a host that did not opt in, a handshake-era host (its
SDK strips extension capabilities), a server whose session is handshake-era (tools
that require tasks are hidden there, ``provider.py``), and MRTR continuations.  The
express lanes leave opted-in calls of 2026-07-28 servers to this path (``takes_tasks``).
Without shared keys, tasks live in one gateway process: behind several instances, a
host's ``tasks/*`` must reach the instance that created the task.  With
``MCP_GATEWAY_REQUEST_STATE_KEYS`` the gateway task id is a sealed token any instance
opens and serves from its own replica of the server (same URL); a stdio server's task
stays with its instance (``task_ids.py``).  ``TaskBook`` and ``TaskRecord``:
``task_book.py``.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import mcp_types as types
from fastmcp.exceptions import ToolError
from fastmcp.server.context import Context
from fastmcp.server.extensions import MethodBinding, ServerExtension, ToolCallContinuation
from fastmcp.tools.base import ToolResult
from fastmcp.utilities.tasks import TASKS_EXTENSION_ID
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field

from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.calls import Answer, actor_name, front_of
from fast_mcp_gateway.front.encodings import JsonTool, TypedTool
from fast_mcp_gateway.front.outcomes import Call, Failure
from fast_mcp_gateway.front.task_book import TASK_PREFIX, TaskBook, TaskRecord, owner_of
from fast_mcp_gateway.front.task_ids import TaskIds, adopt
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.store import Invocation
from fast_mcp_gateway.store.stats import TASK_END
from fast_mcp_gateway.telemetry.arguments import (
    mask_argument_values,
    mask_echo,
    redact_arguments,
)
from fast_mcp_gateway.telemetry.tracing import trace_id_of
from fast_mcp_gateway.upstream.lifting import unlifted
from fast_mcp_gateway.upstream.replica import Upstream

if TYPE_CHECKING:
    from fast_mcp_gateway.front.components import UpstreamTool
    from fast_mcp_gateway.front.provider import GatewayProvider

__all__ = ["UNMASKABLE", "WITHHELD", "GatewayTasks", "TaskCall", "TaskIds", "opted_in",
           "takes_tasks", "task_end", "task_start"]

TASKS = TASKS_EXTENSION_ID
_VERSIONS = frozenset(MODERN_PROTOCOL_VERSIONS)
# Result `_meta` keys that describe the upstream connection (the runner stamps the
# gateway's own serverInfo where none is given).
_CONNECTION_META = frozenset({
    types.SERVER_INFO_META_KEY, types.PROTOCOL_VERSION_META_KEY,
    types.CLIENT_INFO_META_KEY, types.CLIENT_CAPABILITIES_META_KEY,
})


def opted_in(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The host's tasks-extension settings in a request's ``_meta`` (None: not opted in)."""
    caps = meta.get(types.CLIENT_CAPABILITIES_META_KEY) if meta else None
    extensions = caps.get("extensions") if isinstance(caps, dict) else None
    settings = extensions.get(TASKS) if isinstance(extensions, dict) else None
    return dict(settings) if isinstance(settings, dict) else None


def takes_tasks(meta: Mapping[str, Any] | None, service: Service) -> bool:
    """Whether a host's ``tools/call`` (its ``_meta``) of ``service``'s tool may become a
    task: the express lanes leave those to the full path."""
    return service.is_modern and opted_in(meta) is not None


class Wire(BaseModel):
    """A result given by its wire keys (the runner dumps them as they are)."""

    model_config = ConfigDict(extra="allow")


class TaskParams(types.RequestParams):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    task_id: str = Field(alias="taskId")


def _without_connection_meta(data: dict[str, Any]) -> dict[str, Any]:
    meta = data.get("_meta")
    if isinstance(meta, dict) and not _CONNECTION_META.isdisjoint(meta):
        rest = {k: v for k, v in meta.items() if k not in _CONNECTION_META}
        data = {k: v for k, v in data.items() if k != "_meta"}
        if rest:
            data["_meta"] = rest
    return data


class TaskCall(JsonTool):
    """``tools/call`` of an opted-in 2026-07-28 host: JSON to the upstream (with the
    host's opt-in), a gateway task handle or the typed full path's answer back."""

    def __init__(self, params: dict[str, Any], tool: UpstreamTool, book: TaskBook,
                 on_progress: Any = None, ids: TaskIds | None = None) -> None:
        super().__init__(params, tool.annotations, _not_encoded, on_progress, None, tool.links)
        self.book, self.ids = book, ids
        self.redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
        self.served: list[Upstream] = []

    async def send(self, call: Call) -> dict[str, Any]:
        params = self.params
        if call.arguments is not params.get("arguments"):  # curated
            params = self.params = {**params, "arguments": call.arguments}
        return await call.service.call_tool_raw(params, call.front, self.annotations,
                                                path=call.path, on_progress=self.on_progress,
                                                served=self.served)

    def finish(self, call: Call, result: dict[str, Any]) -> Answer[Any]:
        if result.get("resultType") == "task":
            return self._task(call, result)
        model: Any = (types.InputRequiredResult if result.get("resultType") == "input_required"
                      else types.CallToolResult)
        try:
            # Decoded: a parked call an express lane began has its long strings lifted.
            typed = model.model_validate(unlifted(result), by_name=False)
        except ValueError as exc:
            message = (f"upstream '{call.service.name}' returned an invalid tools/call result "
                       f"for '{call.original}': {str(exc).splitlines()[0]}")
            return self.fail(call, Failure("error", message, message, exc))
        return TypedTool(self.annotations, self.links).finish(call, typed)

    def fail(self, call: Call, failure: Failure) -> Answer[Any]:
        return TypedTool(self.annotations, self.links).fail(call, failure)

    def _task(self, call: Call, result: dict[str, Any]) -> Answer[Any]:
        upstream_id = result.get("taskId")
        if not isinstance(upstream_id, str) or not self.served:
            message = (f"upstream '{call.service.name}' answered a task for '{call.original}' "
                       "without a taskId")
            return self.fail(call, Failure("error", message, message, ValueError(message)))
        replica, keep = self.served[-1], self.book.keep(result.get("ttlMs"))
        record = TaskRecord(TASK_PREFIX + secrets.token_urlsafe(18), upstream_id,
                            call.service.name, call.exposed, replica, replica.connects,
                            owner_of(call.principal), self.book.expiry_in(keep),
                            str(result.get("createdAt") or _now()),
                            started=task_start(call, replica.label), t0=call.t0,
                            arguments=call.arguments)
        if self.ids is not None:  # shared keys: any instance may serve it (task_ids.py)
            record.task_id = self.ids.id_for(record, keep, redact_arguments(
                call.arguments, self.redact_keys) != call.arguments)
        self.book.add(record)
        wire = _without_connection_meta({**result, "taskId": record.task_id})
        return Answer("success", output=Wire(**wire), size=len(json.dumps(wire)))


def task_start(call: Call, replica: str) -> Invocation:
    """What the record of a task's end keeps of the call that created it (its status,
    duration and error are the end's: ``task_end``)."""
    return Invocation(
        id=secrets.token_hex(16), trace_id=trace_id_of((call.front.meta or {}).get(
            "traceparent")) or "", client=actor_name(call.principal, call.front),
        client_kind=call.principal.record_kind,
        kind=TASK_END, exposed=call.exposed, server=call.service.name, original=call.original,
        replica=replica, started_at=call.started_at, duration_ms=0.0, status="success",
        rule=call.rule)


def task_end(start: Invocation, t0: float, task: dict[str, Any]) -> Invocation | None:
    """The record of a task's end (kind ``task``: its whole run, from the call that
    created it at ``t0``), or None while ``task`` (a ``tasks/*`` answer) is not a
    terminal status.
    Statistics leave it out: they count requests, and the call that created the task
    was counted (``store/stats.py``)."""
    status, error = task.get("status"), None
    if status == "completed":
        result = task.get("result")
        status = "success"
        if isinstance(result, dict) and result.get("isError"):
            status = "error"
            error = next((c["text"] for c in result.get("content") or []
                          if isinstance(c, dict) and isinstance(c.get("text"), str)),
                         "the task's result is an error")
    elif status == "failed":
        failure = task.get("error")
        status, error = "error", str(
            (failure.get("message") if isinstance(failure, dict) else None)
            or task.get("statusMessage") or "the task failed")
    elif status != "cancelled":
        return None
    return dataclasses.replace(start, status=status, error=error,
                               duration_ms=(time.perf_counter() - t0) * 1000)


UNMASKABLE = ("the task's error text is not recorded: this gateway instance did not create "
              "the task, so it cannot mask the credential-like arguments the text may echo")


WITHHELD = ("the task's error text is withheld: this gateway instance did not create the "
            "task, so it cannot mask the credential-like arguments the text may echo")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _not_encoded(result: dict[str, Any]) -> bytes:  # pragma: no cover - never called
    raise AssertionError("TaskCall answers typed, it encodes no line")


class GatewayTasks(ServerExtension):
    """The gateway's side of the tasks extension (see the module docstring)."""

    identifier = TASKS

    def __init__(self, provider: GatewayProvider, book: TaskBook | None = None) -> None:
        self.provider = provider
        self.book = book or TaskBook()
        # Shared keys (``Gateway`` sets them): ids any instance serves (task_ids.py).
        self.ids: TaskIds | None = None

    def methods(self) -> Sequence[MethodBinding]:
        return [MethodBinding("tasks/get", TaskParams, self._get, _VERSIONS),
                MethodBinding("tasks/update", TaskParams, self._update, _VERSIONS),
                MethodBinding("tasks/cancel", TaskParams, self._cancel, _VERSIONS)]

    # -- creating a task -----------------------------------------------------------------

    async def intercept_tool_call(self, params: types.CallToolRequestParams, context: Context,
                                  call_next: ToolCallContinuation) -> ToolResult | BaseModel:
        rc = context.request_context
        settings = context.client_extension_settings(TASKS)
        if settings is None or rc is None or rc.protocol_version not in _VERSIONS:
            return await call_next()
        tool = self.provider.callable_tool(params.name)
        if tool is None:
            return await call_next()
        upstream = tool._upstream_tool
        try:
            route = upstream.route()
        except ToolError:
            return await call_next()  # the full path words the broken route
        front = front_of(context)
        if not route[0].is_modern or front.input_responses is not None \
                or front.request_state is not None:
            # A handshake-era session has no tasks (the call runs inline, which the
            # extension lets a server decide); an MRTR continuation is a plain call.
            return await call_next()
        meta = {k: v for k, v in (front.meta or {}).items() if k != "progressToken"}
        meta[types.CLIENT_CAPABILITIES_META_KEY] = {"extensions": {TASKS: settings}}
        body: dict[str, Any] = {"name": upstream.original, "_meta": meta}
        if params.arguments is not None:
            body["arguments"] = params.arguments
        on_progress = front.progress if (front.meta or {}).get("progressToken") is not None \
            else None
        pipeline = upstream.pipeline
        call = Call("tool", upstream.name, route[0], upstream.original, params.arguments, front,
                    pipeline.resolve_principal(), upstream.owner, route[1])
        encoding = TaskCall(body, upstream, self.book, on_progress, self.ids)
        if pipeline.recorder is not None:
            encoding.redact_keys = pipeline.recorder.redact_keys
        result: ToolResult | BaseModel = await pipeline.run(call, encoding)
        return result

    # -- following one ------------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams
                   ) -> dict[str, Any]:
        record, settings = await self._owned(ctx, params.task_id)
        if record.lost is None:
            reply = await self._send(record, "tasks/get", {}, settings)
            if reply is not None:
                return self._for_host(record, reply)
        return self._failed(record)

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskParams
                      ) -> dict[str, Any]:
        record, settings = await self._owned(ctx, params.task_id)
        extra = {k: v for k, v in (params.model_extra or {}).items()}
        return await self._settle(record, "tasks/update", extra, settings)

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams
                      ) -> dict[str, Any]:
        record, settings = await self._owned(ctx, params.task_id)
        return await self._settle(record, "tasks/cancel", {}, settings)

    async def _settle(self, record: TaskRecord, method: str, extra: dict[str, Any],
                      settings: dict[str, Any]) -> dict[str, Any]:
        if record.lost is None:
            reply = await self._send(record, method, extra, settings)
            if reply is not None:
                return self._for_host(record, reply)
        self._failed(record)  # its end is recorded, as a tasks/get would show it
        raise MCPError(code=INVALID_PARAMS,
                       message=f"Task '{record.task_id}' has failed: {record.lost}")

    async def _owned(self, ctx: ServerRequestContext[Any, Any], task_id: str
                     ) -> tuple[TaskRecord, dict[str, Any]]:
        """The caller's task ``task_id`` and the caller's opt-in, or the error to answer.
        A portable id this book lacks (another instance's task, or this one's before a
        restart) is adopted once its caller is checked (``task_ids.adopt``)."""
        settings = self.client_settings(ctx)
        if settings is None:
            raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY, message=(
                f"this request targets the tasks extension ({TASKS}); declare it in the "
                "request's _meta client capabilities (extensions)"),
                data={"requiredCapabilities": {"extensions": {TASKS: {}}}})
        record = self.book.get(task_id)
        principal = self.provider.pipeline.resolve_principal()
        ids = self.ids
        claims = ids.open(task_id) if record is None and ids is not None else None
        if claims is not None and ids is not None and claims.owner == owner_of(principal) \
                and principal.has("tools") and principal.may_use(claims.server):
            record = await adopt(task_id, claims, self.provider.manager.services.get(
                claims.server), self.book, front_of(), ids.instance)
        if record is None or record.owner != owner_of(principal) or not principal.has("tools") \
                or not principal.may_use(record.server):
            # Worded alike for every case: another caller's task is not disclosed.
            raise MCPError(code=INVALID_PARAMS, message=(
                f"Unknown task: {task_id!r}. This gateway holds no such task for this caller: "
                "it expired, another caller or another gateway instance created it, or the "
                "id is not one this gateway gave out"))
        return record, settings

    async def _send(self, record: TaskRecord, method: str, extra: dict[str, Any],
                    settings: dict[str, Any]) -> dict[str, Any] | None:
        """The owning replica's answer, or None when the task is lost (``record.lost``
        says why); an upstream's error response is raised as it came."""
        replica = record.replica
        params = {**extra, "taskId": record.upstream_id,
                  "_meta": {types.CLIENT_CAPABILITIES_META_KEY: {"extensions": {TASKS: settings}}}}
        try:
            return await replica.request_raw(method, params, front_of())
        except UpstreamError as exc:
            record.lost = (f"the upstream replica '{replica.label}' of server "
                           f"'{record.server}' that runs this task is unreachable ({exc}); "
                           "the task's state lives there")
        except MCPError as exc:
            if replica.connects == record.connects:
                error = exc.error
                raise MCPError(code=error.code, data=error.data, message=error.message.replace(
                    record.upstream_id, record.task_id)) from None
            record.lost = (f"the upstream replica '{replica.label}' of server "
                           f"'{record.server}' restarted after the task was created and no "
                           f"longer knows it ({exc.error.message.replace(record.upstream_id, '')})")
        return None

    def _for_host(self, record: TaskRecord, reply: dict[str, Any]) -> dict[str, Any]:
        self._record_end(record, reply)
        reply = self._masked(record, _without_connection_meta(reply))
        if "taskId" in reply:
            reply["taskId"] = record.task_id
        result = reply.get("result")
        if isinstance(result, dict):
            result = reply["result"] = _without_connection_meta(result)
            links = self.provider.links
            if links is not None:
                links.json_blocks(record.server, result.get("content"))
        return reply

    def _masked(self, record: TaskRecord, reply: dict[str, Any]) -> dict[str, Any]:
        """``reply`` with the texts an upstream's failure may echo its input in (a failed
        task's ``statusMessage`` and error, a completed one's ``isError`` text blocks)
        masked as a direct call's error is (``mask_echo`` under ``redact_keys``); the
        host got them whole (fidelity15).  A task adopted from another instance lacks
        its call's arguments: such a text is replaced, as its record's is."""
        def mask(text: str) -> str:
            if record.unmaskable:
                return WITHHELD
            return mask_echo(text, record.arguments, self.provider.manager.redact_keys)

        if reply.get("status") == "failed":
            if isinstance(reply.get("statusMessage"), str):
                reply["statusMessage"] = mask(reply["statusMessage"])
            error = reply.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                reply["error"] = {**error, "message": mask(error["message"])}
        result = reply.get("result")
        if isinstance(result, dict) and result.get("isError") \
                and isinstance(result.get("content"), list):
            result["content"] = [
                {**block, "text": mask(block["text"])}
                if isinstance(block, dict) and isinstance(block.get("text"), str) else block
                for block in result["content"]]
        return reply

    def _failed(self, record: TaskRecord) -> dict[str, Any]:
        failed = {"taskId": record.task_id, "status": "failed", "createdAt": record.created,
                  "lastUpdatedAt": _now(), "ttlMs": None, "statusMessage": record.lost,
                  "error": {"code": INTERNAL_ERROR, "message": record.lost},
                  "resultType": "complete"}
        self._record_end(record, failed)
        return failed

    def _record_end(self, record: TaskRecord, task: dict[str, Any]) -> None:
        """The first answer that shows the task ended is recorded, once (``task_end``)."""
        recorder = self.provider.pipeline.recorder
        if record.ended is None and record.started is not None and recorder is not None:
            ended = task_end(record.started, record.t0, task)
            if ended is not None:
                if ended.error and record.unmaskable:
                    ended = dataclasses.replace(ended, error=UNMASKABLE)
                elif ended.error:  # an upstream's error may echo its input, as for calls
                    ended = dataclasses.replace(ended, error=mask_argument_values(
                        ended.error, record.arguments, recorder.redact_keys))
                # (The arguments stay while the task is known: each later answer
                # showing the end is masked with them, ``_masked``.)
                record.ended = ended
                recorder.record(ended)
