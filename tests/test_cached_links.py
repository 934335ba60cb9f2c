"""A cached result's resource links name the resource as hosts see it *now*: a hit after
a reload changed the server's namespace named the old one (daf78f0 keeps results with
their links exposed, so the exposed form went stale with them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway, GatewaySettings, load_config
from tests.fixtures import PY, SERVERS

pytestmark = pytest.mark.anyio


def _write(path: Path, namespace: str) -> None:
    path.write_text(json.dumps({"servers": {"fid": {
        "command": PY, "args": [str(SERVERS / "fidelity.py")], "namespace": namespace,
        "idempotent_tools": ["link"], "cache": {"ttl": 600}}}}))


async def test_a_cached_results_links_follow_a_namespace_change(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    _write(path, "one")
    gateway = Gateway(load_config(path),
                      GatewaySettings(config=path, db=None, reload_interval=0))

    async def link(client: Client[Any], name: str) -> tuple[str, bool]:
        result = await client.call_tool_mcp(name, {})
        assert not result.isError, result
        hit = (result.meta or {}).get("io.github.fast-mcp-gateway/cache", {}).get("hit")
        uris = [str(b.uri) for b in result.content if b.type == "resource_link"]
        return uris[0], bool(hit)

    async with Client(gateway.server) as client:
        first, _ = await link(client, "one_link")
        assert first.startswith("file://one/"), first
        assert (await link(client, "one_link"))[1]          # cached
        _write(path, "two")
        await gateway.reload_config()
        uri, _ = await link(client, "two_link")
    assert uri.startswith("file://two/"), uri
