"""The gateway between real ecosystem peers: TypeScript-SDK and PyPI servers, the Inspector.

These install pinned npm packages on first use (see ``tests/npm_tools.py``) and skip only
when npm itself is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests import npm_tools
from tests.fixtures import make_gateway, until

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tools() -> Path:
    folder = npm_tools.ensure()
    if folder is None:
        pytest.skip("npm is not installed: cannot fetch the ecosystem's reference servers")
    return folder


def everything_entry(tools: Path) -> dict[str, object]:
    script = npm_tools.package_path(tools, "@modelcontextprotocol/server-everything")
    return {"command": str(npm_tools.node(tools)), "args": [str(script / "dist/index.js"), "stdio"]}


async def _sample(messages: object, params: object, context: object) -> str:
    return "a reply from the host's model"


async def _exercise_everything_tools(client: Client[Any]) -> None:
    """server-everything's tools through a gateway: text, numbers, an image, progress and
    a sampling request the upstream pushes to the host (``_sample`` answers it)."""
    echo = await client.call_tool("everything_echo", {"message": "héllo ✓"})
    assert echo.content[0].text == "Echo: héllo ✓"
    total = await client.call_tool("everything_get-sum", {"a": 2, "b": 40})
    assert "42" in total.content[0].text
    image = await client.call_tool_mcp("everything_get-tiny-image", {})
    assert any(isinstance(c, types.ImageContent) and c.mime_type == "image/png"
               for c in image.content)
    steps: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        steps.append(p)

    await client.call_tool("everything_trigger-long-running-operation",
                           {"duration": 0.3, "steps": 3}, progress_handler=on_progress)
    await until(lambda: len(steps) >= 3)  # the handler runs as its own task
    assert len(steps) == 3
    sampled = await client.call_tool("everything_trigger-sampling-request",
                                     {"prompt": "hi", "maxTokens": 20})
    assert "a reply from the host's model" in json.dumps(
        [c.model_dump(mode="json") for c in sampled.content])


@pytest.mark.anyio
async def test_typescript_reference_server_through_the_gateway(tools: Path) -> None:
    gateway = make_gateway({"everything": everything_entry(tools)})

    async with Client(gateway.server, mode="legacy", sampling_handler=_sample) as client:
        upstream = gateway.manager.get("everything").replicas[0]
        assert upstream.protocol_version == "2025-11-25"  # TS-SDK servers are handshake era
        names = {t.name for t in await client.list_tools()}
        assert {"everything_echo", "everything_get-sum", "everything_get-tiny-image",
                "everything_trigger-sampling-request"} <= names
        await _exercise_everything_tools(client)
        resources = await client.list_resources()
        assert resources and all(str(r.uri).startswith("demo://everything/")
                                 for r in resources)
        read = await client.read_resource(resources[0].uri)
        assert read
        prompts = {p.name for p in await client.list_prompts()}
        assert any(name.startswith("everything_") for name in prompts)


@pytest.mark.anyio
async def test_typescript_reference_server_behind_mcp_gateway_serve(
        tools: Path, tmp_path: Path) -> None:
    """The same upstream behind the real stdio front, where calls take the express lane
    (a handshake-era host and upstream): results, progress and a pushed sampling request."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"everything": everything_entry(tools)}}))
    transport = StdioTransport(sys.executable, ["-m", "fast_mcp_gateway", "serve",
                                                "--config", str(config)], keep_alive=False,
                               env={**os.environ, "MCP_GATEWAY_DB": str(tmp_path / "g.db"),
                                    "MCP_GATEWAY_LOG_LEVEL": "DEBUG"},
                               log_file=tmp_path / "gateway.log")

    async with Client(transport, mode="legacy", sampling_handler=_sample) as client:
        while "everything_echo" not in {t.name for t in await client.list_tools()}:  # noqa: ASYNC110 - upstream start-up
            await anyio.sleep(0.05)
        await _exercise_everything_tools(client)
    # The calls took the express lane, and were recorded like any other.
    log = (tmp_path / "gateway.log").read_text()
    for tool in ("everything_echo", "everything_trigger-sampling-request"):
        assert f"express lane: tools/call {tool} " in log
    logs = await anyio.run_process([sys.executable, "-m", "fast_mcp_gateway", "logs",
                                    "--db", str(tmp_path / "g.db"), "--json"])
    records = [json.loads(line) for line in logs.stdout.decode().splitlines()]
    assert {r["exposed"] for r in records} >= {"everything_echo",
                                               "everything_trigger-sampling-request"}
    assert all(r["status"] == "success" for r in records)


@pytest.mark.anyio
async def test_pypi_time_server_through_the_gateway() -> None:
    gateway = make_gateway({"time": {"command": sys.executable,
                                     "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}})
    async with Client(gateway.server) as client:
        result = await client.call_tool("time_get_current_time", {"timezone": "Europe/Paris"})
        assert "Europe/Paris" in result.content[0].text
        converted = await client.call_tool("time_convert_time", {
            "source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
        assert "21:00" in converted.content[0].text


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_the_official_inspector_cli_drives_the_gateway(tools: Path, era: str) -> None:
    inspector = npm_tools.package_path(tools, "@modelcontextprotocol/inspector")
    launcher = inspector / "clients/launcher/build/index.js"
    env = {**os.environ, "PATH": f"{npm_tools.node(tools).parent}{os.pathsep}{os.environ['PATH']}"}
    gateway = [sys.executable, "-m", "fast_mcp_gateway", "serve", "--startup-wait", "600",
               "--config", str(REPO / "servers.yaml")]

    def inspect(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [str(npm_tools.node(tools)), str(launcher), "--cli", "--protocol-era", era, *args,
             "--", *gateway],
            capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    listed = inspect("--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}  # type: ignore[index]
    assert {"notes_add_note", "clock_add", "gateway_list_servers"} <= names
    added = inspect("--method", "tools/call", "--tool-name", "clock_add",
                    "--tool-arg", "a=2", "b=3")
    assert added["structuredContent"] == {"result": 5.0}
    read = inspect("--method", "resources/read", "--uri", "notes://notes/all")
    assert "Welcome" in json.dumps(read)
    prompt = inspect("--method", "prompts/get", "--prompt-name", "clock_plan_meeting",
                     "--prompt-args", "cities=Oslo, Lima")
    assert "Oslo, Lima" in json.dumps(prompt)




