"""Lists through the gateway are sorted by exposed name, not in the upstreams' order,
and the README says so (it did not: a user comparing a server's own list with the
gateway's took the order for a bug)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP

from tests.fixtures import make_gateway, memory_entry

pytestmark = pytest.mark.anyio


def answering(word: str) -> Any:
    def run() -> str:
        return word
    return run


def backwards(name: str) -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP(name)
    for tool in ("zulu", "mike", "alpha"):   # listed upstream in this order
        server.tool(name=tool)(answering(tool))
    return server


async def test_tools_are_listed_by_name_and_the_readme_says_why() -> None:
    gateway = make_gateway({"zz": memory_entry("zz"), "aa": memory_entry("aa")},
                           {"zz": backwards("zz"), "aa": backwards("aa")})
    async with Client(gateway.server) as client:
        names = [tool.name for tool in await client.list_tools()]
    ours = [name for name in names if not name.startswith("gateway_")]
    assert ours == ["aa_alpha", "aa_mike", "aa_zulu", "zz_alpha", "zz_mike", "zz_zulu"]
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "Lists through the gateway (tools, prompts, resources, templates) are sorted " \
           "by exposed name, not in each upstream's order" in readme
    assert "prompt caches" in readme
