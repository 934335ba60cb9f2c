"""GatewayProvider: the FastMCP extension point that exposes the upstream catalog.

Contract (FastMCP ``Provider``): ``_list_*`` return the exposed components,
``_get_*`` return one or ``None``.  Components (``components.py``) execute
themselves through the provider's ``CallPipeline`` (``calls.py``), the one the
stdio express lane uses too.

The provider's ``lifespan`` runs the ``UpstreamManager``, so upstreams start and
stop with the FastMCP server, whichever transport serves it.  Components are
built once per catalog generation and looked up by exposed name in O(1).

Every list and lookup is for the caller (``pipeline.resolve_principal()``): a
principal restricted to some servers sees only their components, and a lookup of
another server's returns ``None`` (FastMCP's "Unknown tool", nothing disclosed).
The components are shared; only the filtering is per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastmcp.prompts import Prompt
from fastmcp.prompts.base import PromptArgument
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.server.providers import Provider
from fastmcp.tools.base import Tool
from fastmcp.utilities.versions import VersionSpec
from pydantic import AnyUrl

from fast_mcp_gateway.front.background import background
from fast_mcp_gateway.front.calls import CallPipeline
from fast_mcp_gateway.front.components import (
    GatewayPrompt,
    GatewayResource,
    GatewayTemplate,
    GatewayTool,
    UpstreamTool,
)
from fast_mcp_gateway.routing.manager import UpstreamManager, normalize_uri
from fast_mcp_gateway.routing.rules import RouteTable
from fast_mcp_gateway.telemetry.recorder import Recorder

C = TypeVar("C", GatewayPrompt, GatewayResource, GatewayTemplate)


def _visible(server: str, servers: frozenset[str] | None) -> bool:
    return servers is None or server in servers


def _for(components: Iterable[C], servers: frozenset[str] | None) -> list[C]:
    """``components`` of the ``servers`` a caller may see (None: all of them)."""
    if servers is None:
        return list(components)
    return [c for c in components if c._upstream.name in servers]


class GatewayProvider(Provider):
    """Exposes the manager's merged catalog to the FastMCP server."""

    def __init__(
        self, manager: UpstreamManager, *, on_listed: Callable[[], None] | None = None
    ) -> None:
        super().__init__()
        self.manager = manager
        self._on_listed = on_listed or (lambda: None)
        self.pipeline = CallPipeline(manager)
        self._generation = -1
        self._tools: dict[str, GatewayTool] = {}
        self._lane_tools: dict[str, UpstreamTool] = {}
        self._prompts: dict[str, GatewayPrompt] = {}
        self._resources: dict[str, GatewayResource] = {}
        self._templates: dict[str, GatewayTemplate] = {}

    def __repr__(self) -> str:
        return f"GatewayProvider({len(self.manager.services)} servers)"

    @property
    def recorder(self) -> Recorder | None:
        """Where calls are recorded (set by the gateway when calls are logged)."""
        return self.pipeline.recorder

    @recorder.setter
    def recorder(self, recorder: Recorder | None) -> None:
        self.pipeline.recorder = recorder

    @property
    def routes(self) -> RouteTable:
        """The route rules (set by the gateway from the store)."""
        return self.pipeline.routes

    @routes.setter
    def routes(self, routes: RouteTable) -> None:
        self.pipeline.routes = routes

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with background(self.manager.run):
            yield

    def invalidate(self) -> None:
        """Rebuild the components at the next lookup."""
        self._generation = -1

    def _sync(self) -> None:
        view = self.manager.view
        if view.generation == self._generation:
            return
        ups = self.manager.services
        tools: dict[str, GatewayTool] = {}
        lane: dict[str, UpstreamTool] = {}
        for name, (origin, t) in view.tools.items():
            tool = GatewayTool(
                name=name, title=t.title, description=t.description,
                parameters=t.input_schema, output_schema=t.output_schema,
                annotations=t.annotations, icons=t.icons, meta=t.meta, execution=t.execution,
            )
            tool._upstream_tool = lane[name] = UpstreamTool(
                name, ups[origin.server], origin.original, t.annotations, self.pipeline)
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
            prompt._pipeline = self.pipeline
            prompts[name] = prompt
        resources: dict[str, GatewayResource] = {}
        for uri, (origin, r) in view.resources.items():
            resource = GatewayResource(
                uri=AnyUrl(uri), name=r.name, title=r.title, description=r.description,
                mime_type=r.mime_type or "text/plain", icons=r.icons,
                annotations=r.annotations, meta=r.meta,
            )
            resource._upstream, resource._original = ups[origin.server], origin.original
            resource._pipeline = self.pipeline
            resources[normalize_uri(str(resource.uri))] = resource
        templates: dict[str, GatewayTemplate] = {}
        for uri_template, (origin, tp) in view.templates.items():
            template = GatewayTemplate(
                uri_template=uri_template, name=tp.name, title=tp.title,
                description=tp.description, mime_type=tp.mime_type or "text/plain",
                icons=tp.icons, annotations=tp.annotations, meta=tp.meta, parameters={},
            )
            template._upstream, template._original = ups[origin.server], origin.original
            template._pipeline = self.pipeline
            templates[uri_template] = template
        self._tools, self._lane_tools, self._prompts = tools, lane, prompts
        self._resources, self._templates = resources, templates
        self._generation = view.generation

    def _servers(self) -> frozenset[str] | None:
        """The servers the current caller may see (None: every one)."""
        return self.pipeline.resolve_principal().servers

    async def _list_tools(self) -> Sequence[Tool]:
        self._on_listed()
        self._sync()
        servers = self._servers()
        if servers is None:
            return list(self._tools.values())
        return [t for t in self._tools.values() if t._upstream_tool.owner.name in servers]

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        self._sync()
        tool = self._tools.get(name)
        if tool is None and ":" in name:
            tool = self._alias(name)
        if tool is not None and not _visible(tool._upstream_tool.owner.name, self._servers()):
            return None
        return tool

    def lane_tool(self, name: str) -> UpstreamTool | None:
        """The upstream tool exposed as ``name`` (exact names only), for the express lane."""
        self._sync()
        return self._lane_tools.get(name)

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
        return _for(self._prompts.values(), self._servers())

    async def _get_prompt(self, name: str, version: VersionSpec | None = None) -> Prompt | None:
        self._sync()
        prompt = self._prompts.get(name)
        return prompt if prompt is not None and _visible(
            prompt._upstream.name, self._servers()) else None

    async def _list_resources(self) -> Sequence[Resource]:
        self._on_listed()
        self._sync()
        return _for(self._resources.values(), self._servers())

    async def _get_resource(self, uri: str, version: VersionSpec | None = None) -> Resource | None:
        self._sync()
        resource = self._resources.get(uri) or self._resources.get(normalize_uri(uri))
        return resource if resource is not None and _visible(
            resource._upstream.name, self._servers()) else None

    async def _list_resource_templates(self) -> Sequence[ResourceTemplate]:
        self._sync()
        return _for(self._templates.values(), self._servers())

    async def _get_resource_template(
        self, uri: str, version: VersionSpec | None = None
    ) -> ResourceTemplate | None:
        self._sync()
        servers = self._servers()
        for template in self._templates.values():
            if template.matches(uri) is not None:
                return template if _visible(template._upstream.name, servers) else None
        return None

    async def get_tasks(self) -> Sequence[Any]:
        return []
