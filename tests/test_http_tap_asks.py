"""The stdio express lane in front of a handshake-era upstream over HTTP (http_tap.py).

The commonest real setup: a handshake-era host on stdio (Claude Desktop), the gateway,
and a remote MCP server of the handshake era over streamable HTTP.  The lane's calls go
through the upstream session's ``HttpTap`` (``gw-N`` ids upstream), and what the
upstream asks mid-call (sampling, elicitation) must reach the host that made the call
and its answer go back upstream, as on the full path.  Upstreams: ``tests/servers/
lane.py``'s FastMCP server served over HTTP in this process, and the official
TypeScript ``server-everything`` in streamable-HTTP mode (event ids on its streams).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Context

from tests import npm_tools
from tests.fixtures import SERVERS, serve_http, until
from tests.test_http_tap_handshake import Relay, _port
from tests.test_lane import PARITY_CALLS, both_paths, file_appears, lane_id, raw_host

pytestmark = pytest.mark.anyio


def http_config(tmp_path: Path, url: str, **extra: Any) -> Path:
    lines = ["servers:", "  up:", f"    url: {url}", "    protocol: legacy"]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    path = tmp_path / f"servers-{len(list(tmp_path.glob('servers-*')))}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def lane_upstream(tmp_path: Path) -> AsyncIterator[str]:
    """``tests/servers/lane.py``'s server over streamable HTTP; its URL."""
    spec = importlib.util.spec_from_file_location("lane_http_upstream", SERVERS / "lane.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.MARKS = tmp_path

    @module.mcp.tool
    async def roots(ctx: Context) -> list[str]:
        """A pushed roots/list (the handshake era's server request)."""
        return [str(root.uri) for root in (await ctx.session.list_roots()).roots]

    async with serve_http(module.mcp.http_app(path="/mcp")) as base:
        yield f"{base}/mcp"


async def test_the_lane_answers_a_legacy_http_upstreams_calls_as_the_full_path(
        tmp_path: Path) -> None:
    async with lane_upstream(tmp_path) as url:
        config = http_config(tmp_path, url)

        async def answers_of(lane: bool, env: dict[str, str]) -> list[dict[str, Any]]:
            async with raw_host(config, "legacy", lane=lane, env=env) as host:
                who = lane_id(await host.call("up_whoami"))
                assert who.startswith("gw-") is lane, who  # the tap's ids upstream
                answers = [await host.call(name, args) for name, args in PARITY_CALLS]
                assert host.unanswered == []
            return answers

        answers = await both_paths(tmp_path, answers_of)
    assert answers[True] == answers[False]
    assert answers[True][0]["content"] == [{"type": "text", "text": "héllo ✓ 漢字 🚀" * 2}]


async def test_a_legacy_host_answers_the_http_upstreams_sampling_request(
        tmp_path: Path) -> None:
    asked: list[dict[str, Any]] = []

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append({"method": method, **params})
        if method == "roots/list":
            return {"roots": [{"uri": "file:///work/project", "name": "project"}]}
        return {"role": "assistant", "model": "test-model",
                "content": {"type": "text", "text": "forty-two"}}

    async with lane_upstream(tmp_path) as url, \
            raw_host(http_config(tmp_path, url), "legacy",
                     capabilities={"sampling": {}, "roots": {}}, on_request=answer) as host:
        assert lane_id(await host.call("up_whoami")).startswith("gw-")
        result = await host.call("up_ask_model", {"question": "meaning of life?"})
        assert result["content"][0]["text"] == "model said: forty-two"
        assert [a["method"] for a in asked] == ["sampling/createMessage"]
        listed = await host.call("up_roots")
        assert listed["structuredContent"]["result"] == ["file:///work/project"], listed
        assert [a["method"] for a in asked] == ["sampling/createMessage", "roots/list"]
        # Logs of the call reach its host (handed to the session in its context).
        assert (await host.call("up_chatty"))["content"][0]["text"] == "done"
        await until(lambda: any("working on it" in str(n.get("params"))  # it may trail
                                for n in host.notifications))             # the answer
        # A host cancellation reaches the upstream tool (notifications/cancelled).
        call = {"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": {
            "name": "up_slow", "arguments": {"seconds": 30, "tag": "c1"}}}
        await host.send(call)
        await file_appears(tmp_path / "c1.started")
        await host.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                         "params": {"requestId": "slow-1", "reason": "user gave up"}})
        await file_appears(tmp_path / "c1.cancelled")
        assert lane_id(await host.call("up_whoami")).startswith("gw-")
        assert host.unanswered == []


@pytest.fixture
def tools() -> Path:
    folder = npm_tools.ensure()
    if folder is None:
        pytest.skip("npm is not available")
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def everything(tools: Path) -> AsyncIterator[str]:
    """server-everything in streamable-HTTP mode on a free port; its URL."""
    port = _free_port()
    script = npm_tools.package_path(tools, "@modelcontextprotocol/server-everything")
    process = await anyio.open_process(
        [str(npm_tools.node(tools)), str(script / "dist/index.js"), "streamableHttp"],
        env={**os.environ, "PORT": str(port)}, stdout=None, stderr=None)
    async with process:
        try:
            with anyio.fail_after(60):  # a Node process's start
                while True:
                    try:
                        stream = await anyio.connect_tcp("127.0.0.1", port)
                    except OSError:
                        await anyio.sleep(0.1)
                        continue
                    await stream.aclose()
                    break
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            process.terminate()
            with anyio.fail_after(20):
                await process.wait()


async def test_the_typescript_everything_server_over_legacy_http_through_the_lane(
        tools: Path, tmp_path: Path) -> None:
    asked: list[str] = []

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(method)
        if method == "sampling/createMessage":
            return {"role": "assistant", "model": "test-model",
                    "content": {"type": "text", "text": "sampled by the host"}}
        assert method == "elicitation/create", method
        return {"action": "accept", "content": {"name": "Ada", "check": True,
                                                "email": "ada@example.com"}}

    async with everything(tools) as url, Relay(_port(url)).serving() as relay, \
            raw_host(http_config(tmp_path, url.replace(f":{_port(url)}/", f":{relay.port}/")),
                     "legacy",
                     capabilities={"sampling": {}, "elicitation": {}}, on_request=answer,
                     listed=("up_echo", "up_trigger-elicitation-request")) as host:
        echoed = await host.call("up_echo", {"message": "héllo ✓"})
        assert echoed["content"][0]["text"] == "Echo: héllo ✓"
        # Its SSE answers are read to their end: the lane's calls keep one connection
        # (the SDK's client opened one per call: 6 here).  The relay counts every
        # connection, the health probes' too: one of those may be opened meanwhile (the
        # server closes a connection idle for 5 s, which a loaded machine reaches).
        accepted = relay.accepted
        for n in range(6):
            assert (await host.call("up_echo", {"message": str(n)}))["content"][0][
                "text"] == f"Echo: {n}"
        assert relay.accepted - accepted <= 1
        done = await host.call("up_trigger-long-running-operation",
                               {"duration": 0.3, "steps": 3}, meta={"progressToken": "p"})
        assert "completed" in done["content"][0]["text"].lower(), done
        progress = [n["params"]["progress"] for n in host.notifications
                    if n["method"] == "notifications/progress"
                    and n["params"]["progressToken"] == "p"]
        assert progress == [1, 2, 3]
        sampled = await host.call("up_trigger-sampling-request", {"prompt": "hi"})
        assert "sampled by the host" in str(sampled["content"]), sampled
        elicited = await host.call("up_trigger-elicitation-request", {})
        assert "Ada" in str(elicited["content"]), elicited
        assert asked == ["sampling/createMessage", "elicitation/create"]
        assert host.unanswered == []
