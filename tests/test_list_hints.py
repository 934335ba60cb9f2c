"""2026-07-28 freshness hints of the aggregate lists (``front/hints.py``) on the full
path and the express lane's list cache, and the lists' deterministic order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client, FastMCP

from fast_mcp_gateway.front.listing import ListCache
from tests.fixtures import PY, SERVERS, beta_server, make_gateway, memory_entry
from tests.test_lane import raw_host

pytestmark = pytest.mark.anyio

LEGACY, MODERN = "2025-11-25", "2026-07-28"
LISTS = ("tools/list", "prompts/list", "resources/list")


def hinted(name: str, ttl: int | None, scope: Any = None, tools: tuple[str, ...] = ("a",)
           ) -> FastMCP[Any]:
    mcp: FastMCP[Any] = FastMCP(name, cache_ttl=ttl, cache_scope=scope)
    for tool in tools:
        mcp.tool(lambda x: x, name=tool, description=f"{tool} of {name}")

    @mcp.prompt
    def greet() -> str:
        return "hi"

    @mcp.resource(f"urn:{name}:r")
    def r() -> str:
        return "r"

    return mcp


def gateway(servers: dict[str, FastMCP[Any]], order: list[str] | None = None,
            **options: Any) -> Any:
    names = order or list(servers)
    # Upstreams give freshness hints on 2026-07-28 sessions only; ``auto`` would open
    # the handshake era (tests/test_era.py shows what that does to the hints).
    options.setdefault("protocol", "2026-07-28")
    return make_gateway({n: memory_entry(n) for n in names}, servers, options=options)


async def full_list(client: Client[Any], method: str) -> Any:
    fetch = {"tools/list": client.list_tools_mcp, "prompts/list": client.list_prompts_mcp,
             "resources/list": client.list_resources_mcp}[method]
    return await fetch()


async def test_the_minimum_ttl_of_the_upstreams_public_when_nobody_differs() -> None:
    gw = gateway({"slow": hinted("slow", 60, "public"), "quick": hinted("quick", 5, "public")})
    async with Client(gw.server, mode="auto") as client:
        assert client.protocol_version == MODERN
        cache = ListCache(gw.server, gw.provider)
        for method in LISTS:
            result = await full_list(client, method)
            assert {"ttl_ms", "cache_scope"} <= result.model_fields_set, method
            assert (result.ttl_ms, result.cache_scope) == (5000, "public"), method
            lane = json.loads(await cache.encoded(method, MODERN))
            assert (lane["ttlMs"], lane["cacheScope"]) == (5000, "public"), method
            legacy = json.loads(await cache.encoded(method, LEGACY))
            assert "ttlMs" not in legacy and "cacheScope" not in legacy, method
        # No templates anywhere: nothing bounds it, so no freshness is promised.
        templates = json.loads(await cache.encoded("resources/templates/list", MODERN))
        assert (templates["ttlMs"], templates["cacheScope"]) == (0, "private")
    async with Client(gw.server, mode="legacy") as client:
        result = await client.list_tools_mcp()
        assert "ttl_ms" not in result.model_fields_set   # not on a legacy wire


async def test_an_unhinted_or_private_upstream_makes_the_list_stale_or_private() -> None:
    gw = gateway({"slow": hinted("slow", 60, "public"), "plain": beta_server()})
    async with Client(gw.server, mode="auto") as client:
        tools = await client.list_tools_mcp()
        assert (tools.ttl_ms, tools.cache_scope) == (0, "private")
    gw = gateway({"slow": hinted("slow", 60, "public"), "mine": hinted("mine", 30, "private")})
    async with Client(gw.server, mode="auto") as client:
        tools = await client.list_tools_mcp()
        assert (tools.ttl_ms, tools.cache_scope) == (30000, "private")
        lane = json.loads(await ListCache(gw.server, gw.provider).encoded("tools/list", MODERN))
        assert (lane["ttlMs"], lane["cacheScope"]) == (30000, "private")


async def test_with_tokens_the_list_depends_on_the_caller_so_it_is_private() -> None:
    from tests.test_mcp_auth import TOKENS

    gw = gateway({"slow": hinted("slow", 60, "public")}, auth={"tokens": TOKENS})
    async with Client(gw.server, mode="auto") as client:
        tools = await client.list_tools_mcp()
        assert (tools.ttl_ms, tools.cache_scope) == (60000, "private")


async def test_a_profile_narrows_the_ttl_to_its_servers_and_makes_it_private() -> None:
    gw = gateway({"slow": hinted("slow", 60, "public"), "quick": hinted("quick", 5, "public")},
                 profiles={"slowonly": {"servers": ["slow"]}})
    gw.provider.profile = "slowonly"   # as serve --profile sets it
    async with Client(gw.server, mode="auto") as client:
        tools = await client.list_tools_mcp()
        assert {t.name for t in tools.tools} >= {"slow_a"}
        assert "quick_a" not in {t.name for t in tools.tools}
        assert (tools.ttl_ms, tools.cache_scope) == (60000, "private")
        lane = json.loads(await ListCache(gw.server, gw.provider).encoded("tools/list", MODERN))
        assert (lane["ttlMs"], lane["cacheScope"]) == (60000, "private")


async def test_tools_list_order_does_not_depend_on_config_or_connect_order() -> None:
    servers = {"zeta": hinted("zeta", 5, tools=("z2", "a1", "m")),
               "alpha": hinted("alpha", 5, tools=("q", "b"))}
    seen = []
    for order in (["zeta", "alpha"], ["alpha", "zeta"]):
        gw = gateway(servers, order)
        async with Client(gw.server) as client:
            names = [t.name for t in await client.list_tools()]
            lane = json.loads(await ListCache(gw.server, gw.provider).encoded("tools/list",
                                                                               LEGACY))
            assert [t["name"] for t in lane["tools"]] == names
            seen.append([n for n in names if n.startswith(("zeta_", "alpha_"))])
    assert seen[0] == seen[1] == sorted(seen[0])
    assert len(seen[0]) == 5


def _stdio_config(tmp_path: Path) -> Path:
    def entry(script: str, env: dict[str, str]) -> str:
        return (f"    command: {json.dumps(PY)}\n"
                f"    args: [{json.dumps(str(SERVERS / script))}]\n"
                f"    env: {json.dumps(env)}\n")

    marks = str(tmp_path)
    path = tmp_path / "servers.yaml"
    path.write_text(
        "gateway:\n  protocol: 2026-07-28\n  profiles:\n    coding: {servers: [up, quick]}\n"
        "servers:\n"
        "  up:\n" + entry("lane.py", {"LANE_MARKS": marks, "LANE_CACHE_TTL": "30"})
        + "  quick:\n" + entry("marked.py", {"MARKS": marks, "MARK_NAME": "quick",
                                             "MARK_CACHE_TTL": "7"})
        + "  far:\n" + entry("marked.py", {"MARKS": marks, "MARK_NAME": "far",
                                           "MARK_CACHE_TTL": "1"}))
    return path


async def _listed(host: Any, name: str) -> dict[str, Any]:
    """The tools/list result once ``name`` is in it (upstreams connect in the background)."""
    with anyio.fail_after(30):
        while True:
            result: dict[str, Any] = (await host.request("tools/list"))["result"]
            if any(t["name"] == name for t in result["tools"]):
                return result
            await anyio.sleep(0.05)  # another process's progress: nothing to wait on


@pytest.mark.parametrize("lane", [True, False])
@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_serve_profile_over_stdio_starts_only_its_servers_and_hints_its_lists(
        tmp_path: Path, era: str, lane: bool) -> None:
    config = _stdio_config(tmp_path)
    async with raw_host(config, era, lane=lane, command=[
            PY, "-m", "fast_mcp_gateway", "serve", "--profile", "coding", "--log-level",
            "WARNING", "--config"]) as host:
        tools = await _listed(host, "quick_hello")
        servers = await host.call("gateway_list_servers")
        assert (tmp_path / "quick.started").exists() and (tmp_path / "up.started").exists() \
            is False   # lane.py leaves no start mark; marked.py does
        if era == "modern":
            # min(30 s, 7 s); private: a profile's list depends on how it is served
            assert (tools["ttlMs"], tools["cacheScope"]) == (7000, "private")
        else:
            assert "ttlMs" not in tools and "cacheScope" not in tools
    # The admin tools of a profile process see (and run) only the profile's servers.
    assert "far" not in json.dumps(servers["structuredContent"])
    assert "quick" in json.dumps(servers["structuredContent"])
    assert not (tmp_path / "far.started").exists()


async def test_without_a_profile_every_server_is_started(tmp_path: Path) -> None:
    """The control: the same config without --profile spawns ``far`` too."""
    async with raw_host(_stdio_config(tmp_path), "modern") as host:
        tools = await _listed(host, "far_hello")
        assert (tools["ttlMs"], tools["cacheScope"]) == (1000, "public")
    assert (tmp_path / "far.started").exists()
