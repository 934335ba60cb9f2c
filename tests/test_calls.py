"""The call pipeline (front/calls.py): one set of stages for the full path and the lane.

The lane exists only on a real stdio front, so the both-path tests run
``tests/servers/hooked_gateway.py`` (``mcp-gateway serve`` with pipeline hooks set
from its environment) once with the express lane and once without, and hold the two
to the same answers and the same observed outcomes.  ``up_whoami`` proves which
path a run took (see tests/test_lane.py).  Resources and prompts have no lane; their
stages are tested in-process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.front.calls import local_principal
from fast_mcp_gateway.front.outcomes import Call, CallOutcome
from fast_mcp_gateway.upstream.relay import FrontCall
from tests.fixtures import PY, SERVERS, alpha_server, make_gateway, memory_entry
from tests.test_lane import lane_id, raw_host, write_config

pytestmark = pytest.mark.anyio

HOOKED = [PY, str(SERVERS / "hooked_gateway.py")]


def observed(path: Path) -> list[dict[str, Any]]:
    """The outcomes the gateway's observer wrote (before each answer went out)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def timeless(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outcomes without what differs from run to run (and the lane's size of the whole
    response line, where the full path measures the result alone)."""
    for outcome in outcomes:
        size = outcome["response_bytes"]
        assert outcome["duration_ms"] >= 0 and (size is None or size > 0), outcome
    return [{k: v for k, v in o.items() if k not in ("duration_ms", "response_bytes")}
            for o in outcomes]


async def test_observers_see_lane_and_full_path_calls_alike(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    answers, outcomes = {}, {}
    for lane in (True, False):
        sink = tmp_path / f"observed-{lane}.jsonl"
        env = {"HOOK_OBSERVED": str(sink), "HOOK_CURATE_TIMES": "3"}
        async with raw_host(config, "legacy", lane=lane, env=env, command=HOOKED) as host:
            assert lane_id(await host.call("up_whoami")).startswith("gw-") is lane
            answers[lane] = [await host.call("up_echo", {"text": "ab"}),
                             await host.call("up_refuse", {"reason": "no"})]
        outcomes[lane] = timeless(observed(sink))
    assert answers[True] == answers[False]
    assert answers[True][0]["content"] == [{"type": "text", "text": "ababab"}]  # curated
    assert outcomes[True] == outcomes[False]
    whoami, echo, refused = outcomes[True]
    assert whoami["tool"] == "up_whoami" and whoami["status"] == "success"
    assert echo == {"kind": "tool", "tool": "up_echo", "server": "up", "original": "echo",
                    "status": "success", "error": None, "rule": None, "client": "stdio",
                    "arguments": {"text": "ab", "times": 3}}
    assert refused["status"] == "error" and "refused: no" in refused["error"]


async def test_the_event_bus_hears_of_lane_and_full_path_calls_alike(tmp_path: Path) -> None:
    """The call observer publishes only while someone subscribes (the dashboard's live
    stream); a subscriber then hears of every call, express lane or not."""
    config = write_config(tmp_path)
    heard = {}
    for lane in (True, False):
        sink = tmp_path / f"events-{lane}.jsonl"
        async with raw_host(config, "legacy", lane=lane, env={"HOOK_EVENTS": str(sink)},
                            command=HOOKED) as host:
            assert lane_id(await host.call("up_whoami")).startswith("gw-") is lane
            await host.call("up_echo", {"text": "ab"})
        # The gateway has exited: its listener wrote every event queued before then.
        heard[lane] = [{k: v for k, v in e["payload"].items() if k != "duration_ms"}
                       for e in observed(sink) if e["kind"] == "call"]
    assert heard[True] == heard[False] == [
        {"server": "up", "client": "stdio", "client_kind": "host", "kind": "tool",
         "name": name, "status": "success", "retries": 0}
        for name in ("up_whoami", "up_echo")]


def test_the_call_publisher_builds_nothing_while_nobody_listens() -> None:
    from fast_mcp_gateway.telemetry.events import EventBus
    from fast_mcp_gateway.ui.feeds import call_publisher

    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"read {name} with nobody listening")

    bus = EventBus()
    observe = call_publisher(bus)
    observe(Untouchable())  # type: ignore[arg-type]
    assert bus.published == 0 and not bus.listening
    with bus.subscribe() as stream:
        assert bus.listening
        gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
        service = gateway.manager.services["alpha"]
        call = Call("tool", "alpha_add", service, "add", {}, FrontCall(session=None),
                    local_principal(), service)
        observe(CallOutcome(call, "success", None, 1.0, None, 10))
        event = stream.get_nowait()
    assert event is not None and event.payload["name"] == "alpha_add"
    assert (event.payload["client"], event.payload["client_kind"]) == ("stdio", "host")
    assert not bus.listening


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_an_authorizer_refuses_on_both_paths_with_the_same_error(
        tmp_path: Path, era: str) -> None:
    config = write_config(tmp_path)
    answers, outcomes = {}, {}
    for lane in (True, False):
        sink = tmp_path / f"observed-{lane}.jsonl"
        env = {"HOOK_OBSERVED": str(sink), "HOOK_REFUSE": "up_slow"}
        async with raw_host(config, era, lane=lane, env=env, command=HOOKED) as host:
            assert lane_id(await host.call("up_whoami")).startswith("gw-") is lane
            answers[lane] = await host.call("up_slow", {"seconds": 0, "tag": "no"})
            # Had it gone upstream, the answer would have waited for the tool to run.
            assert not await anyio.Path(tmp_path / "no.started").exists()
        outcomes[lane] = timeless(observed(sink))[-1]
    assert answers[True] == answers[False]
    assert answers[True]["isError"] is True
    reason = "client 'stdio' may not call 'up_slow' (test policy)"
    assert answers[True]["content"] == [{"type": "text", "text": reason}]
    assert outcomes[True] == outcomes[False]
    assert outcomes[True]["status"] == "rejected" and outcomes[True]["error"] == reason


def two_servers(tmp_path: Path) -> Path:
    """``up`` and ``twin``: the same upstream program, each marking into its own folder."""
    lines = ["servers:"]
    for name in ("up", "twin"):
        (tmp_path / name).mkdir()
        lines += [f"  {name}:", f"    command: {json.dumps(PY)}",
                  f"    args: [{json.dumps(str(SERVERS / 'lane.py'))}]",
                  f"    env: {{LANE_MARKS: {json.dumps(str(tmp_path / name))}}}"]
    path = tmp_path / "servers.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_a_route_rule_applies_on_both_paths(tmp_path: Path) -> None:
    config = two_servers(tmp_path)
    outcomes = {}
    for lane in (True, False):
        sink = tmp_path / f"observed-{lane}.jsonl"
        env = {"HOOK_OBSERVED": str(sink), "MCP_GATEWAY_DB": str(tmp_path / f"{lane}.db")}
        async with raw_host(config, "legacy", lane=lane, env=env, command=HOOKED) as host:
            with anyio.fail_after(30):  # the route needs twin's catalog
                while True:
                    tools = (await host.request("tools/list"))["result"]["tools"]
                    if any(t["name"] == "twin_whoami" for t in tools):
                        break
                    await anyio.sleep(0.05)  # another process's start-up: nothing to wait on
            await host.call("gateway_add_route", {"pattern": "up_", "match": "prefix",
                                                  "target": "twin"})
            assert lane_id(await host.call("up_whoami")).startswith("gw-") is lane
            slept = await host.call("up_slow", {"seconds": 0, "tag": "routed"})
            assert slept["content"] == [{"type": "text", "text": "slept"}]
        (tmp_path / "twin" / "routed.finished").unlink()  # twin ran it (and the next run must)
        assert not (tmp_path / "up" / "routed.started").exists()
        outcomes[lane] = [o for o in timeless(observed(sink)) if o["tool"].startswith("up_")]
    assert outcomes[True] == outcomes[False]
    rule = "#1 prefix 'up_' -> twin"
    assert [(o["tool"], o["server"], o["original"], o["rule"]) for o in outcomes[True]] == [
        ("up_whoami", "twin", "whoami", rule), ("up_slow", "twin", "slow", rule)]


async def test_resources_and_prompts_are_authorized_and_observed(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db")
    pipeline = gateway.provider.pipeline
    seen: list[CallOutcome] = []
    pipeline.observers.append(seen.append)
    refused: set[str] = set()

    async def authorize(call: Call) -> str | None:
        return f"no {call.kind} '{call.exposed}' for you" if call.exposed in refused else None

    pipeline.authorizer = authorize
    async with Client(gateway.server) as client:
        assert (await client.read_resource("data://alpha/items/7"))[0].text == "item-7"
        prompt = await client.get_prompt("alpha_greet", {"name": "Ada"})
        assert "Hello Ada" in prompt.messages[0].content.text
        assert [(o.kind, o.tool, o.server, o.call.original, o.status) for o in seen] == [
            ("resource", "data://alpha/items/7", "alpha", "data://items/7", "success"),
            ("prompt", "alpha_greet", "alpha", "greet", "success")]
        assert all(o.response_bytes and o.response_bytes > 0 for o in seen)

        refused.update({"data://alpha/config", "alpha_greet", "alpha_add"})
        with pytest.raises(MCPError, match="no resource 'data://alpha/config' for you"):
            await client.read_resource("data://alpha/config")
        with pytest.raises(MCPError, match="no prompt 'alpha_greet' for you"):
            await client.get_prompt("alpha_greet", {"name": "Ada"})
        with pytest.raises(ToolError, match="no tool 'alpha_add' for you"):
            await client.call_tool("alpha_add", {"a": 1, "b": 2})
        assert [(o.kind, o.status, o.error) for o in seen[2:]] == [
            ("resource", "rejected", "no resource 'data://alpha/config' for you"),
            ("prompt", "rejected", "no prompt 'alpha_greet' for you"),
            ("tool", "rejected", "no tool 'alpha_add' for you")]
        # The recorder is an observer like any other: refusals are recorded too.
        calls = (await client.call_tool("gateway_calls", {"tool": "alpha_add"})).data.calls
        assert [(c.status, c.error) for c in calls] == [
            ("rejected", "no tool 'alpha_add' for you")]


async def test_a_failing_observer_does_not_fail_the_call(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    seen: list[str] = []

    def broken(outcome: CallOutcome) -> None:
        raise RuntimeError("observer bug")

    gateway.provider.pipeline.observers += [broken, lambda o: seen.append(o.tool)]
    async with Client(gateway.server) as client:
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
    assert seen == ["alpha_add"]
