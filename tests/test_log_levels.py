"""A handshake-era host's ``logging/setLevel`` holds for the logs of its own calls.

The gateway's upstream sessions ask for every level (one session serves every host), so
the host's level is the gateway's to apply.  It was applied to logs sent between calls
only: a host that set ``warning`` still got the ``info`` logs its calls caused (a
server asked directly sends none below the level: server-everything's simulated
logging through the gateway showed it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.fixtures import PY, SERVERS, WITHIN, make_gateway, serve_http, stdio_entry, until
from tests.test_lane import CLIENT_INFO, RawHost, write_config

pytestmark = pytest.mark.anyio


def _collector() -> tuple[list[str], Any]:
    got: list[str] = []

    async def on_log(message: Any) -> None:
        data = message.data  # FastMCP's ctx.info() sends {"msg": ..., "extra": ...}
        got.append(f"{message.level}:{data['msg'] if isinstance(data, dict) else data}")
    return got, on_log


async def _chatty_at_warning(client: Client[Any], tool: str, got: list[str]) -> None:
    # A host's log handler runs as its own task: the call's answer can come back first,
    # so each check waits for the count it expects (a leaked "info" arrives before the
    # "warning" of the same call, and the comparison catches it).
    await client.set_logging_level("warning")
    await client.call_tool(tool, {})
    await until(lambda: len(got) >= 1)
    assert got == ["warning:almost there"], got  # "info:working on it" held back
    await client.set_logging_level("debug")
    await client.call_tool(tool, {})
    await until(lambda: len(got) >= 3)
    assert got == ["warning:almost there", "info:working on it", "warning:almost there"], got


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # logging/setLevel, SEP-2577
@pytest.mark.parametrize("lane", [True, False])
async def test_a_stdio_hosts_level_holds_for_its_calls_logs(tmp_path: Path, lane: bool) -> None:
    transport = StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config",
                                    str(write_config(tmp_path)), "--no-db"],
                               env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": json.dumps(lane)},
                               keep_alive=False, log_file=tmp_path / "gateway.log")
    got, on_log = _collector()
    async with Client(transport, mode="legacy", log_handler=on_log) as client:
        await _chatty_at_warning(client, "up_chatty", got)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_an_http_hosts_level_holds_for_its_calls_logs(tmp_path: Path) -> None:
    gateway = make_gateway({"up": stdio_entry("lane.py", env={"LANE_MARKS": str(tmp_path)})})
    got, on_log = _collector()
    async with serve_http(gateway.http_app("http")) as base, \
            Client(f"{base}/mcp", mode="legacy", log_handler=on_log) as client:
        await _chatty_at_warning(client, "up_chatty", got)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full-path"])
async def test_a_host_that_set_a_level_gets_logs_between_calls_without_listing(
        tmp_path: Path, lane: bool) -> None:
    """A host that set a level asked for logs, whether or not it listed the catalog
    (trial8: a script, or the Inspector's CLI, calls a tool it already knows by name).
    It was told of the logs an upstream sent between calls only from its first list on:
    the gateway tracked a host when it listed, never when it set a level."""
    record, go = tmp_path / "asker.jsonl", tmp_path / "go"
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"asker": {
        "command": PY, "args": [str(SERVERS / "asker.py"), "stdio", "--record", str(record)],
        "protocol": "legacy"}}}))
    process = await anyio.open_process(
        [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(config), "--no-db",
         "--log-level", "WARNING"],
        env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": json.dumps(lane)}, stderr=None)
    async with process, anyio.create_task_group() as tg:
        host = RawHost(process, "legacy", None)
        tg.start_soon(host.read)
        assert "result" in await host.request("initialize", {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": CLIENT_INFO})
        await host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert "result" in await host.request("logging/setLevel", {"level": "info"})
        # No tools/list: the call waits for its server to connect.
        scheduled = await host.call("asker_log_later", {"text": "between calls",
                                                        "go": str(go)})
        assert scheduled["content"][0]["text"] == "scheduled", scheduled
        go.touch()  # the upstream logs now, with no call in flight
        await until(lambda: any(n["method"] == "notifications/message"
                                for n in host.notifications))
        logs = [n["params"] for n in host.notifications
                if n["method"] == "notifications/message"]
        assert [(m["level"], m["logger"], m["data"]) for m in logs] == [
            ("info", "asker.asker", "between calls")], logs
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(WITHIN):
            await process.wait()
        tg.cancel_scope.cancel()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # logging/setLevel, SEP-2577
async def test_an_http_host_that_only_set_a_level_gets_its_servers_logs_alone(
        tmp_path: Path) -> None:
    """The same over HTTP, for a token limited to one server: the level it set is enough
    to be told of its server's logs between calls, and of no other server's."""
    from tests.test_restricted_names import (
        MINE,
        OPS,
        asker_entry,
        logged,
        other_then_mine_log,
    )
    asker = asker_entry(tmp_path)
    auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                       {"name": "mo", "token": MINE, "scopes": ["tools"], "servers": ["mine"]}]}
    gateway = make_gateway({"mine": asker, "other": asker}, options={"auth": auth})
    logs: dict[str, list[str]] = {"ops": [], "mo": []}
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=OPS, mode="legacy", log_handler=logged(logs, "ops")) as ops,
        Client(f"{base}/mcp", auth=MINE, mode="legacy", log_handler=logged(logs, "mo")) as mo,
    ):
        for host in (ops, mo):
            await host.set_logging_level("debug")   # and no list
        await other_then_mine_log(ops, tmp_path, logs)
    assert logs["mo"] == ["mine.asker:from mine"]
