"""The gateway's own tools rank below upstream tools that match a query about as well
(``routing.search.OWN_WEIGHT``), and still first for a query about them.  Pure: the
index over the admin tools as listed (``admin/tools.json``) and a few upstream tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import fast_mcp_gateway.admin
from fast_mcp_gateway.routing.search import OWN_SERVER, SearchDoc, SearchIndex

OWN = [SearchDoc(t["name"], OWN_SERVER, t.get("title"), t["description"], t["parameters"],
                 own=True)
       for t in json.loads((Path(fast_mcp_gateway.admin.__file__).parent / "tools.json")
                           .read_text())]


def _tool(name: str, description: str, **params: str) -> SearchDoc:
    schema: dict[str, Any] = {"type": "object", "properties": {
        p: {"type": "string", "description": d} for p, d in params.items()}}
    return SearchDoc(name, name.split("_")[0], None, description, schema)


UPSTREAM = [
    _tool("alpha_add", "Add two ints.", a="first", b="second"),
    # A longer document matching only "add" (in its name): as an upstream tool of a
    # real server describes itself.
    _tool("sheets_add", "Adds the values of the given cells and returns their sum, "
          "rounded to the sheet's precision. Empty cells count as zero; text cells are "
          "skipped.", cells="the cells, as a range such as A1:B4",
          precision="digits after the point", sheet="the sheet's id, as in its URL"),
]


def _ranked(query: str) -> list[str]:
    return [doc.name for doc, _ in SearchIndex([*UPSTREAM, *OWN]).search(query, k=5, own=True)]


def test_an_upstream_tool_matching_as_well_ranks_above_the_admin_tools() -> None:
    ranked = _ranked("add two numbers")
    assert ranked[:2] == ["alpha_add", "sheets_add"], ranked   # gateway_add_server was 2nd


@pytest.mark.parametrize(("query", "first"), [
    ("register a new server", "gateway_add_server"),
    ("add a route", "gateway_add_route"),
    ("restart a replica", "gateway_restart_replica"),
])
def test_a_query_about_an_admin_tool_still_finds_it_first(query: str, first: str) -> None:
    assert _ranked(query)[0] == first
