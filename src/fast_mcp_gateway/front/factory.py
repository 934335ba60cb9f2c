"""The FastMCP components of a catalog generation, each made from the upstream's item.

The provider (``provider.py``) decides which components a generation has, when
they are made and who sees them; this is how one is made: the upstream's item
(kept as ``_wire`` and relayed as it came, ``components.relayed``) under its
exposed name, with the server that has it, its upstream name or URI and the
pipeline (and link map) its calls go through.  Apart from the provider, which
answers FastMCP's lookups and lists, so that either can change alone.
"""

from __future__ import annotations

import mcp_types as types
from fastmcp.prompts.base import PromptArgument
from pydantic import AnyUrl

from fast_mcp_gateway.front.calls import CallPipeline
from fast_mcp_gateway.front.components import (
    NO_TASKS,
    GatewayPrompt,
    GatewayResource,
    GatewayTemplate,
    GatewayTool,
    UpstreamTool,
)
from fast_mcp_gateway.front.links import LinkMap
from fast_mcp_gateway.routing.service import Service


def tool_component(name: str, t: types.Tool, upstream_tool: UpstreamTool) -> GatewayTool:
    """The FastMCP component of upstream tool ``t`` exposed as ``name``, whose calls
    ``upstream_tool`` makes (as the express lane's do)."""
    tool = GatewayTool(
        name=name, title=t.title, description=t.description,
        parameters=t.input_schema, output_schema=t.output_schema,
        annotations=t.annotations, icons=t.icons, meta=t.meta, execution=t.execution,
        task_config=NO_TASKS,  # given, not defaulted: a default is deep-copied
    )
    tool._upstream_tool = upstream_tool
    tool._wire = t
    return tool


def prompt_component(name: str, p: types.Prompt, upstream: Service, original: str,
                     pipeline: CallPipeline, links: LinkMap) -> GatewayPrompt:
    """Upstream prompt ``p`` (named ``original`` by ``upstream``) exposed as ``name``."""
    prompt = GatewayPrompt(
        name=name, title=p.title, description=p.description, icons=p.icons, meta=p.meta,
        arguments=[
            PromptArgument(name=a.name, description=a.description,
                           required=bool(a.required))
            for a in p.arguments or []
        ],
    )
    prompt._upstream, prompt._original = upstream, original
    prompt._pipeline = pipeline
    prompt._wire = p
    prompt._links = links
    return prompt


def resource_component(uri: str, r: types.Resource, upstream: Service, original: str,
                       pipeline: CallPipeline) -> GatewayResource:
    """Upstream resource ``r`` (``original`` at ``upstream``) exposed as ``uri``."""
    resource = GatewayResource(
        uri=AnyUrl(uri), name=r.name, title=r.title, description=r.description,
        mime_type=r.mime_type or "text/plain", icons=r.icons,
        annotations=r.annotations, meta=r.meta,
    )
    resource._upstream, resource._original = upstream, original
    resource._pipeline = pipeline
    resource._wire, resource._exposed_uri = r, uri
    return resource


def template_component(uri_template: str, tp: types.ResourceTemplate, upstream: Service,
                       original: str, pipeline: CallPipeline) -> GatewayTemplate:
    """Upstream template ``tp`` (``original`` at ``upstream``) exposed as ``uri_template``."""
    template = GatewayTemplate(
        uri_template=uri_template, name=tp.name, title=tp.title,
        description=tp.description, mime_type=tp.mime_type or "text/plain",
        icons=tp.icons, annotations=tp.annotations, meta=tp.meta, parameters={},
    )
    template._upstream, template._original = upstream, original
    template._pipeline = pipeline
    template._wire = tp
    return template
