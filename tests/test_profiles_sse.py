"""Profiles on the SSE front (``/sse/p/<profile>``), and a profile's reach over resource
subscriptions and completions (refused outside it) on SSE and streamable HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.transports import SSETransport
from fastmcp.exceptions import ToolError

from tests.fixtures import (
    beta_server,
    interactive_server,
    make_gateway,
    memory_entry,
    serve_http,
    watched_server,
)

pytestmark = pytest.mark.anyio

PROFILES = {"small": {"servers": ["beta"]}, "rich": {"servers": ["inter", "watch"]}}
POEM = types.PromptReference(type="ref/prompt", name="inter_poem")
DOCS = types.ResourceTemplateReference(type="ref/resource", uri="docs://inter/{section}")
COUNTER = "watch://watch/counter"


@asynccontextmanager
async def serving(transport: str) -> AsyncIterator[str]:
    gateway = make_gateway(
        {"beta": memory_entry("beta"), "inter": memory_entry("inter"),
         "watch": memory_entry("watch", protocol="legacy")},
        {"beta": beta_server(), "inter": interactive_server(), "watch": watched_server()},
        options={"profiles": PROFILES})
    async with serve_http(gateway.http_app(transport)) as base:  # type: ignore[arg-type]
        yield base


def client(base: str, transport: str, profile: str) -> Client[Any]:
    if transport == "sse":
        return Client(SSETransport(f"{base}/sse/p/{profile}"))
    return Client(f"{base}/mcp/p/{profile}", mode="legacy")


async def test_sse_profile_endpoints_serve_their_subset() -> None:
    async with serving("sse") as base:
        async with Client(SSETransport(f"{base}/sse")) as everything:
            every = {t.name for t in await everything.list_tools()}
            assert {"beta_add", "watch_bump"} <= every
        async with client(base, "sse", "small") as small:
            names = {t.name for t in await small.list_tools()}
            assert {n for n in names if not n.startswith("gateway_")} == {
                n for n in every if n.startswith("beta_")}
            assert (await small.call_tool("beta_add", {"a": 1, "b": 2})).data == 1003
            with pytest.raises(ToolError, match="Unknown tool: 'watch_bump'"):
                await small.call_tool("watch_bump", {})
            assert {p.name for p in await small.list_prompts()} == {"beta_greet"}
        async with client(base, "sse", "rich") as rich:
            names = {t.name for t in await rich.list_tools()}
            assert "watch_bump" in names and "beta_add" not in names
        async with httpx2.AsyncClient(timeout=30) as http:
            reply = await http.get(f"{base}/sse/p/nope")
        assert reply.status_code == 404
        assert "unknown profile 'nope'; known profiles: rich, small" in reply.text


@pytest.mark.parametrize("transport", ["sse", "http"])
async def test_subscriptions_and_completions_stay_inside_the_profile(transport: str) -> None:
    async with serving(transport) as base:
        async with client(base, transport, "rich") as rich:
            poem = await rich.complete(POEM, {"name": "theme", "value": "n"})
            assert poem.values == ["nature", "night"]
            docs = await rich.complete(DOCS, {"name": "section", "value": "in"})
            assert docs.values == ["intro", "install"]
            await rich.session.subscribe_resource(COUNTER)
            await rich.session.unsubscribe_resource(COUNTER)
        async with client(base, transport, "small") as small:
            with pytest.raises(Exception, match="Unknown prompt: 'inter_poem'"):
                await small.complete(POEM, {"name": "theme", "value": "n"})
            with pytest.raises(Exception, match="Unknown resource template"):
                await small.complete(DOCS, {"name": "section", "value": "in"})
            with pytest.raises(Exception, match=f"Unknown resource: '{COUNTER}'"):
                await small.session.subscribe_resource(COUNTER)
