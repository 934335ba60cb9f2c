"""A reload that changes ``gateway.admin`` changes which ``gateway_*`` tools hosts see.

Every admin tool is added at start; lists (``AdminVisibility``) and search (the index
of the gateway's own tools) show what the mode allows now, and a call by name of one it
does not allow gets the mode's refusal.  A reload that changes the mode rebuilds the
lists (the express lane's encoded ones too) and sends hosts ``tools/list_changed``.
Real gateways reloading a real config file, as a user does it: the
``gateway_reload_config`` tool, the file watcher, and SIGHUP to a real ``serve``.
"""

from __future__ import annotations

import json
import queue
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.admin.mcp_tools import ADMIN_TOOLS, admin_kind
from fast_mcp_gateway.principal import Principal
from tests.fixtures import ToolsChanged, alpha_server, make_gateway, memory_entry
from tests.test_hostile_stdin import DEADLINE, GatewayProcess

pytestmark = pytest.mark.anyio

ALL = {t.name for t in ADMIN_TOOLS}
READS = {t.name for t in ADMIN_TOOLS if admin_kind(t) == "read"}
MUTATING = ALL - READS
ENTRY = json.dumps(memory_entry("alpha"))


def write(config: Path, admin: str, exposure: str = "all") -> None:
    config.write_text(f'gateway: {{admin: "{admin}", exposure: {exposure}}}\n'
                      f"servers: {{alpha: {ENTRY}}}\n")


def gateway_over(config: Path, admin: str, exposure: str = "all", **settings: Any) -> Any:
    write(config, admin, exposure)
    return make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                        options={"admin": admin, "exposure": exposure}, config=config,
                        **settings)


async def listed(client: Client[Any]) -> set[str]:
    return {t.name for t in await client.list_tools()} & ALL


async def found(client: Client[Any]) -> set[str]:
    cards = (await client.call_tool("search_tools", {
        "query": "server servers route config health calls add remove", "server": "gateway",
        "k": 20})).structured_content["tools"]
    return {card["name"] for card in cards}


async def test_a_reload_that_narrows_gateway_admin_hides_the_tools_and_tells_hosts(
        tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    gateway = gateway_over(config, "full")
    changes = ToolsChanged()
    async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
        assert await listed(client) == ALL
        write(config, "read_only")
        assert (await client.call_tool("gateway_reload_config", {})).structured_content
        await changes.next(30)
        assert await listed(client) == READS
        with pytest.raises(ToolError, match=r"'gateway_disable_server' is turned off by "
                                            r"'gateway.admin: read_only'"):
            await client.call_tool("gateway_disable_server", {"name": "alpha"})
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        assert (await client.call_tool("gateway_list_servers", {})).structured_content
        # The same file again: nothing changed, nothing is announced.
        before = changes.count
        assert (await gateway.control.reload_config()).error is None
        write(config, "off")
        assert (await gateway.control.reload_config()).error is None
        await changes.next(30)
        assert changes.count == before + 1
        assert await listed(client) == set()
        with pytest.raises(ToolError, match=r"'gateway_list_servers' is turned off by "
                                            r"'gateway.admin: off'"):
            await client.call_tool("gateway_list_servers", {})


async def test_a_reload_that_widens_gateway_admin_lists_the_tools_without_a_restart(
        tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    # The file watcher reloads (an edit, as a user saves it); the test waits on the
    # host's list_changed, not on the watcher's interval.
    gateway = gateway_over(config, "off", reload_interval=0.05)
    changes = ToolsChanged()
    async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
        assert await listed(client) == set()
        # Off at start builds none (the admin operations are imported by the first build:
        # tests/test_import_budget.py), listed or not.
        own = gateway.provider.own
        assert set(own) == ALL and all(t._built is None for t in own.values())  # type: ignore[attr-defined]
        with pytest.raises(ToolError, match=r"'gateway_health' is turned off by "
                                            r"'gateway.admin: off'"):
            await client.call_tool("gateway_health", {})
        write(config, "read_only")
        await changes.next(30)
        assert await listed(client) == READS
        write(config, "full")
        await changes.next(30)
        assert await listed(client) == ALL
        status = (await client.call_tool("gateway_disable_server", {"name": "alpha"})).data
        assert status.enabled is False
        assert (await client.call_tool("gateway_enable_server", {"name": "alpha"})).data.enabled


async def test_search_follows_the_reloaded_mode(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    gateway = gateway_over(config, "full", "search")
    changes = ToolsChanged()
    async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
        await client.list_tools()  # the host to tell
        assert MUTATING & await found(client)
        write(config, "read_only", "search")
        assert (await gateway.control.reload_config()).error is None
        await changes.next(30)
        hits = await found(client)
        assert hits and hits <= READS
        # Not found, yet called by name: the mode's refusal, as on a direct call.
        with pytest.raises(ToolError, match=r"'gateway_add_server' is turned off by "
                                            r"'gateway.admin: read_only'"):
            await client.call_tool("call_tool", {"name": "gateway_add_server", "arguments": {
                "name": "x", "config": {"command": "true"}}})
        write(config, "off", "search")
        assert (await gateway.control.reload_config()).error is None
        await changes.next(30)
        assert await found(client) == set()
        write(config, "full", "search")
        assert (await gateway.control.reload_config()).error is None
        await changes.next(30)
        assert MUTATING & await found(client)
        assert (await client.call_tool("call_tool", {
            "name": "gateway_disable_server", "arguments": {"name": "alpha"}})
                ).structured_content["enabled"] is False


async def test_callers_without_scope_admin_see_none_in_any_mode(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    gateway = gateway_over(config, "off", "search")
    # As HTTP mode injects a verified token's principal (http/access.py).
    reader = Principal("reader", frozenset({"tools"}))
    gateway.provider.pipeline.resolve_principal = lambda: reader
    async with Client(gateway.server) as client:
        for mode in ("full", "read_only"):
            write(config, mode, "search")
            assert (await gateway.control.reload_config()).error is None
            assert await listed(client) == set()
            assert await found(client) == set()
            with pytest.raises(ToolError, match=r"requires scope 'admin'"):
                await client.call_tool("gateway_list_servers", {})


def _notification(process: GatewayProcess, method: str) -> None:
    """Until the gateway writes notification ``method`` (replies read meanwhile: none)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            raw = process.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {method} within {DEADLINE} s") from None
        assert raw, f"the gateway closed stdout (exit {process.proc.poll()})"
        message = json.loads(raw)
        assert "id" not in message, f"unexpected reply or request: {message}"
        if message.get("method") == method:
            return


def _listed(process: GatewayProcess) -> set[str]:
    return {t["name"] for t in process.request("tools/list")["result"]["tools"]} & ALL


CLOCK = ('servers:\n  clock:\n    command: ${GATEWAY_PYTHON}\n'
         '    args: ["-m", "fast_mcp_gateway.demo.clock"]\n')


@pytest.mark.timeout(300)
def test_sighup_changing_the_mode_reaches_the_express_lanes_lists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ``serve`` on pipes with the express lane, whose lists are encoded once
    per change: SIGHUP after an edit of ``gateway.admin`` rebuilds them."""
    monkeypatch.setenv("MCP_GATEWAY_RELOAD_INTERVAL", "0")  # only the signal reloads
    config = tmp_path / "servers.yaml"
    config.write_text('gateway: {admin: full}\n' + CLOCK)
    process = GatewayProcess(config, tmp_path / "g.db", tmp_path / "stderr.log", lane=True)
    try:
        process.ready("clock_now")
        assert _listed(process) == ALL == _listed(process)  # the lane's cached list
        for mode, shown in (("read_only", READS), ("off", set()), ("full", ALL)):
            config.write_text(f'gateway: {{admin: "{mode}"}}\n' + CLOCK)
            process.proc.send_signal(signal.SIGHUP)
            _notification(process, "notifications/tools/list_changed")
            assert _listed(process) == shown, mode
            if mode == "read_only":
                reply = process.request("tools/call", {
                    "name": "gateway_disable_server", "arguments": {"name": "clock"}})
                assert reply["result"]["isError"], reply
                assert ("'gateway_disable_server' is turned off by 'gateway.admin: read_only'"
                        in reply["result"]["content"][0]["text"]), reply
        reply = process.request("tools/call", {"name": "gateway_list_servers",
                                               "arguments": {}})
        assert not reply["result"].get("isError"), reply
        code = process.close()
    finally:
        process.kill()
    assert code == 0, (tmp_path / "stderr.log").read_text()


async def test_over_http_each_list_follows_the_reloaded_mode(tmp_path: Path) -> None:
    """HTTP lists go through FastMCP on every request: the admin's follow the mode, a
    token without scope ``admin`` sees none in any mode."""
    from tests.test_mcp_auth import ALICE, OPS, TOKENS, ready, serving

    config = tmp_path / "servers.yaml"
    servers = {"alpha": memory_entry("alpha"), "notes": memory_entry("notes")}

    def edit(admin: str) -> None:
        config.write_text(json.dumps({"gateway": {"admin": admin, "auth": {"tokens": TOKENS}},
                                      "servers": servers}))

    def build(base: str) -> Any:
        edit("full")
        return make_gateway(servers, {"alpha": alpha_server(), "notes": alpha_server()},
                            options={"admin": "full", "auth": {"tokens": TOKENS}},
                            public_url=base, config=config)

    async with serving(build) as (gateway, base):
        await ready(gateway, "alpha", "notes")
        async with Client(f"{base}/mcp", auth=OPS) as ops, \
                Client(f"{base}/mcp", auth=ALICE) as alice:
            assert await listed(ops) == ALL
            for mode, shown in (("read_only", READS), ("off", set()), ("full", ALL)):
                edit(mode)
                assert (await gateway.control.reload_config()).error is None
                assert await listed(ops) == shown, mode
                assert await listed(alice) == set()
            edit("read_only")
            assert (await gateway.control.reload_config()).error is None
            with pytest.raises(ToolError, match=r"'gateway_disable_server' is turned off by "
                                                r"'gateway.admin: read_only'"):
                await ops.call_tool("gateway_disable_server", {"name": "alpha"})
