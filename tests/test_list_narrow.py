"""gateway_list_servers / gateway_health narrowed (server names, a state) and lean (the
fields at their default left out unless ``detail``), and GET /api/v1/servers alike.

A new-user trial with 64 upstreams read ~55 kB of text per call of either tool, with no
way to ask for less: most of each entry was null or default fields per replica.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.admin.models import ReplicaStatus, ServerStatus
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_ops-narrow-lean-7c1e4b9d2a"
SERVERS = {"alpha": memory_entry("alpha"), "beta": memory_entry("beta"),
           "off": memory_entry("off", enabled=False)}


def gateway(**settings: Any) -> Any:
    return make_gateway(SERVERS, {n: alpha_server() for n in SERVERS}, **settings)


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("tool", ["gateway_list_servers", "gateway_health"])
async def test_a_tool_answers_the_servers_asked_for_each_entry_lean(tool: str) -> None:
    async with Client(gateway().server) as client:
        one = (await client.call_tool(tool, {"servers": ["beta"]})).structured_content
        assert [s["name"] for s in one["servers"]] == ["beta"] and one["total"] == 1
        off = (await client.call_tool(tool, {"state": "disabled"})).structured_content
        assert [(s["name"], s["enabled"]) for s in off["servers"]] == [("off", False)]
        both = (await client.call_tool(tool, {"servers": ["alpha", "off"], "state": "ready"})
                ).structured_content
        assert [s["name"] for s in both["servers"]] == ["alpha"]

        lean = await client.call_tool(tool, {})
        full = await client.call_tool(tool, {"detail": True})
        # Lean: nothing at its default is said, what is not at it is (a server stopped).
        from fast_mcp_gateway.admin.models import LEAN_DEFAULTS  # (not in the old code)

        for entry in lean.structured_content["servers"]:
            at_default = {k for k, v in entry.items() if LEAN_DEFAULTS.get(k, ...) == v}
            assert "protocol_reason" not in entry
            assert not at_default, (entry["name"], at_default)
            assert {"name", "state", "health", "tools", "replicas"} <= set(entry)
            for replica in entry["replicas"]:
                assert {"replica", "index", "state", "health"} <= set(replica)
                assert "breaker" not in replica and "breaker_retry_in_seconds" not in replica
        assert "protocol_reason" not in text_of(lean) and "protocol_reason" in text_of(full)
        # detail: every field, as before.
        for entry in full.structured_content["servers"]:
            assert set(entry) == set(ServerStatus.model_fields)
            assert all(set(r) == set(ReplicaStatus.model_fields) for r in entry["replicas"])
        assert len(text_of(lean)) < 0.6 * len(text_of(full))
        # The text is the structured answer (what a host without structured output reads).
        assert json.loads(text_of(lean)) == lean.structured_content


async def test_a_name_or_state_not_known_is_refused_naming_the_known_ones() -> None:
    async with Client(gateway().server) as client:
        with pytest.raises(ToolError, match=r"no server named 'Beta' \(known: alpha, beta, "
                                            r"off\); did you mean 'beta'\?"):
            await client.call_tool("gateway_list_servers", {"servers": ["alpha", "Beta"]})
        with pytest.raises(ToolError, match=r"no server named 'gamma' \(known: alpha, beta, "
                                            r"off\)"):
            await client.call_tool("gateway_health", {"servers": ["gamma"]})
        with pytest.raises(ToolError, match=r"'starting', 'ready', 'reconnecting', 'signed_out', "
                                            r"'failed', 'disabled', 'stopped' or 'invalid'"):
            await client.call_tool("gateway_health", {"state": "up"})


async def test_rest_lists_servers_narrowed_and_lean_as_asked(tmp_path: Any) -> None:
    options = {"auth": {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}}
    app = gateway(options=options).http_app()
    headers = {"Authorization": f"Bearer {OPS}"}
    async with serve_http(app) as base, httpx2.AsyncClient(timeout=30, headers=headers) as http:
        url = f"{base}/api/v1/servers"
        full = (await http.get(url)).json()  # a program's default: every field, as before
        assert [set(s) for s in full["servers"]] == [set(ServerStatus.model_fields)] * 3
        lean = (await http.get(url, params={"server": "alpha,off", "detail": "false"})).json()
        assert [s["name"] for s in lean["servers"]] == ["alpha", "off"]
        assert all("breaker" not in r for s in lean["servers"] for r in s["replicas"])
        ready = (await http.get(url, params={"state": "ready"})).json()
        assert [s["name"] for s in ready["servers"]] == ["alpha", "beta"]
        unknown = await http.get(url, params={"server": "gamma"})
        assert unknown.status_code == 404 and "known: alpha, beta, off" in unknown.text
        bad = await http.get(url, params={"state": "up"})
        assert bad.status_code == 422 and "'ready'" in bad.text


async def test_a_per_client_servers_sessions_are_lean_as_its_replicas_are(
        tmp_path: Any) -> None:
    # A per_client server's sessions (a replica of one host each, up to max_clients)
    # were shown in full in a lean entry: every null, 0 and 'closed' of each.
    from fastmcp import Client as Host

    from fast_mcp_gateway.admin import listing
    from fast_mcp_gateway.admin.models import LEAN_DEFAULTS
    from tests.fixtures import stdio_entry, until

    entry = stdio_entry("asker.py", "stdio", protocol="legacy", isolation="per_client")
    gateway = make_gateway({"asker": entry})
    service = gateway.manager.get("asker")
    async with serve_http(gateway.http_app("http")) as base, \
            Host(f"{base}/mcp", mode="legacy") as host:
        await until(lambda: service.replicas[0].pid is not None)
        assert isinstance((await host.call_tool("asker_pid", {})).data, int)
        listed = listing.list_servers(gateway.control, ["asker"], detail=False)
        [server] = json.loads(listed.model_dump_json())["servers"]
        [session] = server["client_sessions"]["sessions"]
        assert {"replica", "state", "health", "pid"} <= set(session), session
        at_default = {k for k, v in session.items() if LEAN_DEFAULTS.get(k, ...) == v}
        assert not at_default, session
