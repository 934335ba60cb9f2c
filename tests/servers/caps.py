"""An upstream that tells which client capabilities each request declared to it.

    python caps.py [stdio | http PORTFILE]

``seen`` answers the capabilities the request it serves declared (JSON, keys
sorted); ``ask`` asks for a name the 2026-07-28 way (``input_required``, answered
when the client retries), as a careful server does: only if the request declared
``elicitation``, else it refuses; ``push`` the same, the handshake way (pushed, on a
handshake-era session: what its ``initialize`` declared; ``push_url`` by URL).  Over
``http`` it serves streamable HTTP on 127.0.0.1 (a free port, written to PORTFILE).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import InputRequiredToolResult
from loopback_http import serve
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

mcp = FastMCP("caps")


@mcp.tool
def seen(ctx: Context) -> str:
    """The client capabilities this request declared (``null``: none known)."""
    caps = ctx.session.client_capabilities
    return json.dumps(None if caps is None else caps.model_dump(
        by_alias=True, mode="json", exclude_none=True), sort_keys=True)


@mcp.tool
def ask(ctx: Context) -> Any:
    """Ask for a name (only a client that declared elicitation); the answer."""
    answer = (ctx.input_responses or {}).get("name")
    if answer is not None:
        return f"{answer.action}:{(answer.content or {}).get('name')}"
    caps = ctx.session.client_capabilities
    if caps is None or caps.elicitation is None:
        raise ToolError("the client declared no elicitation: not asking")
    return InputRequiredToolResult(InputRequiredResult(input_requests={
        "name": ElicitRequest(params=ElicitRequestFormParams(
            message="Your name?", requested_schema={
                "type": "object", "properties": {"name": {"type": "string"}},
                "required": ["name"]}))}))


@mcp.tool
async def push(ctx: Context) -> str:
    """Ask for a name the handshake way (a pushed ``elicitation/create``), only if the
    session declared elicitation at its ``initialize``, else refuse (a careful server)."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.elicitation is None:
        raise ToolError("the client declared no elicitation: not asking")
    result = await ctx.elicit("Your name?", response_type=str)
    return f"{result.action}:{getattr(result, 'data', None)}"


@mcp.tool
async def push_nulls(ctx: Context) -> str:
    """``push`` with a form whose schema an SDK writes as given: a null ``required`` and
    ``$schema`` (MCP's schema has none), a top-level ``title``."""
    result = await ctx.session.elicit_form("Your name?", {
        "$schema": None, "type": "object", "title": "Who",
        "properties": {"name": {"type": "string"}}, "required": None},
        ctx.request_context.request_id)
    return result.action


@mcp.tool
async def push_url(ctx: Context) -> str:
    """Ask the client to open a URL (a pushed URL-mode ``elicitation/create``), only if
    the session declared elicitation by URL."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.elicitation is None or caps.elicitation.url is None:
        raise ToolError("the client declared no URL elicitation: not asking")
    result = await ctx.session.elicit_url("Sign in", "https://example.test/in", "e-1")
    return result.action


async def main() -> None:
    if sys.argv[1:2] == ["http"]:
        await serve(mcp.http_app(path="/mcp"), sys.argv[2])
    else:
        await mcp.run_async(show_banner=False, log_level="WARNING")


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    anyio.run(main)
