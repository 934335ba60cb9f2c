"""/metrics over real HTTP on 127.0.0.1 with the demo upstreams as real stdio subprocesses:
the Prometheus text parses, call metrics move on the full path and the express lane,
replica gauges follow the upstreams, and the token rules hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from fastmcp import Client, FastMCP
from prometheus_client.parser import text_string_to_metric_families

from fast_mcp_gateway.store import Invocation
from fast_mcp_gateway.telemetry.metrics import SERVER, GatewayMetrics
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.relay import FrontCall
from tests.fixtures import (
    alpha_server,
    beta_server,
    make_gateway,
    memory_entry,
    serve_http,
    until,
)

pytestmark = pytest.mark.anyio

OPS = "mgw_ops-metrics-7c1e5a9d3b"
ALICE = "mgw_alice-notes-only-2f8b6d"
AUTH = {"tokens": [
    {"name": "ops", "token": OPS, "scopes": ["admin"]},
    {"name": "alice", "token": ALICE, "scopes": ["tools"], "servers": ["notes"]},
]}


def demo(name: str) -> dict[str, Any]:
    return {"command": "${GATEWAY_PYTHON}", "args": ["-m", f"fast_mcp_gateway.demo.{name}"]}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by (name, labels); parsing fails on malformed text."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    return scrape.get((name, frozenset(labels.items())))


async def scrape(http: httpx2.AsyncClient, base: str,
                 token: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.get(f"{base}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


ADD = {"mcp_method_name": "tools/call", "gen_ai_tool_name": "clock_add",
       "mcp_gateway_server": "clock"}


async def test_calls_on_both_paths_and_replica_state_move_the_metrics(tmp_path: Path) -> None:
    gateway = make_gateway({"clock": demo("clock"), "notes": demo("notes")})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        before = await scrape(http, base)
        assert value(before, "mcp_gateway_calls_total", **ADD, status="success") is None
        assert value(before, "mcp_gateway_upstream_up", mcp_gateway_server="clock",
                     replica="0") == 1.0
        assert value(before, "mcp_gateway_catalog_items", kind="tools") == len(
            gateway.manager.view.tools) > 0
        assert not any(name.endswith("_created") for name, _ in before)

        # (a) the full path: an MCP client over HTTP.
        async with Client(f"{base}/mcp") as client:
            for _ in range(2):
                assert (await client.call_tool("clock_add", {"a": 1, "b": 2})).data == 3
        full = await scrape(http, base)
        assert value(full, "mcp_gateway_calls_total", **ADD, status="success") == 2
        assert value(full, "mcp_server_operation_duration_seconds_count", **ADD) == 2
        assert value(full, "mcp_server_operation_duration_seconds_bucket", **ADD,
                     le="+Inf") == 2
        assert (value(full, "mcp_server_operation_duration_seconds_sum", **ADD) or 0) > 0

        # (b) the stdio express lane's entry (UpstreamTool.call_raw), in-process: the
        # same pipeline observer counts it.
        tool = gateway.provider.lane_tool("clock_add")
        assert tool is not None
        route = tool.serves_raw()
        assert route is not None
        line = await tool.call_raw(route, {"name": tool.original,
                                           "arguments": {"a": 2, "b": 2}},
                                   FrontCall(session=None), lambda r: json.dumps(r).encode())
        assert json.loads(line)["structuredContent"]["result"] == 4
        lane = await scrape(http, base)
        assert value(lane, "mcp_gateway_calls_total", **ADD, status="success") == 3
        assert value(lane, "mcp_server_operation_duration_seconds_count", **ADD) == 3

        # A disabled server shows in the state gauges (one series per state).
        notes = gateway.manager.services["notes"]
        notes.set_enabled(False)
        replica = notes.replicas[0]
        assert await replica.wait_until(lambda: replica.state is UpstreamState.DISABLED, 15)
        after = await scrape(http, base)
        key = {"mcp_gateway_server": "notes", "replica": "0"}
        assert value(after, "mcp_gateway_upstream_state", **key, state="disabled") == 1
        assert value(after, "mcp_gateway_upstream_state", **key, state="ready") == 0
        assert value(after, "mcp_gateway_upstream_up", **key) == 0
        # Turned off by an operator: nothing is wrong with it (an UNHEALTHY series would
        # page whoever watches health), and nothing is known of it.
        assert value(after, "mcp_gateway_upstream_health", **key, health="UNKNOWN") == 1
        assert value(after, "mcp_gateway_upstream_health", **key, health="UNHEALTHY") == 0
        assert value(after, "mcp_gateway_upstream_up", mcp_gateway_server="clock",
                     replica="0") == 1
        assert value(after, "mcp_gateway_breaker_state", **key, state="closed") == 1
        assert value(after, "mcp_gateway_upstream_restarts_total", **key) == 0
        assert value(after, "mcp_gateway_breaker_trips_total", **key) == 0


async def test_failed_and_rate_limited_calls_are_counted(tmp_path: Path) -> None:
    clock = {**demo("clock"), "rate_limit": {"per_second": 0.001, "burst": 1}}
    gateway = make_gateway({"clock": clock}, db=tmp_path / "gateway.db")
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        async with Client(f"{base}/mcp") as client:
            await client.call_tool("clock_add", {"a": 1, "b": 2})
            limited = await client.call_tool("clock_add", {"a": 1, "b": 2},
                                             raise_on_error=False)
            assert limited.is_error
        # A record past retention's age, then a prune (after the one at start): its
        # counters are scraped.
        assert gateway.recorder is not None and gateway.recorder.retention is not None
        retention = gateway.recorder.retention
        assert await retention.ended(1)
        assert await retention.store.add_invocations([Invocation(
            id="ancient", trace_id="t", client="c", kind="tool", exposed="clock_add",
            server="clock", original="add", started_at=1000.0, duration_ms=1.0,
            status="success")]) == 1
        retention.now()
        assert await retention.ended(2)
        seen = await scrape(http, base)
    assert value(seen, "mcp_gateway_calls_total", **ADD, status="success") == 1
    assert value(seen, "mcp_gateway_calls_total", **ADD, status="rejected") == 1
    assert value(seen, "mcp_gateway_rate_limited_total", mcp_gateway_server="clock",
                 gen_ai_tool_name="clock_add") == 1
    # Calls are recorded (a store is open): the recorder's gauges are there.
    assert value(seen, "mcp_gateway_recorder_dropped_total") == 0
    assert value(seen, "mcp_gateway_recorder_queue_depth") is not None
    assert value(seen, "mcp_gateway_recorder_retention_runs_total") == 2
    assert value(seen, "mcp_gateway_recorder_retention_removed_total") == 1
    assert value(seen, "mcp_gateway_recorder_retention_failures_total") == 0
    assert value(seen, "mcp_gateway_recorder_retention_skipped_total") == 0


async def test_metrics_need_a_token_unless_public(tmp_path: Path) -> None:
    gateway = make_gateway({"clock": demo("clock")}, options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        missing = await http.get(f"{base}/metrics")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "unauthorized"
        bad = await http.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        restricted = await http.get(f"{base}/metrics",
                                    headers={"Authorization": f"Bearer {ALICE}"})
        assert restricted.status_code == 403 and "metrics_public" in restricted.text
        assert value(await scrape(http, base, OPS), "mcp_gateway_upstream_up",
                     mcp_gateway_server="clock", replica="0") == 1

    public = make_gateway({"clock": demo("clock")},
                          options={"auth": {**AUTH, "metrics_public": True}})
    async with serve_http(public.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        assert value(await scrape(http, base), "mcp_gateway_upstream_up",
                     mcp_gateway_server="clock", replica="0") == 1
        # Public metrics do not open anything else.
        assert (await http.get(f"{base}/health/servers")).status_code == 401


def test_label_children_are_made_once_per_combination() -> None:
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.observe("tools/call", "a_x", "a", "success", 0.01)
    metrics.observe("tools/call", "a_x", "a", "error", 0.02, retries=2)
    assert len(metrics._calls) == 2 and len(metrics._durations) == 1
    text = metrics.render().decode()
    got = samples(text)
    labels = {"mcp_method_name": "tools/call", "gen_ai_tool_name": "a_x",
              "mcp_gateway_server": "a"}
    assert value(got, "mcp_gateway_calls_total", **labels, status="success") == 3
    assert value(got, "mcp_gateway_calls_total", **labels, status="error") == 1
    assert value(got, "mcp_server_operation_duration_seconds_count", **labels) == 4
    assert value(got, "mcp_gateway_retries_total", mcp_gateway_server="a") == 2
    # Each gateway has its own registry: a second one starts from nothing.
    assert "a_x" not in GatewayMetrics().render().decode()


async def test_calls_of_unknown_names_are_counted_by_kind_only() -> None:
    """A host calling a made-up name (3,331 calls of 'clock_add_minutes' in a trial) left
    no trace: it reaches no server, so the calls counter never saw it.  Both HTTP paths
    count it (the express lane steps aside, FastMCP answers), under the kind alone."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        before = await scrape(http, base)
        for kind in ("tool", "prompt", "resource"):
            assert value(before, "mcp_gateway_unknown_calls_total", kind=kind) == 0
        async with Client(f"{base}/mcp") as client:
            for _ in range(2):
                refused = await client.call_tool("clock_add_minutes", {}, raise_on_error=False)
                assert refused.is_error
            with pytest.raises(Exception, match="Unknown prompt"):
                await client.get_prompt("alpha_nope")
            with pytest.raises(Exception, match="Unknown resource"):
                await client.read_resource("nope://nowhere")
        # A raw 2026-07-28 POST, which the express lane (http/lane.py) would serve.
        modern = "2026-07-28"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "clock_add_minutes", "arguments": {}, "_meta": {
                types.PROTOCOL_VERSION_META_KEY: modern,
                types.CLIENT_INFO_META_KEY: {"name": "raw", "version": "1"},
                types.CLIENT_CAPABILITIES_META_KEY: {}}}}
        answer = await http.post(f"{base}/mcp", content=json.dumps(body), headers={
            "content-type": "application/json", "mcp-protocol-version": modern,
            "accept": "application/json, text/event-stream", "mcp-method": "tools/call",
            "mcp-name": "clock_add_minutes"})
        assert "Unknown tool" in answer.text, answer.text
        after = await scrape(http, base)
        assert value(after, "mcp_gateway_unknown_calls_total", kind="tool") == 3
        assert value(after, "mcp_gateway_unknown_calls_total", kind="prompt") == 1
        assert value(after, "mcp_gateway_unknown_calls_total", kind="resource") == 1
        # The name is no label anywhere: one series per kind, whatever a host sends.
        assert not any("clock_add_minutes" in str(labels) for _, labels in after)


async def test_a_removed_servers_call_series_go_with_it(tmp_path: Path) -> None:
    """Soak: servers registered and removed under new names (runtime registrations, a
    reload renaming one) each left their call counters and duration histogram in every
    scrape for the life of the process -- 20 series per tool called, per name ever
    served, without bound.  A removed server's series go with it; the others stay."""
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           db=tmp_path / "g.db")
    metrics = gateway.metrics

    def call_series() -> set[str]:
        scraped = samples(metrics.render().decode())
        return {dict(labels)[SERVER] for name, labels in scraped
                if name.startswith(("mcp_gateway_calls", "mcp_server_operation_duration"))}

    async with Client(gateway.server) as client:
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        for n in range(8):
            await client.call_tool("gateway_add_server", {"name": f"s{n}", "config": {
                "url": "http://127.0.0.1:9/in-memory/beta", "namespace": f"b{n}"}})
            await until(lambda n=n: f"b{n}_echo" in gateway.manager.view.tools)
            assert (await client.call_tool(f"b{n}_echo", {"text": "x"})).data == "x"
            assert call_series() == {"alpha", f"s{n}"}
            await client.call_tool("gateway_remove_server", {"name": f"s{n}"})
            assert call_series() == {"alpha"}
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 1})).data == 2
    assert value(samples(metrics.render().decode()), "mcp_gateway_calls_total", **{
        "mcp_method_name": "tools/call", "gen_ai_tool_name": "alpha_add",
        "mcp_gateway_server": "alpha"}, status="success") == 2


async def test_a_call_in_flight_at_removal_leaves_no_series_behind(tmp_path: Path) -> None:
    """Review: a call still running on a server when it was removed ended after the
    forget and made its series again -- kept for good, the name never removed twice
    (one stale series per server removed mid-call).  Over real HTTP: the call ends as it
    should, its host answered, and the scrape names the removed server nowhere."""
    started, release = anyio.Event(), anyio.Event()
    gated = FastMCP("gated")

    @gated.tool
    async def wait(text: str) -> str:
        started.set()
        await release.wait()
        return text

    gateway = make_gateway({"alpha": memory_entry("alpha"), "gated": memory_entry("gated")},
                           {"alpha": alpha_server(), "gated": gated}, options={"auth": AUTH},
                           db=tmp_path / "g.db")
    answer: list[str] = []
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        async with Client(f"{base}/mcp", auth=OPS) as host, \
                Client(f"{base}/mcp", auth=OPS) as admin:

            async def call() -> None:
                answer.append((await host.call_tool("gated_wait", {"text": "late"})).data)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await started.wait()
                await admin.call_tool("gateway_remove_server", {"name": "gated"})
                assert "gated" not in gateway.manager.services
                release.set()
            assert answer == ["late"]
            assert (await admin.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        scraped = await scrape(http, base, OPS)
    assert {dict(labels).get(SERVER) for _, labels in scraped} - {None} == {"alpha"}
    assert value(scraped, "mcp_gateway_calls_total", mcp_method_name="tools/call",
                 gen_ai_tool_name="alpha_add", mcp_gateway_server="alpha",
                 status="success") == 1
