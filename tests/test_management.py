"""Managing servers at runtime: persisted registrations, import/export, hot reload."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import pytest
import yaml
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import Gateway, GatewaySettings, load_config
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_transports

pytestmark = pytest.mark.anyio


def memory() -> dict[str, object]:
    return {"alpha": alpha_server(), "beta": beta_server()}


def url(name: str) -> str:
    return f"http://127.0.0.1:9/in-memory/{name}"


class _Changes(MessageHandler):
    def __init__(self) -> None:
        self.tools = anyio.Event()

    async def on_tool_list_changed(self, message: object) -> None:
        self.tools.set()


async def tool_names(client: Client) -> set[str]:
    return {t.name for t in await client.list_tools()}


async def test_registered_servers_persist_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    servers = {"alpha": {"url": url("alpha")}}
    changes = _Changes()
    gateway = make_gateway(servers, memory(), db=db)
    async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
        await client.list_tools()
        added = (await client.call_tool("gateway_add_server", {
            "name": "beta", "config": {"url": url("beta"), "namespace": "b"}})).data
        assert added.added == ["beta"]
        with anyio.fail_after(10):
            await changes.tools.wait()
        assert "b_echo" in await tool_names(client)
        with pytest.raises(ToolError, match="already exists; use gateway_update_server"):
            await client.call_tool("gateway_add_server", {"name": "beta",
                                                          "config": {"url": url("beta")}})
        with pytest.raises(ToolError, match="field 'comand': unknown field; did you mean"):
            await client.call_tool("gateway_add_server", {"name": "x",
                                                          "config": {"comand": "python"}})
        with pytest.raises(ToolError, match="namespace 'b' is already used by server 'beta'"):
            await client.call_tool("gateway_add_server", {"name": "y", "config": {
                "url": url("alpha"), "namespace": "b"}})
        await client.call_tool("gateway_disable_server", {"name": "alpha"})
    # A new gateway on the same store: beta is back, alpha stays disabled.
    gateway = make_gateway(servers, memory(), db=db)
    async with Client(gateway.server) as client:
        names = await tool_names(client)
        assert "b_echo" in names and not any(n.startswith("alpha_") for n in names)
        await client.call_tool("gateway_enable_server", {"name": "alpha"})
        updated = (await client.call_tool("gateway_update_server", {
            "name": "beta", "config": {"url": url("beta"), "namespace": "bee"}})).data
        assert updated.restarted == ["beta"]
        assert {"bee_echo", "alpha_add"} <= await tool_names(client)
        # Enabling a server that is already enabled changes nothing, but is still audited.
        await client.call_tool("gateway_enable_server", {"name": "beta"})
        await client.call_tool("gateway_remove_server", {"name": "alpha"})
        assert not any(n.startswith("alpha_") for n in await tool_names(client))
        audit = (await client.call_tool("gateway_audit", {})).structured_content["entries"]
        assert [(a["action"], a["target"]) for a in audit][:4] == [
            ("remove_server", "alpha"), ("enable_server", "beta"), ("update_server", "beta"),
            ("enable_server", "alpha")]
    gateway = make_gateway(servers, memory(), db=db)
    async with Client(gateway.server) as client:
        names = await tool_names(client)
        assert "bee_echo" in names and not any(n.startswith("alpha_") for n in names)


async def test_export_redacts_and_import_accepts_claude_files(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("BETA_TOKEN", "sekrit-token-123")
    gateway = make_gateway({"alpha": {"url": url("alpha"),
                                      "headers": {"X-Key": "${BETA_TOKEN}"}}},
                           memory(), db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        exported = (await client.call_tool("gateway_export_servers", {})).data
        assert "sekrit-token-123" not in exported
        assert yaml.safe_load(exported)["servers"]["alpha"]["headers"] == {"X-Key": "***"}
        claude = json.loads((await client.call_tool("gateway_export_servers",
                                                    {"format": "claude"})).data)
        assert claude["mcpServers"]["alpha"]["type"] == "http"
        imported = (await client.call_tool("gateway_import_servers", {"content": json.dumps(
            {"mcpServers": {"beta": {"type": "http", "url": url("beta")},
                            "alpha": {"url": url("alpha")}}})})).data
        assert imported.added == ["beta"] and imported.unchanged == ["alpha"]
        assert "beta_echo" in await tool_names(client)


async def test_the_file_watcher_reloads_and_restarts_only_what_changed(
        tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text(f"servers:\n  alpha:\n    url: {url('alpha')}\n")
    gateway = Gateway(load_config(path),
                      GatewaySettings(config=path, db=tmp_path / "g.db", reload_interval=0.05),
                      transport_factory=memory_transports(memory()))
    async with Client(gateway.server) as client:
        alpha = gateway.manager.get("alpha").replicas[0]
        path.write_text(f"servers:\n  alpha:\n    url: {url('alpha')}\n"
                        f"  beta:\n    url: {url('beta')}\n")
        control = gateway.control
        assert await control.reloads.wait_until(lambda: control.last_reload is not None, 10)
        report = control.last_reload
        assert report is not None and report.added == ["beta"]
        assert report.unchanged == ["alpha"]
        assert alpha.connects == 1 and gateway.manager.get("alpha").replicas[0] is alpha
        assert {"alpha_add", "beta_echo"} <= await tool_names(client)
        # The audit says what reloaded it: the watcher, not an anonymous "library".
        assert gateway.store is not None
        reloads = [e for e in await gateway.store.audit() if e.action == "reload_config"]
        assert [e.actor for e in reloads] == ["config-file"]


async def test_explicit_reload_rejects_bad_edits_and_restarts_what_changed(
        tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text(f"servers:\n  alpha:\n    url: {url('alpha')}\n"
                    f"  beta:\n    url: {url('beta')}\n")
    # No watcher here (interval 0): each reload below is the explicit one being tested.
    gateway = Gateway(load_config(path),
                      GatewaySettings(config=path, db=tmp_path / "g.db", reload_interval=0),
                      transport_factory=memory_transports(memory()))
    async with Client(gateway.server) as client:
        # An error of the whole file: rejected, everything kept running.
        path.write_text("gateway:\n  admn: full\nservers:\n  alpha:\n    comand: nope\n")
        rejected = await gateway.reload_config()
        assert rejected.error and "field 'gateway.admn'" in rejected.error
        assert "field 'comand'" in rejected.error  # every problem named
        assert {"alpha_add", "beta_echo"} <= await tool_names(client)  # kept running
        # One server's: that server keeps its last valid entry, the rest applies.
        path.write_text("servers:\n  alpha:\n    comand: nope\n")
        kept = await gateway.reload_config()
        assert kept.error is None and kept.removed == ["beta"]
        assert "field 'comand'" in kept.invalid["alpha"]
        assert "alpha_add" in await tool_names(client)
        path.write_text(f"servers:\n  alpha:\n    url: {url('alpha')}\n"
                        f"  beta:\n    url: {url('beta')}\n")
        assert (await gateway.reload_config()).added == ["beta"]

        path.write_text(f"servers:\n  alpha:\n    url: {url('alpha')}\n    namespace: a\n")
        report = (await client.call_tool("gateway_reload_config", {})).data
        assert report.restarted == ["alpha"] and report.removed == ["beta"]
        names = await tool_names(client)
        assert "a_add" in names and not any(n.startswith("beta_") for n in names)


async def test_a_stored_registration_that_does_not_validate_is_said_and_removable(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A registration that no longer validates (here a misspelt key, as an older version
    or another gateway's env_allow might leave) was logged as ignored at every start,
    with no way out: gateway_remove_server answered "no server named".  The log now says
    how to correct or remove it, and the remove forgets it."""
    from fast_mcp_gateway.store import SQLiteStore

    db = tmp_path / "g.db"
    store = await SQLiteStore.open(db)
    try:
        await store.put_server("stale", {"comand": "python"}, True)
    finally:
        await store.close()
    caplog.set_level(logging.WARNING, "fast_mcp_gateway")
    gateway = make_gateway({"alpha": {"url": url("alpha")}}, memory(), db=db)
    async with Client(gateway.server) as client:
        listed = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert [s["name"] for s in listed["servers"]] == ["alpha", "stale"]
        assert listed["servers"][1]["state"] == "invalid"  # shown, with its error
        ignored = [r.getMessage() for r in caplog.records
                   if r.getMessage().startswith("ignoring a runtime registration")]
        assert len(ignored) == 1 and "server 'stale', field 'comand'" in ignored[0]
        assert ("so it does not run; correct it with gateway_update_server, or remove it "
                "with gateway_remove_server") in ignored[0]
        removed = (await client.call_tool("gateway_remove_server", {"name": "stale"})).data
        assert removed.removed == ["stale"]
        assert gateway.store is not None and await gateway.store.servers() == []
        with pytest.raises(ToolError, match="no server named 'stale'"):
            await client.call_tool("gateway_remove_server", {"name": "stale"})
