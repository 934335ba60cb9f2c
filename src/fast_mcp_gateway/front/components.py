"""The FastMCP components of the upstream catalog: tools, resources, templates, prompts.

Each is an upstream component under its exposed name, built by the provider once
per catalog generation.  Contract (FastMCP): components execute themselves; here
``run`` / ``read`` / ``render`` capture the host request (``front_of``, in the
request task) and hand the call to the ``CallPipeline`` with a typed encoding.
A tool's calls are made by its ``UpstreamTool``: ``run`` for FastMCP, ``call_raw``
for the stdio express lane with the JSON encoding: one pipeline, two encodings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import mcp_types as types
from fastmcp.exceptions import ResourceError, ToolError
from fastmcp.prompts import Prompt, PromptResult
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.resources.base import ResourceResult
from fastmcp.resources.template import forward_uri
from fastmcp.server.context import Context
from fastmcp.server.dependencies import get_http_request
from fastmcp.tools.base import Tool, ToolResult
from fastmcp.utilities.tasks import TaskConfig
from mcp.shared.dispatcher import ProgressFnT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import AnyUrl, PrivateAttr

from fast_mcp_gateway._compat import current_transport
from fast_mcp_gateway.front.calls import CallPipeline, front_of
from fast_mcp_gateway.front.encodings import JsonTool, TypedPrompt, TypedResource, TypedTool
from fast_mcp_gateway.front.links import LinkMap
from fast_mcp_gateway.front.outcomes import Call
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.relay import FrontCall

NO_TASKS = TaskConfig(mode="forbidden")
# FastMCP's ``to_mcp_*`` override keys that are wire aliases of a model field.
_FIELD_OF = {"inputSchema": "input_schema", "outputSchema": "output_schema", "_meta": "meta"}
# The component attribute FastMCP reads an override from, where it is named otherwise.
_OWN_OF = {"inputSchema": "parameters", "outputSchema": "output_schema", "_meta": "meta"}


def relayed(component: Any, wire: Any, renamed: dict[str, Any],
            overrides: dict[str, Any]) -> Any:
    """What the upstream said (``wire``, with the exposed name or URI in ``renamed``),
    with only the ``overrides`` that really change it.

    FastMCP's ``to_mcp_*`` pass the component's own values back as overrides (its
    name, its URI) and invent the rest (a ``title`` made from the name,
    ``_meta.fastmcp.tags``, ``arguments: []``); the gateway relays the upstream's
    item instead, so that a list says no more than the upstream's own.  An override
    that differs (the legacy wrapping of a non-object output schema) is applied.
    The renamed item is made here, per list build, rather than kept beside the
    upstream's for every component (lists are encoded once per change).
    """
    update = {k: v for k, v in renamed.items() if getattr(wire, k) != v}
    for key, value in overrides.items():
        field = _FIELD_OF.get(key, key)
        if value is getattr(component, _OWN_OF.get(key, key), _FIELD_OF):
            continue
        if value != (renamed[field] if field in renamed else getattr(wire, field, _FIELD_OF)):
            update[field] = value
    return wire.model_copy(update=update) if update else wire

DISCONNECT_POLL = 0.25
"""Seconds between checks that the host of an HTTP call is still connected."""


class HostGone(Exception):
    """The host's HTTP request ended while its call was in flight (nobody to answer)."""


async def _until_disconnected(work: Awaitable[ToolResult]) -> ToolResult:
    """``work``, cancelled (upstream: ``notifications/cancelled``) if the host's
    streamable-HTTP request ends first.

    Uvicorn never cancels an ASGI task, and the SDK cancels a handler on disconnect
    only in some setups (not a 2026 JSON response, not a legacy stateful session, whose
    handler runs in the session's task), so the request is polled.  SSE is left alone:
    its POST is answered 202 at once (it would look disconnected), and a dropped SSE
    stream ends the session, which cancels the call by itself.  So is a 2026-07-28
    request answered as an SSE stream (the gateway never answers JSON): the SDK runs its
    handler beside a disconnect watcher of its own, and a second one would cost a task
    group and two tasks per call for nothing.
    """
    try:
        request = get_http_request()
    except RuntimeError:  # stdio, in-process: no HTTP request to outlive
        return await work
    if (current_transport() != "streamable-http"
            or request.headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS):
        return await work
    done: list[ToolResult] = []
    failed: list[Exception] = []
    async with anyio.create_task_group() as tg:
        async def call() -> None:
            try:  # re-raised as is below, not wrapped in the task group's ExceptionGroup
                done.append(await work)
            except Exception as exc:  # noqa: BLE001 - handed on unchanged
                failed.append(exc)
            tg.cancel_scope.cancel()

        async def watch() -> None:
            # No event exists for it: the ASGI receive channel is only polled.
            while not await request.is_disconnected():  # noqa: ASYNC110
                await anyio.sleep(DISCONNECT_POLL)
            tg.cancel_scope.cancel()

        tg.start_soon(call)
        tg.start_soon(watch)
    if failed:
        raise failed[0]
    if not done:
        raise HostGone("the host disconnected before the call finished; it was cancelled")
    return done[0]


class UpstreamTool:
    """An upstream tool under its exposed name, as both paths call it.

    A plain object (FastMCP components are pydantic models, whose private
    attributes cost microseconds per read): the express lane holds these directly.
    """

    __slots__ = ("annotations", "links", "name", "original", "owner", "pipeline")

    def __init__(self, name: str, owner: Service, original: str,
                 annotations: types.ToolAnnotations | None, pipeline: CallPipeline,
                 links: LinkMap | None = None) -> None:
        self.name, self.owner, self.original = name, owner, original
        self.annotations, self.pipeline, self.links = annotations, pipeline, links

    def route(self) -> tuple[Service, str | None]:
        """The server this call goes to and the rule that says so (``CallPipeline.route``)."""
        return self.pipeline.route(self.name, self.owner, self.original)

    def _call(self, route: tuple[Service, str | None], arguments: Any,
              front: FrontCall) -> Call:
        service, rule = route
        return Call("tool", self.name, service, self.original, arguments, front,
                    self.pipeline.resolve_principal(), self.owner, rule)

    async def run(self, arguments: dict[str, Any], front: FrontCall) -> ToolResult:
        """The full path: typed arguments in, a ``ToolResult`` out (or ``ToolError``)."""
        encoding = TypedTool(self.annotations, self.links)
        try:
            route = self.route()
        except ToolError as exc:  # a broken rule: refused, and recorded so
            return self.pipeline.refuse(self._call((self.owner, None), arguments, front),
                                        encoding, str(exc))
        return await self.pipeline.run(self._call(route, arguments, front), encoding)

    def serves_raw(self) -> tuple[Service, str | None] | None:
        """The route for ``call_raw``, or None when only ``run`` gives the right answer."""
        try:
            upstream, rule = self.route()
        except ToolError:
            return None  # run() reports the broken route
        if not upstream.serves_raw(self.original, self.annotations):
            return None
        return upstream, rule

    async def call_raw(
        self, route: tuple[Service, str | None], params: dict[str, Any], front: FrontCall,
        encode: Callable[[dict[str, Any]], bytes], on_progress: ProgressFnT | None = None,
        ask: Callable[[str, Any], Awaitable[dict[str, Any]]] | None = None,
    ) -> bytes:
        """``run`` for the stdio express lane: ``tools/call`` params in (already under the
        upstream name, ``_meta`` ready), the ``CallToolResult`` as JSON out, made into
        the response by ``encode`` (whose size the call record keeps).

        The same pipeline as ``run`` (``route`` from ``serves_raw``); failures become
        the error results FastMCP makes of ``run``'s ``ToolError``.  With ``ask`` (a
        handshake-era host in front of a 2026-07-28 upstream), an ``input_required``
        result is answered by asking the host and calling again.
        """
        call = self._call(route, params.get("arguments"), front)
        return await self.pipeline.run(
            call, JsonTool(params, self.annotations, encode, on_progress, ask, self.links))


class GatewayTool(Tool):
    """An upstream tool under its exposed name; ``run`` calls the upstream."""

    task_config: TaskConfig = NO_TASKS
    _upstream_tool: UpstreamTool = PrivateAttr()
    _wire: types.Tool | None = PrivateAttr(default=None)  # the upstream's (its name)

    def to_mcp_tool(self, **overrides: Any) -> types.Tool:
        if self._wire is None:
            return super().to_mcp_tool(**overrides)
        return cast(types.Tool, relayed(self, self._wire, {"name": self.name}, overrides))

    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:
        return await _until_disconnected(self._upstream_tool.run(arguments, front_of(context)))


async def _read(pipeline: CallPipeline, upstream: Service, uri: str,
                exposed: str) -> ResourceResult:
    front = front_of()
    call = Call("resource", exposed, upstream, uri, None, front,
                pipeline.resolve_principal(), upstream)
    return await pipeline.run(call, TypedResource())


class GatewayResource(Resource):
    """An upstream resource (or a template read) under its exposed URI."""

    task_config: TaskConfig = NO_TASKS
    _upstream: Service = PrivateAttr()
    _original: str = PrivateAttr()
    _cached: ResourceResult | None = PrivateAttr(default=None)
    _pipeline: CallPipeline = PrivateAttr()
    _wire: types.Resource | None = PrivateAttr(default=None)  # the upstream's (its URI)
    _exposed_uri: str = PrivateAttr(default="")  # as listed (``uri`` is normalised)

    def to_mcp_resource(self, **overrides: Any) -> types.Resource:
        if self._wire is None:
            return super().to_mcp_resource(**overrides)
        if overrides.get("uri") == str(self.uri):  # the normalised form of the exposed URI
            overrides = {k: v for k, v in overrides.items() if k != "uri"}
        return cast(types.Resource,
                    relayed(self, self._wire, {"uri": self._exposed_uri}, overrides))

    async def read(self) -> ResourceResult:  # type: ignore[override]
        if self._cached is not None:
            return self._cached
        return await _read(self._pipeline, self._upstream, self._original, str(self.uri))


class GatewayTemplate(ResourceTemplate):
    """An upstream URI template under its exposed (namespaced) template."""

    task_config: TaskConfig = NO_TASKS
    _upstream: Service = PrivateAttr()
    _original: str = PrivateAttr()
    _pipeline: CallPipeline = PrivateAttr()
    _hidden: str | None = PrivateAttr(default=None)  # hidden by curation: the refusal
    _wire: types.ResourceTemplate | None = PrivateAttr(default=None)  # the upstream's

    def to_mcp_template(self, **overrides: Any) -> types.ResourceTemplate:
        if self._wire is None:
            return super().to_mcp_template(**overrides)
        return cast(types.ResourceTemplate, relayed(
            self, self._wire, {"uri_template": self.uri_template}, overrides))

    async def create_resource(  # type: ignore[override]
        self, uri: str, params: dict[str, Any], context: Context | None = None
    ) -> Resource:
        if self._hidden is not None:
            raise ResourceError(self._hidden)
        backend_uri = forward_uri(self._original, params, uri)
        resource = GatewayResource(
            uri=AnyUrl(uri), name=self.name, title=self.title, description=self.description,
            mime_type=self.mime_type, meta=self.meta,
        )
        resource._upstream, resource._original = self._upstream, backend_uri
        resource._pipeline = self._pipeline
        resource._cached = await _read(self._pipeline, self._upstream, backend_uri, uri)
        return resource


class GatewayPrompt(Prompt):
    """An upstream prompt under its exposed name."""

    task_config: TaskConfig = NO_TASKS
    _upstream: Service = PrivateAttr()
    _original: str = PrivateAttr()
    _pipeline: CallPipeline = PrivateAttr()
    _wire: types.Prompt | None = PrivateAttr(default=None)  # the upstream's (its name)
    _links: LinkMap | None = PrivateAttr(default=None)

    def to_mcp_prompt(self, **overrides: Any) -> types.Prompt:
        if self._wire is None:
            return super().to_mcp_prompt(**overrides)
        return cast(types.Prompt, relayed(self, self._wire, {"name": self.name}, overrides))

    async def render(self, arguments: dict[str, Any] | None = None) -> PromptResult:  # type: ignore[override]
        args = {k: v if isinstance(v, str) else str(v) for k, v in (arguments or {}).items()}
        front = front_of()
        call = Call("prompt", self.name, self._upstream, self._original, args, front,
                    self._pipeline.resolve_principal(), self._upstream)
        return await self._pipeline.run(call, TypedPrompt(self._links))
