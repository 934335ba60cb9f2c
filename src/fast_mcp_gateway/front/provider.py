"""GatewayProvider: the FastMCP extension point that exposes the upstream catalog.

Contract (FastMCP ``Provider``): ``_list_*`` return the exposed components,
``_get_*`` return one or ``None``.  Components (``components.py``) execute
themselves through the provider's ``CallPipeline`` (``calls.py``), the one the
stdio express lane uses too.

The provider's ``lifespan`` runs the ``UpstreamManager``, so upstreams start and
stop with the FastMCP server, whichever transport serves it (after ``before_stop``:
the gateway's bounded wait for admin operations in flight).  Components are made
(``factory.py``) once per catalog generation and looked up by exposed name in O(1),
except tools: their FastMCP components (~2 KB each) are made when FastMCP needs one
(a lookup keeps it; a list through FastMCP makes them for that list only), while the
express lane and the list cache work from ``UpstreamTool`` and the upstream's items.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Container,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import mcp_types as types
from fastmcp.prompts import Prompt
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.server.providers import Provider
from fastmcp.tools.base import Tool
from fastmcp.utilities.versions import VersionSpec
from pydantic import AnyUrl

from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.config.schema import InvalidServer
from fast_mcp_gateway.front.background import Failed, background
from fast_mcp_gateway.front.calls import CallPipeline
from fast_mcp_gateway.front.components import (
    GatewayPrompt,
    GatewayResource,
    GatewayTemplate,
    GatewayTool,
    UpstreamTool,
)
from fast_mcp_gateway.front.factory import (
    prompt_component,
    resource_component,
    template_component,
    tool_component,
)
from fast_mcp_gateway.front.instructions import gateway_instructions
from fast_mcp_gateway.front.links import LinkMap
from fast_mcp_gateway.front.outcomes import Call
from fast_mcp_gateway.front.profiles import ActiveProfile, request_profile
from fast_mcp_gateway.front.results import ResultLimits
from fast_mcp_gateway.front.unknown import TASK_REASON, Kind
from fast_mcp_gateway.front.unknown_answers import unknown_answer
from fast_mcp_gateway.routing.curation import read_refusal, task_required
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.routing.naming import Origin
from fast_mcp_gateway.routing.search import META_TOOL_NAMES, OWN_SERVER, SearchDoc, SearchIndex
from fast_mcp_gateway.routing.view import normalize_uri
from fast_mcp_gateway.routing.waiting import until_offered

C = TypeVar("C", GatewayPrompt, GatewayResource, GatewayTemplate)
logger = logging.getLogger(__name__)

def _first(item: tuple[str, Any]) -> str:
    # Lists in name order: the same bytes whatever order upstreams connected (or were
    # configured, or added) in: hosts' prompt caches key on them.
    return item[0]


async def _nothing() -> None:
    return None


def _visible(server: str, servers: frozenset[str] | None) -> bool:
    return servers is None or server in servers


def _for(components: Iterable[C], servers: frozenset[str] | None) -> list[C]:
    """``components`` of the ``servers`` a caller may see (None: all of them)."""
    if servers is None:
        return list(components)
    return [c for c in components if c._upstream.name in servers]


class GatewayProvider(Provider):
    """Exposes the manager's merged catalog to the FastMCP server."""

    def __init__(self, manager: UpstreamManager, *,
                 on_listed: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.manager = manager
        self._on_listed = on_listed or (lambda: None)
        self.pipeline = CallPipeline(manager)
        self.pipeline.curator = self._curate
        self.pipeline.unknown = self.unknown
        self.links = LinkMap(manager)
        self.results = self.pipeline.results = ResultLimits()   # max_result_bytes, caching
        self.own: dict[str, Tool] = {}  # the gateway's gateway_* tools: searched, call_tool
        self.own_shown: Callable[[str], bool] = lambda name: True   # gateway.admin, now
        self.own_names: frozenset[str] = frozenset()  # every gateway_* tool, built or not
        self.profile: str | None = None   # stdio: serve --profile (HTTP: per request)
        # The config file's invalid entries (the gateway's control plane): unknown() says so.
        self.invalid: Callable[[], Mapping[str, InvalidServer]] = lambda: {}
        # Told when the manager's task fails (every upstream stopped with it): the
        # ``Gateway`` stops serving, as for its own background tasks; unset, it is logged.
        self.failed: Failed | None = None
        self.before_stop: Callable[[], Awaitable[object]] = _nothing  # awaited at the stop
        self._indexes: dict[str | None, SearchIndex] = {}   # per profile (None: no profile)
        self._generation = -1
        self._view = manager.view
        # Every exposed upstream tool (name order), as both paths call it; its FastMCP
        # component is made only when FastMCP needs one (``_tool``): ~2 KB each.
        self._lane_tools: dict[str, UpstreamTool] = {}
        self._tools: dict[str, GatewayTool] = {}   # the components looked up so far
        self._prompts: dict[str, GatewayPrompt] = {}
        self._resources: dict[str, GatewayResource] = {}
        self._templates: dict[str, GatewayTemplate] = {}
        # Tools an upstream runs only as tasks, which the gateway does not relay:
        # kept out of every list; a call by name is refused with the reason.
        self._task_required: dict[str, tuple[Origin, types.Tool]] = {}
        self._task_logged: set[tuple[str, str]] = set()
        self.revision = 0  # bumped by ``invalidate``: the express lane's lists key on it
        # Calls, reads and gets of names nothing exposes to their caller, by kind (never
        # by name: a host makes names up): ``mcp_gateway_unknown_calls_total``.
        self.unknown_calls: dict[str, int] = dict.fromkeys(("tool", "prompt", "resource"), 0)

    def __repr__(self) -> str:
        return f"GatewayProvider({len(self.manager.services)} servers)"

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with background(self.manager.run, failed=self.failed):
            try:
                yield
            finally:  # FastMCP closes lifespans shielded
                await self.before_stop()

    def invalidate(self) -> None:
        """Rebuild the components at the next lookup."""
        self._generation = -1
        self.revision += 1

    def instructions(self) -> str:
        """The gateway's ``instructions`` (``instructions.gateway_instructions``)."""
        return gateway_instructions(self.manager)

    def list_key(self) -> tuple[Any, ...]:
        """What every list a caller sees depends on: equal keys, equal lists (the
        express lane serves lists pre-encoded under this key; the route rules, a new
        table per change, decide which tools a restricted caller may call)."""
        # Compared by identity first (tuple equality): cheap while nothing changed.
        return (self.manager.view.generation, self.revision, self.manager.config,
                self.pipeline.resolve_principal(), self.pipeline.routes)

    def _sync(self) -> None:
        view = self.manager.view
        if view.generation == self._generation:
            return
        ups = self.manager.services
        self._task_required = {}
        lane: dict[str, UpstreamTool] = {}
        for name, (origin, t) in sorted(view.tools.items(), key=_first):
            if task_required(t) and not ups[origin.server].is_modern:
                self._hide_task_tool(name, origin, t)
                continue
            lane[name] = UpstreamTool(
                name, ups[origin.server], origin.original,
                view.upstream_annotations.get(name, t.annotations), self.pipeline, self.links)
        prompts: dict[str, GatewayPrompt] = {}
        for name, (origin, p) in sorted(view.prompts.items(), key=_first):
            prompts[name] = prompt_component(name, p, ups[origin.server], origin.original,
                                             self.pipeline, self.links)
        resources: dict[str, GatewayResource] = {}
        for uri, (origin, r) in sorted(view.resources.items(), key=_first):
            resource = resource_component(uri, r, ups[origin.server], origin.original,
                                          self.pipeline)
            resources[normalize_uri(str(resource.uri))] = resource
        templates: dict[str, GatewayTemplate] = {}
        for uri_template, (origin, tp) in sorted(view.templates.items(), key=_first):
            templates[uri_template] = template_component(
                uri_template, tp, ups[origin.server], origin.original, self.pipeline)
        self._view, self._tools, self._lane_tools, self._prompts = view, {}, lane, prompts
        self._resources, self._templates = resources, templates
        self._indexes = {}
        self._generation = view.generation

    def _component(self, name: str) -> GatewayTool:
        """The FastMCP component of the exposed upstream tool ``name`` (in the table)."""
        _, t = self._view.tools[name]
        return tool_component(name, t, self._lane_tools[name])

    def _tool(self, name: str) -> GatewayTool | None:
        """The component of ``name`` for a lookup (kept: a tool called once is often
        called again), None if no exposed upstream tool has that name."""
        tool = self._tools.get(name)
        if tool is None and name in self._lane_tools:
            tool = self._tools[name] = self._component(name)
        return tool

    # -- curation and search mode ---------------------------------------------

    async def _curate(self, call: Call) -> str | None:
        """The pipeline's curation stage: hidden components are refused by name (a
        lookup of a hidden name resolves to a component whose call ends here)."""
        if call.kind == "tool" and call.exposed in self._task_required:
            return (f"tool '{call.exposed}' of server '{call.owner.name}' is not exposed: "
                    f"{TASK_REASON}")
        active = self.active_profile()
        if active is not None and not (
                active.shows_server(call.owner.name) and active.shows_server(call.service.name)
                and (call.kind != "tool" or active.shows_tool(call.exposed, call.owner.name))):
            return self.unknown(call.kind, call.exposed)   # outside the profile
        view = self.manager.view
        for server in {call.owner.name, call.service.name}:
            if (reason := view.refusal(call.kind, server, call.original)) is not None:
                return reason
        if call.kind == "resource":
            return read_refusal(call.owner.config, call.original)
        return None

    def _hide_task_tool(self, name: str, origin: Origin, tool: types.Tool) -> None:
        self._task_required[name] = (origin, tool)
        if (origin.server, origin.original) not in self._task_logged:
            self._task_logged.add((origin.server, origin.original))
            logger.warning("server %s: tool '%s' is not exposed: %s", origin.server,
                           logged_name(origin.original), TASK_REASON)

    def _task_tool(self, name: str) -> GatewayTool | None:
        """A task-only tool by its would-be name: a tool whose call is refused."""
        hit = self._task_required.get(name)
        return None if hit is None else self._refused(name, hit[0].server, hit[0].original, hit[1])

    def _hidden_tool(self, name: str) -> GatewayTool | None:
        hit = self.manager.view.hidden_as("tool", name)
        return None if hit is None else self._refused(name, hit[0].server, hit[0].original, hit[1])

    def _refused(self, name: str, server: str, original: str, t: types.Tool) -> GatewayTool:
        """A tool the curator refuses by name (task-only, hidden or held by pinning)."""
        tool = GatewayTool(name=name, description=t.description, parameters=t.input_schema)
        tool._upstream_tool = UpstreamTool(name, self.manager.services[server], original,
                                           t.annotations, self.pipeline)
        return tool

    def search_mode(self) -> bool:
        """Whether hosts see the search meta-tools instead of every tool."""
        options = self.manager.config.options
        active = self.active_profile()
        exposure = (active.exposure if active is not None else None) or options.exposure
        if exposure == "auto":
            self._sync()
            return len(self._lane_tools) > options.search.auto_threshold_tools
        return exposure == "search"

    def search_index(self) -> SearchIndex:
        """The BM25 index of the exposed tools and the gateway's own that ``own_shown``
        allows (built once per catalog generation or ``invalidate``, and per profile)."""
        self._sync()
        active = self.active_profile()
        key = active.name if active is not None else None
        if (index := self._indexes.get(key)) is None:
            index = self._indexes[key] = SearchIndex([*(
                SearchDoc(name, origin.server, t.title, t.description, t.input_schema,
                          original=origin.original,
                          server_description=self._description_of(origin.server))
                for name, (origin, t) in self.manager.view.tools.items()
                if name in self._lane_tools and (active is None or active.shows_tool(
                    name, origin.server))), *(SearchDoc(
                        t.name, OWN_SERVER, t.title, t.description, t.parameters, own=True)
                                              for t in self.own.values()
                                              if self.own_shown(t.name))])
        return index

    def _description_of(self, server: str) -> str | None:
        service = self.manager.services.get(server)
        return service.config.description if service is not None else None

    def caller_is_admin(self) -> bool:
        return self.pipeline.resolve_principal().has("admin")

    def lists_own_tool(self, name: str) -> bool:
        """Whether the gateway's own tool ``name`` is listed as itself (who may see it at
        all is ``AdminVisibility``'s): in search mode only if ``search.pinned`` names it."""
        return not self.search_mode() or name in self.manager.config.options.search.pinned

    def active_profile(self) -> ActiveProfile | None:
        """The profile of the current request (HTTP ``/mcp/p/<name>``) or process
        (``serve --profile``); None: the whole catalog."""
        options = self.manager.config.options
        if not options.profiles and self.profile is None:
            return None  # the common case, on every call: no request lookup
        name = request_profile() or self.profile
        return ActiveProfile.of(name, options) if name else None

    def caller_servers(self) -> frozenset[str] | None:
        """The servers the current caller may see (None: every one; a caller without
        scope ``tools`` sees none), within the active profile's."""
        principal = self.pipeline.resolve_principal()
        servers = principal.servers if principal.has("tools") else frozenset()
        active = self.active_profile()
        return active.servers(servers) if active is not None else servers

    _servers = caller_servers

    def routed_away(self) -> Callable[[str], bool] | None:
        """Which tools a rule routes outside the caller's ``servers`` (None: none is)."""
        routes = self.pipeline.routes
        return routes.outside(self.pipeline.resolve_principal().servers) if routes.routes else None

    def unknown(self, kind: Kind | str, name: str) -> str:
        """What a host is told for a name it cannot reach (``unknown_answers.py``)."""
        return unknown_answer(self, kind, name)

    def task_only_names(self) -> Container[str]:
        """Exposed names of the task-only tools kept from every list (``_curate``)."""
        self._sync()
        return self._task_required

    def unknown_call(self, kind: Kind | str, name: str, arguments: Any = None) -> str:
        """``unknown``'s answer to a call, read or get of ``name`` refused for it,
        counted (no call metric sees it) and recorded (``CallPipeline.unknown_called``)."""
        self.unknown_calls[kind] = self.unknown_calls.get(kind, 0) + 1
        self.pipeline.unknown_called(kind, name, arguments, answer := self.unknown(kind, name))
        return answer

    def callable_tool(self, name: str) -> GatewayTool | None:
        self._sync()
        tool = self._tool(name)
        if tool is None and ":" in name:
            tool = self._alias(name)
        tool = tool or self._hidden_tool(name) or self._task_tool(name)
        if tool is not None and not _visible(tool._upstream_tool.owner.name, self._servers()):
            return None  # another caller's server: "Unknown tool", nothing disclosed
        active = self.active_profile()
        if tool is not None and active is not None and not active.shows_tool(
                tool.name, tool._upstream_tool.owner.name):
            return None  # outside the profile
        return tool

    async def _list_tools(self) -> Sequence[Tool]:
        self._on_listed()
        self._sync()
        search = self.search_mode()
        lane = self._lane_tools
        if search:
            pinned = self.manager.config.options.search.pinned
            names = [n for n in pinned if n in lane]
        else:
            names = list(lane)
        servers = self._servers()
        if servers is not None:
            names = [n for n in names if lane[n].owner.name in servers]
        if (away := self.routed_away()) is not None:
            names = [n for n in names if not away(n)]   # a call would be refused
        if (active := self.active_profile()) is not None:
            names = [n for n in names if active.shows_tool(n, lane[n].owner.name)]
        # Made for this list and dropped after it (the express lane lists from its
        # encoded cache, so this runs once per change there), unless already looked up.
        shown = [self._tools.get(n) or self._component(n) for n in names]
        return [*self._meta.values(), *shown] if search else shown

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        self._sync()
        if name not in self._lane_tools and name in META_TOOL_NAMES:
            # Only where the caller's mode offers them (the profile's exposure): else
            # "Unknown tool", as the list says, on every path.
            return self._meta[name] if self.search_mode() else None
        return self.callable_tool(name)

    async def until_offered(self, name: str, within: float) -> bool:
        """For a tool ``name`` no lookup found: if it is bound to a server that is
        (re)starting (a reload restarted it, the gateway just started), wait for it to be
        offered, at most ``within`` seconds (``routing/waiting.until_offered``)."""
        bound = self.manager.names.binding("tool", name)
        service = self.manager.services.get(bound.server) if bound is not None else None
        if service is None or not _visible(service.name, self._servers()):
            return False
        return await until_offered(service.replicas, lambda: name in self.manager.view.tools,
                                   service.wait_until, within)

    @functools.cached_property
    def _meta(self) -> dict[str, Tool]:  # search exposure only: made on first use (~0.5 MB)
        from fast_mcp_gateway.front.search import meta_tools
        return meta_tools(self)

    def lane_tool(self, name: str) -> UpstreamTool | None:
        """The upstream tool exposed as ``name`` (exact names only), for the express lane."""
        self._sync()
        tool = self._lane_tools.get(name)
        if tool is not None and self.profile is not None and not ActiveProfile.of(
                self.profile, self.manager.config.options).shows_tool(name, tool.owner.name):
            return None  # outside the profile: the full path answers "Unknown tool"
        return tool

    def _alias(self, name: str) -> GatewayTool | None:
        """Seed-style ``server:tool`` names (original tool name) reach the exposed tool."""
        server, _, original = name.partition(":")
        for exposed, (origin, _) in self.manager.view.tools.items():
            if origin.server == server and origin.original == original:
                return self._tool(exposed)
        return None

    async def _list_prompts(self) -> Sequence[Prompt]:
        self._on_listed()
        self._sync()
        return _for(self._prompts.values(), self._servers())

    async def _get_prompt(self, name: str, version: VersionSpec | None = None) -> Prompt | None:
        self._sync()
        prompt = self._prompts.get(name)
        if prompt is None and (hit := self.manager.view.hidden_as("prompt", name)):
            hidden, p = hit
            prompt = GatewayPrompt(name=name, description=p.description)
            prompt._upstream = self.manager.services[hidden.server]
            prompt._original, prompt._pipeline = hidden.original, self.pipeline
        return prompt if prompt is not None and _visible(
            prompt._upstream.name, self._servers()) else None

    async def _list_resources(self) -> Sequence[Resource]:
        self._on_listed()
        self._sync()
        return _for(self._resources.values(), self._servers())

    async def _get_resource(self, uri: str, version: VersionSpec | None = None) -> Resource | None:
        self._sync()
        resource = self._resources.get(uri) or self._resources.get(normalize_uri(uri))
        if resource is None and (hit := self.manager.view.hidden_as("resource",
                                                                    normalize_uri(uri))):
            hidden, r = hit
            resource = GatewayResource(uri=AnyUrl(uri), name=r.name, description=r.description,
                                       mime_type=r.mime_type or "text/plain")
            resource._upstream = self.manager.services[hidden.server]
            resource._original, resource._pipeline = hidden.original, self.pipeline
        if resource is None:
            resource = await self._linked(uri)
        return resource if resource is not None and _visible(
            resource._upstream.name, self._servers()) else None

    async def _linked(self, uri: str) -> GatewayResource | None:
        """A resource no list names but a relayed link did (``links.py``): read from
        its server by its upstream URI.  A URI a template covers is the template's."""
        hit = self.links.resolve(uri)
        if hit is None or await self._get_resource_template(uri) is not None:
            return None
        server, original = hit
        try:
            resource = GatewayResource(uri=AnyUrl(uri), name=original)
        except ValueError:  # FastMCP cannot hold it as a URL: nothing to read it with
            return None
        resource._upstream, resource._original = self.manager.services[server], original
        resource._pipeline = self.pipeline
        return resource

    async def _list_resource_templates(self) -> Sequence[ResourceTemplate]:
        self._sync()
        return _for(self._templates.values(), self._servers())

    async def _get_resource_template(self, uri: str, version: VersionSpec | None = None
                                     ) -> ResourceTemplate | None:
        self._sync()
        servers = self._servers()
        for template in self._templates.values():
            if template.matches(uri) is not None and _visible(template._upstream.name, servers):
                return template
        for (kind, name), (hidden, tp) in self.manager.view.hidden.items():
            if kind == "resource_template" and _visible(hidden.server, servers):
                refused = GatewayTemplate(uri_template=name, name=tp.name, parameters={})
                if refused.matches(uri) is not None:
                    refused._hidden = hidden.message
                    return refused
        return None

    async def get_tasks(self) -> Sequence[Any]:
        return []
