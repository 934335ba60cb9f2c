"""A handshake-era JSON-RPC host in front of the gateway's stdio, a 1.x SDK server behind.

The host writes the protocol by hand (``tests/test_lane.RawHost``), on the express lane
and on the full FastMCP path; the server (``tests/servers/sdk1.py``, mcp 1.30.0) runs
on stdio, SSE and streamable HTTP.  Each answer, each progress and log notification and
each pushed ask must be what the same host gets talking to the server directly over
stdio, with only the gateway's namespace added (``v1_`` names, ``data://v1/`` URIs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.fixtures import SERVERS, until
from tests.sdk1_peers import MODEL_REPLY, TRANSPORTS, sdk1_python, sdk1_server
from tests.test_lane import CLIENT_INFO, RawHost, both_paths, raw_host

pytestmark = pytest.mark.anyio
CAPABILITIES = {"elicitation": {}, "sampling": {}}
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("tools/list", {}), ("prompts/list", {}), ("resources/list", {}),
    ("resources/templates/list", {}),
    ("tools/call", {"name": "add", "arguments": {"a": 2, "b": 40}}),
    ("tools/call", {"name": "weather", "arguments": {"city": "Oslo"}}),
    ("tools/call", {"name": "echo", "arguments": {"text": "héllo ✓"}}),
    ("tools/call", {"name": "greet", "arguments": {}}),
    ("tools/call", {"name": "summarize", "arguments": {"text": "a long text"}}),
    ("tools/call", {"name": "fail", "arguments": {"reason": "asked"}}),
    ("tools/call", {"name": "add", "arguments": {"a": "x"}}),
    ("tools/call", {"name": "count", "arguments": {"steps": 3},
                    "_meta": {"progressToken": "p-1"}}),
    ("resources/read", {"uri": "data://sdk1/greeting"}),
    ("resources/read", {"uri": "data://sdk1/items/pear"}),
    ("resources/read", {"uri": "data://sdk1/nope"}),
    ("prompts/get", {"name": "review", "arguments": {"code": "x = 1", "language": "perl"}}),
    ("prompts/get", {"name": "hello"}),
    ("completion/complete", {"ref": {"type": "ref/prompt", "name": "review"},
                             "argument": {"name": "language", "value": "p"}}),
    ("completion/complete", {"ref": {"type": "ref/resource",
                                     "uri": "data://sdk1/items/{item}"},
                             "argument": {"name": "item", "value": "ap"}}),
]


@pytest.fixture(scope="module")
def python() -> Path:
    return sdk1_python()


def exposed(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the gateway's names: ``v1_`` tools and prompts, ``data://v1/``."""
    text = json.dumps(params).replace('"data://', '"data://v1/')
    out = json.loads(text)
    if "name" in out:
        out["name"] = "v1_" + out["name"]
    if out.get("ref", {}).get("name"):
        out["ref"]["name"] = "v1_" + out["ref"]["name"]
    return out


def bare(message: Any) -> Any:
    """A relayed message with the gateway's names taken off again."""
    out = json.loads(json.dumps(message).replace('"data://v1/', '"data://')
                     .replace("Unknown resource: data://v1/", "Unknown resource: data://"))
    for key in ("tools", "prompts"):
        for item in (out.get(key) or []):
            if item["name"].startswith("v1_"):
                item["name"] = item["name"][3:]
        if key in out:
            out[key] = [i for i in out[key] if not i["name"].startswith("gateway_")]
    for key, by in (("tools", "name"), ("prompts", "name"), ("resources", "uri"),
                    ("resourceTemplates", "uriTemplate")):
        if key in out:  # the gateway lists by exposed name, the 1.x SDK as registered
            out[key] = sorted(out[key], key=lambda i: i[by])
    return out


class Host:
    """What one raw host saw: answers in order, notifications, asks."""

    def __init__(self) -> None:
        self.asks: list[tuple[str, dict[str, Any]]] = []

    async def on_request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.asks.append((method, params))
        if method == "elicitation/create":
            return {"action": "accept", "content": {"name": "Ada"}}
        return {"role": "assistant", "content": {"type": "text", "text": MODEL_REPLY},
                "model": "host-model"}

    async def run(self, host: RawHost, relayed: bool) -> dict[str, Any]:
        answers = []
        for method, params in REQUESTS:
            reply = await host.request(method, exposed(params) if relayed else params)
            answers.append(bare(reply.get("result", reply.get("error"))))
        notes = [(n["method"], {k: v for k, v in n["params"].items() if k != "logger"})
                 for n in host.notifications
                 if n["method"] in ("notifications/progress", "notifications/message")]
        return {"answers": answers, "notifications": notes, "asks": self.asks}


async def direct_run(python: Path) -> dict[str, Any]:
    process = await anyio.open_process([str(python), str(SERVERS / "sdk1.py"), "stdio"],
                                       stderr=None)
    seen = Host()
    async with process, anyio.create_task_group() as tg:
        host = RawHost(process, "legacy", seen.on_request)
        tg.start_soon(host.read)
        reply = await host.request("initialize", {"protocolVersion": "2025-11-25",
                                                  "capabilities": CAPABILITIES,
                                                  "clientInfo": CLIENT_INFO})
        assert reply["result"]["serverInfo"]["version"] == "1.30.0"
        await host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        observed = await seen.run(host, relayed=False)
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(20):
            await process.wait()
        tg.cancel_scope.cancel()
    return observed


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_raw_handshake_era_host_sees_the_1x_server_as_it_is(
        python: Path, transport: str, tmp_path: Path) -> None:
    expected = await direct_run(python)
    # What the direct session shows: all of it, so the comparison below means something.
    answers = expected["answers"]
    assert answers[4]["structuredContent"] == {"result": 42}
    assert answers[9]["isError"] is True
    assert answers[14]["message"] == "Unknown resource: data://sdk1/nope"
    assert [m for m, _ in expected["asks"]] == ["elicitation/create", "sampling/createMessage"]
    assert len(expected["notifications"]) == 6
    async with sdk1_server(python, transport, tmp_path) as entry:
        config = tmp_path / "servers.json"
        config.write_text(json.dumps({"servers": {"v1": entry}}))

        async def each(lane: bool, env: dict[str, str]) -> dict[str, Any]:
            seen = Host()
            async with raw_host(config, "legacy", lane=lane, capabilities=CAPABILITIES,
                                on_request=seen.on_request, env=env,
                                listed=("v1_add",)) as host:
                return await seen.run(host, relayed=True)

        relayed = await both_paths(tmp_path, each)
    for lane in (True, False):
        for key in expected:
            if key == "answers":
                for index, answer in enumerate(expected[key]):
                    assert relayed[lane][key][index] == answer, (lane, REQUESTS[index])
            assert relayed[lane][key] == expected[key], (lane, key)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_host_cancelling_a_call_cancels_it_in_the_1x_server(
        python: Path, transport: str, tmp_path: Path) -> None:
    """``notifications/cancelled`` reaches the 1.x server's tool (its ``finally`` runs);
    the 1.x SDK's own answer to the cancelled request (``code 0 Request cancelled``, which
    the spec says it should not send) is not relayed, and the next call is served."""
    async with sdk1_server(python, transport, tmp_path) as entry:
        config = tmp_path / "servers.json"
        config.write_text(json.dumps({"servers": {"v1": entry}}))

        async def each(lane: bool, env: dict[str, str]) -> list[Any]:
            marker = tmp_path / f"wait-{lane}"
            async with raw_host(config, "legacy", lane=lane, env=env,
                                listed=("v1_wait",)) as host, anyio.create_task_group() as tg:
                tg.start_soon(lambda: host.request("tools/call", {
                    "name": "v1_wait", "arguments": {"marker": str(marker)}},
                    request_id="waiting"))
                await until(lambda: marker.exists() and marker.read_text() == "started")
                await host.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                 "params": {"requestId": "waiting", "reason": "gave up"}})
                await until(lambda: marker.read_text() == "cancelled")
                added = await host.call("v1_add", {"a": 1, "b": 2})
                tg.cancel_scope.cancel()  # the cancelled request is never answered
                return [added["structuredContent"], host.unanswered, "waiting" in host.answers]

        results = await both_paths(tmp_path, each)
    assert results[True] == results[False] == [{"result": 3}, [], False]
