"""GatewayProvider: the FastMCP extension point that exposes the upstream catalog.

Contract (FastMCP ``Provider``): ``_list_*`` return the exposed components,
``_get_*`` return one or ``None``.  Components execute themselves: each
``run``/``read``/``render`` captures the host request (``FrontCall``) in the
request task and calls its ``Service`` over the persistent session.

The provider's ``lifespan`` runs the ``UpstreamManager``, so upstreams start and
stop with the FastMCP server, whichever transport serves it.  Components are
built once per catalog generation and looked up by exposed name in O(1).
"""

from __future__ import annotations

import base64
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import mcp_types as types
from fastmcp.exceptions import PromptError, ResourceError, ToolError
from fastmcp.prompts import Message, Prompt, PromptResult
from fastmcp.prompts.base import InputRequiredPromptResult, PromptArgument
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.resources.base import InputRequiredResourceResult, ResourceContent, ResourceResult
from fastmcp.resources.template import forward_uri
from fastmcp.server.context import Context
from fastmcp.server.dependencies import get_context
from fastmcp.server.providers import Provider
from fastmcp.tools.base import InputRequiredToolResult, Tool, ToolResult
from fastmcp.utilities.tasks import TaskConfig
from fastmcp.utilities.versions import VersionSpec
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from pydantic import AnyUrl, PrivateAttr

from fast_mcp_gateway.errors import NoHealthyReplica, RateLimited, UpstreamError, UpstreamTimeout
from fast_mcp_gateway.front.background import background
from fast_mcp_gateway.routing.manager import UpstreamManager, normalize_uri
from fast_mcp_gateway.routing.rules import RouteTable
from fast_mcp_gateway.routing.service import CallPath, Service
from fast_mcp_gateway.store.base import Invocation
from fast_mcp_gateway.telemetry.recorder import (
    Recorder,
    current_trace_id,
    dumps_arguments,
    new_traceparent,
    trace_id_of,
)
from fast_mcp_gateway.upstream.relay import FrontCall

_NO_TASKS = TaskConfig(mode="forbidden")
# Result `_meta` keys that describe the upstream connection, not the result.
_CONNECTION_META = frozenset({
    types.SERVER_INFO_META_KEY, types.PROTOCOL_VERSION_META_KEY,
    types.CLIENT_INFO_META_KEY, types.CLIENT_CAPABILITIES_META_KEY,
})


def _result_meta(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    if not meta:
        return None
    return {k: v for k, v in meta.items() if k not in _CONNECTION_META} or None


MAX_ASK_ROUNDS = 8
R = TypeVar("R")


async def _with_asks_answered(
    upstream: Service,
    front: FrontCall,
    run: Callable[[FrontCall], Awaitable[R | types.InputRequiredResult]],
) -> R | types.InputRequiredResult:
    """Run an upstream operation, bridging 2026-07-28 asks to a handshake-era host.

    A 2026-07-28 upstream asks for input by returning ``InputRequiredResult``.  A host of
    that era answers it itself, so the result goes back as is.  A handshake-era host
    cannot receive one: the gateway asks it with pushed requests (elicitation, sampling,
    roots), then repeats the operation upstream with the answers and the echoed state.
    """
    result = await run(front)
    rounds = 0
    while (isinstance(result, types.InputRequiredResult) and front.session is not None
           and not front.is_modern):
        rounds += 1
        if rounds > MAX_ASK_ROUNDS:
            raise _still_asking(upstream)
        answers: dict[str, Any] = {}
        for key, request in (result.input_requests or {}).items():
            answers[key] = await _ask_host(upstream, front, request)
        front = dataclasses.replace(front, input_responses=answers,
                                    request_state=result.request_state)
        result = await run(front)
    return result


async def _ask_host(upstream: Service, front: FrontCall, request: Any) -> Any:
    try:
        if isinstance(request, types.ElicitRequest):
            return await front.elicit(request.params)
        if isinstance(request, types.CreateMessageRequest):
            return await front.create_message(request.params)
        return await front.list_roots()
    except MCPError as exc:
        raise _ask_failed(upstream, request.method, exc) from exc


def _still_asking(upstream: Service) -> UpstreamError:
    return UpstreamError(upstream.name, f"still asking for input after {MAX_ASK_ROUNDS} "
                                        "rounds; giving up")


def _ask_failed(upstream: Service, method: str, exc: MCPError) -> UpstreamError:
    return UpstreamError(upstream.name, f"asked the host for {method}, which failed: "
                                        f"{exc.error.message}")


def _front(context: Context | None = None) -> FrontCall:
    """The host request, with a W3C ``traceparent`` in its ``_meta`` (continued or new)."""
    try:
        front = FrontCall.from_context(context or get_context())
    except RuntimeError:  # no request context (library call outside a request)
        front = FrontCall(session=None)
    meta = dict(front.meta or {})
    # The host's trace, else the one FastMCP's OpenTelemetry span runs in, else a new one.
    meta["traceparent"] = new_traceparent(trace_id_of(meta.get("traceparent"))
                                          or current_trace_id())
    return dataclasses.replace(front, meta=meta)


class _Record:
    """Times one operation and hands its invocation record to the recorder (if any)."""

    def __init__(self, recorder: Recorder | None, kind: str, exposed: str, service: Service,
                 original: str, front: FrontCall, arguments: Any) -> None:
        self.recorder, self.kind, self.exposed = recorder, kind, exposed
        self.service, self.original = service, original
        self.front, self.arguments = front, arguments
        self.path = CallPath()
        self.rule: str | None = None
        self.started_at, self._t0 = time.time(), time.perf_counter()

    def done(self, status: str, error: str | None = None, response: Any = None,
             size: int | None = None) -> None:
        if self.recorder is None:
            return
        route = [{"replica": r, "outcome": o} for r, o in self.path.attempts]
        self.recorder.record(Invocation(
            id=uuid.uuid4().hex,
            trace_id=trace_id_of((self.front.meta or {}).get("traceparent")) or "",
            client=self.front.client_id, kind=self.kind, exposed=self.exposed,
            server=self.service.name, original=self.original,
            replica=self.path.attempts[-1][0] if self.path.attempts else None,
            route=route or None, retries=self.path.retries,
            started_at=self.started_at, duration_ms=(time.perf_counter() - self._t0) * 1000,
            status=status,
            error=error or ("served a stale result" if self.path.stale else None),
            arguments=dumps_arguments(self.arguments, self.service.config.secrets,
                                      self.recorder.redact_keys),
            rule=self.rule,
            response_bytes=size if size is not None else _size(response),
        ))


def _size(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return len(value.model_dump_json(by_alias=True, exclude_none=True))
    except AttributeError:
        return None


def _status_of(exc: BaseException) -> str:
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, RateLimited | NoHealthyReplica):
        return "rejected"
    return "error"


class GatewayTool(Tool):
    """An upstream tool under its exposed name; ``run`` calls the upstream."""

    task_config: TaskConfig = _NO_TASKS
    _upstream: Service = PrivateAttr()
    _original: str = PrivateAttr()
    _recorder: Recorder | None = PrivateAttr(default=None)
    _provider: GatewayProvider | None = PrivateAttr(default=None)

    def _routed(self) -> tuple[Service, str | None]:
        """The server a route rule sends this tool to (and the rule), or its own."""
        provider = self._provider
        rule = provider.routes.rule_for(self.name) if provider is not None else None
        if rule is None or provider is None:
            return self._upstream, None
        target = provider.manager.services.get(rule.target)
        if target is None or not any(t.name == self._original for t in target.catalog.tools):
            raise ToolError(f"route #{rule.id} ({rule.match} '{rule.pattern}') sends "
                            f"'{self.name}' to server '{rule.target}', which has no tool "
                            f"'{self._original}'")
        return target, f"#{rule.id} {rule.match} '{rule.pattern}' -> {rule.target}"

    async def run(self, arguments: dict[str, Any], context: Context | None = None) -> ToolResult:
        (upstream, rule), original = self._routed(), self._original
        front = _front(context)
        record = _Record(self._recorder, "tool", self.name, upstream, original, front, arguments)
        record.rule = rule
        try:
            result = await _with_asks_answered(
                upstream, front,
                lambda front: upstream.call_tool(original, arguments, front, self.annotations,
                                                 path=record.path),
            )
        except UpstreamError as exc:
            record.done(_status_of(exc), str(exc))
            raise ToolError(str(exc)) from exc
        except MCPError as exc:
            record.done("error", exc.error.message)
            raise ToolError(
                f"upstream '{self._upstream.name}' rejected tools/call '{self._original}': "
                f"{exc.error.message}"
            ) from exc
        if isinstance(result, types.InputRequiredResult):
            record.done("success", None, result)
            return InputRequiredToolResult(result)
        record.done("error" if result.is_error else "success",
                    _first_text(result.content) if result.is_error else None, result)
        return ToolResult(
            content=result.content,
            structured_content=result.structured_content,
            meta=_result_meta(result.meta),
            is_error=bool(result.is_error),
        )


    def serves_raw(self) -> tuple[Service, str | None] | None:
        """The route for ``call_raw``, or None when only ``run`` gives the right answer."""
        try:
            upstream, rule = self._routed()
        except ToolError:
            return None  # run() reports the broken route
        if not upstream.serves_raw(self._original, self.annotations):
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

        Everything ``run`` does to a call happens here too (route rule, rate limits,
        balancing, retries, the call record); failures become the error results
        FastMCP makes of ``run``'s ``ToolError``.  With ``ask`` (a handshake-era host in
        front of a 2026-07-28 upstream), an ``input_required`` result is answered by
        asking the host and calling again, as ``_with_asks_answered`` does.
        """
        upstream, rule = route
        record = _Record(self._recorder, "tool", self.name, upstream, self._original, front,
                         params.get("arguments"))
        record.rule = rule
        try:
            result = await upstream.call_tool_raw(params, front, self.annotations,
                                                  path=record.path, on_progress=on_progress)
            rounds = 0
            while ask is not None and result.get("resultType") == "input_required":
                rounds += 1
                if rounds > MAX_ASK_ROUNDS:
                    raise _still_asking(upstream)
                answers: dict[str, Any] = {}
                for key, request in (result.get("inputRequests") or {}).items():
                    method = request.get("method", "?") if isinstance(request, dict) else "?"
                    try:
                        answers[key] = await ask(method, request.get("params")
                                                 if isinstance(request, dict) else None)
                    except MCPError as exc:
                        raise _ask_failed(upstream, method, exc) from exc
                params = {**params, "inputResponses": answers}
                if result.get("requestState") is not None:
                    params["requestState"] = result["requestState"]
                result = await upstream.call_tool_raw(params, front, self.annotations,
                                                      path=record.path,
                                                      on_progress=on_progress)
        except UpstreamError as exc:
            line = encode(_error_result(str(exc)))
            record.done(_status_of(exc), str(exc), size=len(line))
            return line
        except MCPError as exc:
            line = encode(_error_result(f"upstream '{self._upstream.name}' rejected tools/call "
                                        f"'{self._original}': {exc.error.message}"))
            record.done("error", exc.error.message, size=len(line))
            return line
        problem = _malformed_tool_result(result)
        if problem is not None:
            message = (f"upstream '{self._upstream.name}' returned an invalid tools/call "
                       f"result for '{self._original}': {problem}")
            line = encode(_error_result(message))
            record.done("error", message, size=len(line))
            return line
        if result.get("resultType", "complete") == "complete":
            result.setdefault("isError", False)  # as the typed full path writes it
        meta = result.get("_meta")
        if isinstance(meta, dict) and not _CONNECTION_META.isdisjoint(meta):
            if stripped := _result_meta(meta):
                result["_meta"] = stripped
            else:
                del result["_meta"]
        line = encode(result)
        if result.get("isError"):
            content = result.get("content") or ()
            text = next((c.get("text") for c in content
                         if isinstance(c, dict) and c.get("type") == "text"), None)
            record.done("error", text[:2000] if isinstance(text, str) else None, size=len(line))
        else:
            record.done("success", size=len(line))
        return line


def _malformed_tool_result(result: Any) -> str | None:
    """Why ``result`` is no ``CallToolResult`` / ``InputRequiredResult`` (None: it is one).

    Cheap structural checks decide the common case; anything unusual is judged by the
    models the full path would have parsed it with.
    """
    if isinstance(result, dict):
        content, meta = result.get("content"), result.get("_meta", {})
        if (result.get("resultType", "complete") == "complete"
                and isinstance(content, list) and isinstance(meta, dict)
                and isinstance(result.get("isError", False), bool)
                and isinstance(result.get("structuredContent", {}), dict)
                and all(isinstance(c, dict) and (c.get("type") != "text"
                                                 or isinstance(c.get("text"), str))
                        and isinstance(c.get("type"), str) for c in content)):
            return None
    model: Any = (types.InputRequiredResult
                  if isinstance(result, dict) and result.get("resultType") == "input_required"
                  else types.CallToolResult)
    try:
        model.model_validate(result, by_name=False)
    except ValueError as exc:
        return "; ".join(line.strip() for line in str(exc).splitlines()[:3]) or repr(exc)
    return None


def _error_result(message: str) -> dict[str, Any]:
    """What FastMCP answers when a tool raises ``ToolError(message)``."""
    return {"content": [{"type": "text", "text": message}], "isError": True}


def _resource_result(result: types.ReadResourceResult, what: str) -> ResourceResult:
    if not result.contents:
        raise ResourceError(f"{what} returned no contents")
    contents: list[ResourceContent] = []
    for item in result.contents:
        if isinstance(item, types.TextResourceContents):
            contents.append(ResourceContent(item.text, mime_type=item.mime_type, meta=item.meta))
        else:
            contents.append(
                ResourceContent(
                    base64.b64decode(item.blob), mime_type=item.mime_type, meta=item.meta
                )
            )
    return ResourceResult(contents=contents, meta=_result_meta(result.meta))


async def _read(upstream: Service, uri: str, exposed: str,
                recorder: Recorder | None) -> ResourceResult:
    front = _front()
    record = _Record(recorder, "resource", exposed, upstream, uri, front, None)
    try:
        result = await _with_asks_answered(
            upstream, front, lambda front: upstream.read_resource(uri, front, record.path)
        )
    except UpstreamError as exc:
        record.done(_status_of(exc), str(exc))
        raise ResourceError(str(exc)) from exc
    except MCPError as exc:
        record.done("error", exc.error.message)
        raise
    record.done("success", None, result)
    if isinstance(result, types.InputRequiredResult):
        return InputRequiredResourceResult(result)
    return _resource_result(result, f"upstream '{upstream.name}' resource '{uri}'")


class GatewayResource(Resource):
    """An upstream resource (or a template read) under its exposed URI."""

    task_config: TaskConfig = _NO_TASKS
    _upstream: Service = PrivateAttr()
    _original: str = PrivateAttr()
    _cached: ResourceResult | None = PrivateAttr(default=None)
    _recorder: Recorder | None = PrivateAttr(default=None)

    async def read(self) -> ResourceResult:  # type: ignore[override]
        if self._cached is not None:
            return self._cached
        return await _read(self._upstream, self._original, str(self.uri), self._recorder)


class GatewayTemplate(ResourceTemplate):
    """An upstream URI template under its exposed (namespaced) template."""

    task_config: TaskConfig = _NO_TASKS
    _upstream: Service = PrivateAttr()
    _original: str = PrivateAttr()
    _recorder: Recorder | None = PrivateAttr(default=None)

    async def create_resource(  # type: ignore[override]
        self, uri: str, params: dict[str, Any], context: Context | None = None
    ) -> Resource:
        backend_uri = forward_uri(self._original, params, uri)
        resource = GatewayResource(
            uri=AnyUrl(uri), name=self.name, title=self.title, description=self.description,
            mime_type=self.mime_type, meta=self.meta,
        )
        resource._upstream = self._upstream
        resource._original = backend_uri
        resource._cached = await _read(self._upstream, backend_uri, uri, self._recorder)
        return resource


class GatewayPrompt(Prompt):
    """An upstream prompt under its exposed name."""

    task_config: TaskConfig = _NO_TASKS
    _upstream: Service = PrivateAttr()
    _original: str = PrivateAttr()
    _recorder: Recorder | None = PrivateAttr(default=None)

    async def render(self, arguments: dict[str, Any] | None = None) -> PromptResult:  # type: ignore[override]
        args = {k: v if isinstance(v, str) else str(v) for k, v in (arguments or {}).items()}
        upstream, original = self._upstream, self._original
        front = _front()
        record = _Record(self._recorder, "prompt", self.name, upstream, original, front, args)
        try:
            result = await _with_asks_answered(
                upstream, front,
                lambda front: upstream.get_prompt(original, args or None, front, record.path),
            )
        except UpstreamError as exc:
            record.done(_status_of(exc), str(exc))
            raise PromptError(str(exc)) from exc
        except MCPError as exc:
            record.done("error", exc.error.message)
            raise
        record.done("success", None, result)
        if isinstance(result, types.InputRequiredResult):
            return InputRequiredPromptResult(result)
        return PromptResult(
            messages=[Message(content=m.content, role=m.role) for m in result.messages],
            description=result.description,
            meta=_result_meta(result.meta),
        )


class GatewayProvider(Provider):
    """Exposes the manager's merged catalog to the FastMCP server."""

    def __init__(
        self, manager: UpstreamManager, *, on_listed: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self.manager = manager
        self._on_listed = on_listed or (lambda: None)
        self.recorder: Recorder | None = None  # set by the gateway when calls are logged
        self.routes = RouteTable()  # set by the gateway from the store
        self._generation = -1
        self._tools: dict[str, GatewayTool] = {}
        self._prompts: dict[str, GatewayPrompt] = {}
        self._resources: dict[str, GatewayResource] = {}
        self._templates: dict[str, GatewayTemplate] = {}

    def __repr__(self) -> str:
        return f"GatewayProvider({len(self.manager.services)} servers)"

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with background(self.manager.run):
            yield

    def invalidate(self) -> None:
        """Rebuild the components at the next lookup (e.g. after the recorder changed)."""
        self._generation = -1

    def _sync(self) -> None:
        view = self.manager.view
        if view.generation == self._generation:
            return
        ups = self.manager.services
        tools: dict[str, GatewayTool] = {}
        for name, (origin, t) in view.tools.items():
            tool = GatewayTool(
                name=name, title=t.title, description=t.description,
                parameters=t.input_schema, output_schema=t.output_schema,
                annotations=t.annotations, icons=t.icons, meta=t.meta, execution=t.execution,
            )
            tool._upstream, tool._original = ups[origin.server], origin.original
            tool._recorder, tool._provider = self.recorder, self
            tools[name] = tool
        prompts: dict[str, GatewayPrompt] = {}
        for name, (origin, p) in view.prompts.items():
            prompt = GatewayPrompt(
                name=name, title=p.title, description=p.description, icons=p.icons, meta=p.meta,
                arguments=[
                    PromptArgument(name=a.name, description=a.description,
                                   required=bool(a.required))
                    for a in p.arguments or []
                ],
            )
            prompt._upstream, prompt._original = ups[origin.server], origin.original
            prompt._recorder = self.recorder
            prompts[name] = prompt
        resources: dict[str, GatewayResource] = {}
        for uri, (origin, r) in view.resources.items():
            resource = GatewayResource(
                uri=AnyUrl(uri), name=r.name, title=r.title, description=r.description,
                mime_type=r.mime_type or "text/plain", icons=r.icons,
                annotations=r.annotations, meta=r.meta,
            )
            resource._upstream, resource._original = ups[origin.server], origin.original
            resource._recorder = self.recorder
            resources[normalize_uri(str(resource.uri))] = resource
        templates: dict[str, GatewayTemplate] = {}
        for uri_template, (origin, tp) in view.templates.items():
            template = GatewayTemplate(
                uri_template=uri_template, name=tp.name, title=tp.title,
                description=tp.description, mime_type=tp.mime_type or "text/plain",
                icons=tp.icons, annotations=tp.annotations, meta=tp.meta, parameters={},
            )
            template._upstream, template._original = ups[origin.server], origin.original
            template._recorder = self.recorder
            templates[uri_template] = template
        self._tools, self._prompts = tools, prompts
        self._resources, self._templates = resources, templates
        self._generation = view.generation

    async def _list_tools(self) -> Sequence[Tool]:
        self._on_listed()
        self._sync()
        return list(self._tools.values())

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        self._sync()
        tool = self._tools.get(name)
        if tool is None and ":" in name:
            tool = self._alias(name)
        return tool

    def lane_tool(self, name: str) -> GatewayTool | None:
        """The upstream tool exposed as ``name`` (exact names only), for the express lane."""
        self._sync()
        return self._tools.get(name)

    def _alias(self, name: str) -> GatewayTool | None:
        """Seed-style ``server:tool`` names (original tool name) reach the exposed tool."""
        server, _, original = name.partition(":")
        for exposed, (origin, _) in self.manager.view.tools.items():
            if origin.server == server and origin.original == original:
                return self._tools.get(exposed)
        return None

    async def _list_prompts(self) -> Sequence[Prompt]:
        self._on_listed()
        self._sync()
        return list(self._prompts.values())

    async def _get_prompt(self, name: str, version: VersionSpec | None = None) -> Prompt | None:
        self._sync()
        return self._prompts.get(name)

    async def _list_resources(self) -> Sequence[Resource]:
        self._on_listed()
        self._sync()
        return list(self._resources.values())

    async def _get_resource(self, uri: str, version: VersionSpec | None = None) -> Resource | None:
        self._sync()
        return self._resources.get(uri) or self._resources.get(normalize_uri(uri))

    async def _list_resource_templates(self) -> Sequence[ResourceTemplate]:
        self._sync()
        return list(self._templates.values())

    async def _get_resource_template(
        self, uri: str, version: VersionSpec | None = None
    ) -> ResourceTemplate | None:
        self._sync()
        for template in self._templates.values():
            if template.matches(uri) is not None:
                return template
        return None

    async def get_tasks(self) -> Sequence[Any]:
        return []


def _first_text(content: Sequence[Any]) -> str | None:
    for block in content:
        if isinstance(block, types.TextContent):
            return block.text[:2000]
    return None
