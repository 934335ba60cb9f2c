"""The inspector and the audit log, end to end through a real client."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from tests.fixtures import (
    alpha_server,
    beta_server,
    make_gateway,
    memory_entry,
    replica_server,
    stdio_entry,
)

pytestmark = pytest.mark.anyio


async def test_inspect_lists_live_capabilities_with_original_names(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        listing = (await client.call_tool("gateway_inspect_server",
                                          {"name": "alpha"})).structured_content
    tools = {t["name"]: t for t in listing["tools"]}
    assert {"add", "wipe", "media"} <= set(tools)  # original names, not alpha_*
    assert tools["add"]["inputSchema"]["required"] == ["a", "b"]
    assert tools["add"]["annotations"]["readOnlyHint"] is True
    assert {r["uri"] for r in listing["resources"]} >= {"data://config", "urn:alpha:settings"}
    assert listing["resource_templates"][0]["uriTemplate"] == "data://items/{item_id}"
    assert listing["prompts"][0]["name"] == "greet"


async def test_inspector_operations_on_a_chosen_replica_are_kept_in_history(
        tmp_path: Path) -> None:
    memory = {"a": replica_server("a"), "b": replica_server("b"), "alpha": alpha_server()}
    gateway = make_gateway({
        "svc": {"instances": [{"url": "http://127.0.0.1:9/in-memory/a"},
                              {"url": "http://127.0.0.1:9/in-memory/b"}]},
        "alpha": memory_entry("alpha"),
    }, memory, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        for _ in range(3):  # no balancing: always the replica asked for
            call = (await client.call_tool("gateway_inspect_call_tool", {
                "name": "svc", "tool": "whoami", "replica": 1})).structured_content
            assert call["replica"] == "svc#1" and call["status"] == "success"
            assert call["result"]["content"][0]["text"] == "b"
        failing = (await client.call_tool("gateway_inspect_call_tool", {
            "name": "alpha", "tool": "fail", "arguments": {"message": "bad",
                                                           "token": "t0p-s3cret"}})).data
        assert failing.status == "error" and failing.result["isError"] is True
        read = (await client.call_tool("gateway_inspect_read_resource", {
            "name": "alpha", "uri": "data://items/5"})).data
        assert read.result["contents"][0]["text"] == "item-5"
        prompt = (await client.call_tool("gateway_inspect_get_prompt", {
            "name": "alpha", "prompt": "greet", "arguments": {"name": "Ada"}})).data
        assert "Hello Ada" in prompt.result["messages"][0]["content"]["text"]
        missing = (await client.call_tool("gateway_inspect_read_resource", {
            "name": "alpha", "uri": "data://nope"})).data
        assert missing.status == "failed" and missing.error
        assert "declares no" not in missing.error  # it declares resources: its own words

        history = (await client.call_tool("gateway_inspector_history",
                                          {"limit": 4})).structured_content
        assert [e["operation"] for e in history["entries"]] == [
            "resources/read", "prompts/get", "resources/read", "tools/call"]
        older = (await client.call_tool("gateway_inspector_history", {
            "limit": 10, "before_id": history["next_before_id"]})).structured_content
        assert len(older["entries"]) == 3
        assert all('"***"' in e["arguments"] for e in history["entries"][3:]
                   if e["arguments"] and "token" in e["arguments"])
        # The failed call's stored answer echoed its arguments: not the credential.
        stored = [e for e in history["entries"] if e["target"] == "fail"]
        assert stored and "t0p-s3cret" not in str(stored), stored
        per_server = (await client.call_tool("gateway_inspector_history",
                                             {"name": "svc"})).structured_content
        assert len(per_server["entries"]) == 3
        cleared = (await client.call_tool("gateway_inspector_clear", {"name": "svc"})).data
        assert cleared == {"removed": 3}

        audit = (await client.call_tool("gateway_audit", {})).structured_content["entries"]
        assert [a["action"] for a in audit][:2] == ["inspector_clear", "inspect_call_tool"]
        assert all(a["actor"] for a in audit)
        assert "t0p-s3cret" not in str(audit)


async def test_inspector_history_needs_the_store() -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    async with Client(gateway.server) as client:
        listing = await client.call_tool("gateway_inspect_server", {"name": "alpha"})
        assert listing.structured_content["server"] == "alpha"
        call = (await client.call_tool("gateway_inspect_call_tool", {
            "name": "alpha", "tool": "add", "arguments": {"a": 1, "b": 2}})).data
        assert call.id is None and call.result["structuredContent"] == {"result": 3}
        with pytest.raises(ToolError, match="runs without one"):
            await client.call_tool("gateway_inspector_history", {})
        with pytest.raises(ToolError, match="no server named 'zzz'"):
            await client.call_tool("gateway_inspect_server", {"name": "zzz"})


async def test_history_of_an_unknown_server_is_an_error_but_a_removed_ones_is_readable(
        tmp_path: Path) -> None:
    """gateway_calls, gateway_stats, gateway_health_history, gateway_inspector_history and
    gateway_inspector_clear answered a misspelt server with an empty page (or 0 removed):
    now the unknown-server error every other admin tool gives.  A removed server whose
    records the store still keeps stays readable (and clearable)."""
    gateway = make_gateway({"alpha": memory_entry("alpha"), "beta": memory_entry("beta")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        await client.call_tool("beta_echo", {"text": "hi"})
        await client.call_tool("gateway_inspect_call_tool", {
            "name": "beta", "tool": "echo", "arguments": {"text": "x"}})
        await client.call_tool("gateway_remove_server", {"name": "beta"})
        for tool, key in (("gateway_calls", "server"), ("gateway_stats", "server"),
                          ("gateway_health_history", "name"),
                          ("gateway_inspector_history", "name"),
                          ("gateway_inspector_clear", "name")):
            with pytest.raises(ToolError, match=r"no server named .alpah. \(known: alpha\)"):
                await client.call_tool(tool, {key: "alpah"})
        audit = (await client.call_tool("gateway_audit", {})).structured_content["entries"]
        assert audit[0]["action"] == "remove_server"  # the refused clear did nothing

        # A configured server without records: an empty answer, as before.
        assert (await client.call_tool("gateway_inspector_history",
                                       {"name": "alpha"})).data.entries == []
        assert (await client.call_tool("gateway_calls", {"server": "alpha"})).data.calls == []
        # The removed server's records.
        calls = (await client.call_tool("gateway_calls", {"server": "beta"})).data.calls
        assert [c.exposed for c in calls] == ["beta_echo"]
        stats = (await client.call_tool("gateway_stats", {"server": "beta"})).structured_content
        assert stats["groups"][0]["count"] == 1
        health = (await client.call_tool("gateway_health_history",
                                         {"name": "beta"})).structured_content
        assert health["records"]
        inspected = (await client.call_tool("gateway_inspector_history",
                                            {"name": "beta"})).data.entries
        assert len(inspected) == 1
        assert (await client.call_tool("gateway_inspector_clear",
                                       {"name": "beta"})).data == {"removed": 1}
        with pytest.raises(ToolError, match="no server named 'beta'"):  # nothing left
            await client.call_tool("gateway_inspector_history", {"name": "beta"})


async def test_the_history_masks_secrets_a_successful_answer_echoes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upstream that echoes its credential (its env, a registered secret) or the
    caller's credential argument in a *success*: the caller gets the answer as it came,
    the history (tool, REST and dashboard alike) keeps it masked."""
    planted = f"pl\u00e4nted-{secrets.token_hex(8)}"  # non-ASCII: JSON escapes it
    monkeypatch.setenv("GW_INSPECT_PLANTED", planted)
    echo = FastMCP("echo")

    @echo.tool
    def whoami(password: str = "") -> dict[str, str]:
        return {"env": planted, "echo": password, "long": "x" * 100_000 + planted}

    gateway = make_gateway(
        {"echo": memory_entry("echo", headers={"X-Key": "${GW_INSPECT_PLANTED}"})},
        {"echo": echo}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        call = (await client.call_tool("gateway_inspect_call_tool", {
            "name": "echo", "tool": "whoami",
            "arguments": {"password": "hunter2-arg"}})).structured_content
        assert call["status"] == "success"
        assert call["result"]["structuredContent"]["env"] == planted  # untouched
        assert call["result"]["structuredContent"]["echo"] == "hunter2-arg"
        history = (await client.call_tool("gateway_inspector_history",
                                          {})).structured_content["entries"]
    stored = history[0]["result"]
    assert planted not in stored and json.dumps(planted)[1:-1] not in stored
    assert "hunter2-arg" not in stored and planted[:8] not in stored
    assert '\\"env\\":\\"***\\",\\"echo\\":\\"***\\"' in stored  # the text block


async def test_an_operation_the_server_declares_no_capability_for_says_so() -> None:
    """server-filesystem-like: no resources capability.  The inspector answered only the
    server's "Method not found", which read like a gateway fault."""
    gateway = make_gateway({"fid": stdio_entry("fidelity.py", "--no-resources")})
    async with Client(gateway.server) as client:
        read = (await client.call_tool("gateway_inspect_read_resource", {
            "name": "fid", "uri": "file:///srv/readme.txt"})).data
    assert read.status == "failed"
    assert read.error == (
        "fid declares no resources capability (its initialize answer lists none), so it "
        "cannot read resource 'file:///srv/readme.txt'; it answered 'Method not found'.  "
        "Use gateway_inspect_server to see what it offers, or inspect a server that "
        "declares resources")


async def test_a_name_hosts_see_is_answered_with_the_servers_own(tmp_path: Path) -> None:
    """A model calls the inspector with the names in its tool list (trial8): the server
    answered "not found" (a failed read, an isError call) as if the component were
    missing; the inspector says which name the server knows it by."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        async def inspect(tool: str, arguments: dict[str, object]) -> object:
            return (await client.call_tool(tool, {"name": "alpha", **arguments})).data

        call = await inspect("gateway_inspect_call_tool",
                             {"tool": "alpha_add", "arguments": {"a": 1, "b": 2}})
        prompt = await inspect("gateway_inspect_get_prompt", {"prompt": "alpha_greet"})
        listed = await inspect("gateway_inspect_read_resource", {"uri": "data://alpha/config"})
        templated = await inspect("gateway_inspect_read_resource",
                                  {"uri": "data://alpha/items/5"})
        own = await inspect("gateway_inspect_call_tool",
                            {"tool": "add", "arguments": {"a": 1, "b": 2}})
    for outcome, shown, server_own in [(call, "alpha_add", "add"),
                                       (prompt, "alpha_greet", "greet"),
                                       (listed, "data://alpha/config", "data://config"),
                                       (templated, "data://alpha/items/5", "data://items/5")]:
        assert outcome.status != "success", outcome
        assert outcome.error is not None and outcome.error.endswith(
            f"'{shown}' is the name hosts see; the inspector takes the server's own name, "
            f"'{server_own}' (as gateway_inspect_server lists it)"), outcome.error
    assert own.status == "success" and own.error is None
