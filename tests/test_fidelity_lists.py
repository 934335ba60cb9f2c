"""The catalog lists the express lane serves: encoded once per change, equal to the
full path's (``front/listing.py``), and the pure helpers of relay fidelity."""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client, FastMCP
from fastmcp.tools import Tool

from fast_mcp_gateway.front import listing
from fast_mcp_gateway.front.instructions import compose_instructions
from fast_mcp_gateway.front.links import strip_namespace
from fast_mcp_gateway.front.listing import ListCache, wire_output_schema
from fast_mcp_gateway.routing.naming import namespace_uri
from fast_mcp_gateway.routing.view import normalize_uri
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio

LEGACY, MODERN = "2025-11-25", "2026-07-28"


def two_upstreams() -> Any:
    memory = {"alpha": alpha_server(), "beta": beta_server()}
    return make_gateway({"alpha": memory_entry("alpha"), "beta": memory_entry("beta")}, memory)


async def test_a_list_is_encoded_once_per_change_and_equals_the_full_paths() -> None:
    gateway = two_upstreams()
    async with Client(gateway.server) as client:
        cache = ListCache(gateway.server, gateway.provider)
        body = await cache.encoded("tools/list", LEGACY)
        assert await cache.encoded("tools/list", LEGACY) is body
        assert cache.builds == 1
        full = (await client.list_tools_mcp()).model_dump(by_alias=True, mode="json",
                                                         exclude_none=True)
        assert json.loads(body)["tools"] == full["tools"]
        assert {"alpha_add", "beta_add"} <= {t["name"] for t in full["tools"]}
        modern = json.loads(await cache.encoded("tools/list", MODERN))
        assert modern["resultType"] == "complete" and cache.builds == 2
        assert modern["_meta"][types.SERVER_INFO_META_KEY]["name"] == gateway.server.name

        beta = gateway.manager.services["beta"]
        beta.set_enabled(False)
        with anyio.fail_after(10):
            while beta.state is not UpstreamState.DISABLED:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # the supervisor's own task stops it
        after = json.loads(await cache.encoded("tools/list", LEGACY))
        assert cache.builds == 3
        assert "beta_add" not in {t["name"] for t in after["tools"]}
        again = (await client.list_tools_mcp()).model_dump(by_alias=True, mode="json",
                                                          exclude_none=True)
        assert after["tools"] == again["tools"]


async def test_the_other_lists_match_the_full_path_too() -> None:
    gateway = two_upstreams()
    async with Client(gateway.server) as client:
        cache = ListCache(gateway.server, gateway.provider)
        pairs = [("prompts/list", client.list_prompts_mcp, "prompts"),
                 ("resources/list", client.list_resources_mcp, "resources"),
                 ("resources/templates/list", client.list_resource_templates_mcp,
                  "resourceTemplates")]
        for method, full, key in pairs:
            want = (await full()).model_dump(by_alias=True, mode="json", exclude_none=True)
            got = json.loads(await cache.encoded(method, LEGACY))
            assert got[key] == want[key] and got[key], method


def test_legacy_hosts_get_object_output_schemas_as_fastmcp_sends_them() -> None:
    scalar = {"type": "integer", "$defs": {"x": {}}}
    assert wire_output_schema(scalar, MODERN) is scalar
    assert wire_output_schema(scalar, LEGACY) == {
        "type": "object", "properties": {"result": scalar}, "required": ["result"],
        "x-fastmcp-wrap-result": True, "$defs": {"x": {}}}
    plain = {"type": "object", "properties": {}}
    assert wire_output_schema(plain, LEGACY) is plain


@pytest.mark.parametrize("uri", ["file:///srv/a.txt", "https://h/x?y=1", "urn:isbn:1",
                                 "plainname", "data://x/{id}"])
def test_a_namespaced_uri_goes_back_to_the_upstreams(uri: str) -> None:
    exposed = namespace_uri(uri, "fs")
    assert exposed != uri
    assert strip_namespace(exposed, "fs") == uri
    assert strip_namespace(exposed, "other") is None
    if "{" not in uri:  # a URI, not a template: as URL parsers write it (pydantic's
        # ``file://fs//srv/a.txt`` is ``file://fs/srv/a.txt``)
        assert strip_namespace(normalize_uri(exposed), "fs") == normalize_uri(uri)


def test_instructions_are_bounded_and_name_each_server() -> None:
    text = compose_instructions([("git", "Use git_status first."), ("big", "x" * 50_000)],
                                "_", limit=4000)
    assert len(text) <= 4000
    assert "## git\nUse git_status first." in text
    assert "## big\n" in text and text.endswith("[...truncated]")
    assert "## " not in compose_instructions([], "_")


def many_tools_server(count: int) -> FastMCP[Any]:
    """``count`` tools of one schema (``many_tools.py`` in small)."""
    mcp = FastMCP("many")

    def search(query: str, limit: int = 10) -> str:
        """Search for ``query``, at most ``limit`` matches (é, ✓)."""
        return query

    template = Tool.from_function(search)
    for n in range(count):
        mcp.add_tool(template.model_copy(update={"name": f"t{n:03d}"}))
    return mcp


async def test_a_long_list_is_encoded_a_chunk_at_a_time_with_the_same_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A thousand tools converted, validated and dumped at once held ~9 MB of transient
    copies; ``ListCache`` does it ``CHUNK`` items at a time and splices the pieces into
    the envelope: the list is what the full path lists, in its order, one JSON text."""
    gateway = make_gateway({"many": memory_entry("many")}, {"many": many_tools_server(250)})
    sizes: list[int] = []
    whole = listing.wire_result

    def counted(server: Any, method: str, version: str, result: Any) -> dict[str, Any]:
        sizes.append(len(result.tools))
        return whole(server, method, version, result)

    monkeypatch.setattr(listing, "wire_result", counted)
    async with Client(gateway.server) as client:
        full = (await client.list_tools_mcp()).model_dump(by_alias=True, mode="json",
                                                         exclude_none=True)
        assert len(full["tools"]) > 250
        cache = ListCache(gateway.server, gateway.provider)
        for version in (LEGACY, MODERN):
            sizes.clear()
            body = await cache.encoded("tools/list", version)
            assert 0 < max(sizes) <= 100 and sum(sizes) == len(full["tools"])
            got = json.loads(body)
            assert got["tools"] == full["tools"]
            assert body == json.dumps(got, ensure_ascii=False, separators=(",", ":")).encode()
            assert (got.get("resultType") == "complete") is (version == MODERN)
