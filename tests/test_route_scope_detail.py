"""A route rule sending a tool outside a caller's servers: the surfaces that describe a
server list for that caller what its ``tools/list`` lists (``admin/shown.py``).

REST ``GET /servers/{name}/tools`` and ``GET /servers/{name}``, the admin tool
``gateway_server_detail`` and the dashboard's server page listed ``clock_now`` (and
REST's statistics of a mistyped tool name suggested it) to a
token limited to ``servers: [clock]`` after a rule sent ``clock_*`` to ``clock2``,
while its tools/list, search and "did you mean" left it out: a tool offered, then
refused.  An unrestricted caller still sees it, and where the rule sends it.  Real HTTP
on 127.0.0.1, the demo clocks as stdio subprocesses, the rule in a real SQLite store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client

from tests.test_rest import OPS, Api, serving
from tests.test_route_scope import ALICE, AUTH, CLOCKS
from tests.test_ui import _login

pytestmark = pytest.mark.anyio

CAROL = "mgw_carol-admin-of-clock-3f81"  # scope admin, servers [clock]
TOKENS = {"tokens": [*AUTH["tokens"], {"name": "carol", "token": CAROL,
                                      "scopes": ["admin"], "servers": ["clock"]}]}


def _clock_tools(names: Any) -> set[str]:
    return {n for n in names if n.startswith("clock_")}


async def _ready(api: Api) -> bool:
    listed = (await api("GET", "/servers", OPS)).json()["servers"]
    return sorted(s["state"] for s in listed) == ["ready", "ready"]


async def test_a_servers_detail_offers_no_caller_a_tool_routed_outside_its_servers(
        tmp_path: Path) -> None:
    async with serving(tmp_path, CLOCKS, auth=False, options={"auth": TOKENS}) as (api, base):
        while not await _ready(api):
            pass
        made = await api("POST", "/routes", OPS, json={
            "pattern": "clock_*", "match": "wildcard", "target": "clock2"})
        assert made.status_code == 201, made.text

        async with Client(f"{base}/mcp", auth=ALICE) as alice:
            assert not _clock_tools(t.name for t in await alice.list_tools())
        for token in (ALICE, CAROL):   # REST: the tools list, and an admin's detail
            tools = (await api("GET", "/servers/clock/tools", token)).json()["items"]
            assert not _clock_tools(i["exposed"] for i in tools), tools
        typo = await api("GET", "/stats/tools/clock_nowx", ALICE)   # no "did you mean" it
        assert typo.status_code == 404 and "'clock_now'" not in typo.text, typo.text
        exposed = (await api("GET", "/servers/clock", CAROL)).json()["exposed"]
        assert not _clock_tools(e["exposed"] for e in exposed if e["kind"] == "tool")
        async with Client(f"{base}/mcp", auth=CAROL) as carol:   # the admin tool
            got = await carol.call_tool("gateway_server_detail", {"name": "clock"})
            exposed = (got.structured_content or {})["exposed"]
            assert not _clock_tools(e["exposed"] for e in exposed if e["kind"] == "tool")
        async with httpx2.AsyncClient(timeout=30) as http:   # the dashboard's server page
            await _login(http, base, ALICE)
            page = await http.get(base + "/ui/servers/clock")
            assert page.status_code == 200 and not re.search(r"\bclock_now\b", page.text)

        # A caller that may use clock2 still sees the tool, and where the rule sends it.
        tools = (await api("GET", "/servers/clock/tools", OPS)).json()["items"]
        assert "clock_now" in {i["exposed"] for i in tools}
        assert "'clock_now'" in (await api("GET", "/stats/tools/clock_nowx", OPS)).text
        exposed = (await api("GET", "/servers/clock", OPS)).json()["exposed"]
        now = next(e for e in exposed if e["exposed"] == "clock_now")
        assert now["routed_to"] == "clock2", now
        async with httpx2.AsyncClient(timeout=30) as http:
            await _login(http, base, OPS)
            assert "clock_now" in (await http.get(base + "/ui/servers/clock")).text
