"""The stdio express lane (lane.py): upstream tools/call relayed as JSON.

The lane only exists on a real stdio front, so every test runs ``mcp-gateway serve``
as a subprocess and speaks raw JSON-RPC to it (``RawHost``), or drives it with a
fastmcp client.  ``tests/servers/lane.py``'s ``whoami`` tool tells which path a
call took: the lane sends ``gw-N`` request ids upstream, the SDK session integers.
The parity tests send the same calls through the lane and through the full
FastMCP path (``MCP_GATEWAY_EXPRESS_LANE=false``) and compare the answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from fast_mcp_gateway.front.wire import encode_line
from tests.fixtures import PY, SERVERS, WITHIN, until

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
CLIENT_INFO = {"name": "raw-host", "version": "1"}
Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def write_config(tmp_path: Path, **extra: Any) -> Path:
    lines = ["servers:", "  up:", f"    command: {json.dumps(PY)}",
             f"    args: [{json.dumps(str(SERVERS / 'lane.py'))}]",
             f"    env: {{LANE_MARKS: {json.dumps(str(tmp_path))}}}"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in extra.items()]
    path = tmp_path / f"servers-{len(list(tmp_path.glob('servers-*')))}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class RawHost:
    """A host speaking newline-delimited JSON-RPC to ``mcp-gateway serve``."""

    def __init__(self, process: Process, era: str, on_request: Handler | None) -> None:
        self.process, self.era, self.on_request = process, era, on_request
        self.notifications: list[dict[str, Any]] = []
        self.lines: list[bytes] = []  # every line the gateway wrote, as written
        self.unanswered: list[dict[str, Any]] = []  # responses nobody waited for
        self._waiting: dict[Any, anyio.abc.ObjectSendStream[dict[str, Any]]] = {}
        self._ids = iter(range(1, 10**9))
        self._got = anyio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send((json.dumps(message) + "\n").encode())

    def _meta(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.era == "modern":
            meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
                    "io.modelcontextprotocol/clientCapabilities": {}}
        return {**meta, **(extra or {})}

    async def request(self, method: str, params: dict[str, Any] | None = None,
                      meta: dict[str, Any] | None = None,
                      request_id: Any = None) -> dict[str, Any]:
        request_id = next(self._ids) if request_id is None else request_id
        body = dict(params or {})
        if (stamped := self._meta(meta)):
            body["_meta"] = stamped
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](1)
        self._waiting[request_id] = send
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": body})
        with anyio.fail_after(30), receive:
            return await receive.receive()

    async def call(self, name: str, arguments: dict[str, Any] | None = None,
                   **kwargs: Any) -> dict[str, Any]:
        reply = await self.request("tools/call", {"name": name, "arguments": arguments or {}},
                                   **kwargs)
        assert "result" in reply, reply
        return reply["result"]

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self.lines.append(line)
                await self._dispatch(json.loads(line))

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" in message and "id" in message:  # the gateway asks us
            assert self.on_request is not None, message
            result = await self.on_request(message["method"], message.get("params") or {})
            await self.send({"jsonrpc": "2.0", "id": message["id"], "result": result})
        elif "method" in message:
            self.notifications.append(message)
        else:
            send = self._waiting.pop(message.get("id"), None)
            if send is None:
                self.unanswered.append(message)
            else:
                send.send_nowait(message)
        self._got.set()
        self._got = anyio.Event()


@asynccontextmanager
async def raw_host(config: Path, era: str, *, lane: bool = True,
                   capabilities: dict[str, Any] | None = None,
                   on_request: Handler | None = None,
                   env: dict[str, str] | None = None,
                   command: list[str] | None = None,
                   listed: tuple[str, ...] = ("up_whoami",)) -> AsyncIterator[RawHost]:
    """A gateway serving ``config`` on stdio (``mcp-gateway serve`` unless ``command``,
    which is given the config path), handshake done and the ``listed`` tools listed."""
    environ = {**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower(), **(env or {})}
    argv = ([*command, str(config)] if command is not None else
            [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
             "--log-level", "WARNING"])
    process = await anyio.open_process(argv, env=environ, stderr=None)
    async with process, anyio.create_task_group() as tg:
        host = RawHost(process, era, on_request)
        tg.start_soon(host.read)
        if era == "legacy":
            reply = await host.request("initialize", {
                "protocolVersion": "2025-11-25", "capabilities": capabilities or {},
                "clientInfo": CLIENT_INFO})
            assert "result" in reply, reply
            await host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        else:
            reply = await host.request("server/discover", {})
            assert reply["result"]["supportedVersions"], reply
        await wait_ready(host, listed)
        try:
            yield host
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()  # the gateway exits when its stdin closes
            with anyio.fail_after(20):
                await process.wait()
            tg.cancel_scope.cancel()


async def wait_ready(host: RawHost, listed: tuple[str, ...] = ("up_whoami",)) -> None:
    """Until the upstreams' ``listed`` tools are (start-up connects in the background)."""
    with anyio.fail_after(WITHIN):   # a gateway's and its upstream's process start
        while True:
            tools = (await host.request("tools/list"))["result"]["tools"]
            if set(listed) <= {t["name"] for t in tools}:
                return
            await anyio.sleep(0.05)  # another process's progress: nothing to wait on


async def file_appears(path: Path) -> None:
    """Until another process writes ``path``."""
    with anyio.fail_after(15):
        while not await anyio.Path(path).exists():  # noqa: ASYNC110 - another process writes it
            await anyio.sleep(0.05)


async def both_paths(tmp_path: Path, each: Callable[[bool, dict[str, str]], Awaitable[Any]]
                     ) -> dict[bool, Any]:
    """``each(lane, env)`` on the lane (True) and on the full path, side by side, each a
    gateway process with its own store (``env``): their starts (a gateway's and its
    upstream's process) are most of these tests' time, and two in turn took up to 52 s
    of the 60 s per-test timeout on a loaded machine."""
    results: dict[bool, Any] = {}

    async def one(lane: bool) -> None:
        results[lane] = await each(lane, {"MCP_GATEWAY_DB": str(tmp_path / f"{lane}.db")})

    async with anyio.create_task_group() as tg:
        for lane in (True, False):
            tg.start_soon(one, lane)
    return results


def lane_id(result: dict[str, Any]) -> str:
    return result["structuredContent"]["result"]


BIG = 'a "quoted" \\ back\\slash, ✓ 漢字 🚀 \u2028 line\nnext\ttab ' * 4000  # ~200 KiB

PARITY_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("up_echo", {"text": "héllo ✓ 漢字 🚀", "times": 2}),
    ("up_profile", {"name": "ada", "tags": ["x", "y"]}),
    ("up_picture", {}),
    ("up_refuse", {"reason": "because"}),       # isError result
    ("up_echo", {"text": 5}),                   # wrong argument type
    ("up_echo", {}),                            # missing argument
    ("up_count", {"steps": 2}),
    # Answers past lifting.LIFT_MIN: their long strings are relayed undecoded.
    ("up_echo", {"text": BIG, "times": 2}),
    ("up_refuse", {"reason": BIG * 2}),         # isError, its text recorded decoded
]


@pytest.mark.parametrize(("era", "upstream"), [("legacy", "auto"), ("modern", "auto"),
                                               ("legacy", "legacy"), ("modern", "legacy")])
async def test_the_lane_answers_exactly_as_the_full_path(tmp_path: Path, era: str,
                                                         upstream: str) -> None:
    config = write_config(tmp_path, protocol=upstream)

    async def answers_of(lane: bool, env: dict[str, str]) -> list[dict[str, Any]]:
        async with raw_host(config, era, lane=lane, env=env) as host:
            who = lane_id(await host.call("up_whoami"))
            assert who.startswith("gw-") is lane, who
            answers = [await host.call(name, args) for name, args in PARITY_CALLS]
            assert host.unanswered == []
        return answers

    answers = await both_paths(tmp_path, answers_of)
    assert answers[True] == answers[False]
    echo, profile, picture, refused, wrong, missing, _, big, big_refusal = answers[True]
    assert big["content"] == [{"type": "text", "text": BIG * 2}]
    assert big_refusal["isError"] is True and BIG * 2 in big_refusal["content"][0]["text"]
    assert echo["content"] == [{"type": "text", "text": "héllo ✓ 漢字 🚀" * 2}]
    assert profile["structuredContent"] == {"name": "ada", "tags": ["x", "y"], "length": 3,
                                            "ratio": 1 / 3}
    assert picture["content"][1] == {"type": "image", "mimeType": "image/png",
                                     "data": "iVBORw0KGgo="}
    assert refused["isError"] is True and "refused: because" in refused["content"][0]["text"]
    assert wrong["isError"] is True and missing["isError"] is True
    if era == "modern":
        assert echo["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "fast-mcp-gateway"
    else:
        assert "io.modelcontextprotocol/serverInfo" not in echo.get("_meta", {})


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_progress_reaches_the_callers_own_token(tmp_path: Path, era: str) -> None:
    async with raw_host(write_config(tmp_path), era) as host:
        async with anyio.create_task_group() as tg:
            for token in ("a", "b"):
                tg.start_soon(lambda t=token: host.call("up_count", {"steps": 3},
                                                       meta={"progressToken": t}))
        progress = [(n["params"]["progressToken"], n["params"]["progress"],
                     n["params"]["message"])
                    for n in host.notifications if n["method"] == "notifications/progress"]
        for token in ("a", "b"):
            assert [(p, m) for t, p, m in progress if t == token] == [
                (1, "step 1"), (2, "step 2"), (3, "step 3")]
        assert len(progress) == 6


async def test_a_fastmcp_client_gets_progress_and_logs_through_the_lane(
        tmp_path: Path) -> None:
    transport = StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config",
                                    str(write_config(tmp_path))], keep_alive=False,
                               env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": "true"})
    logs: list[str] = []

    async def on_log(message: Any) -> None:
        logs.append(str(message.data))

    for mode in ("legacy", "auto"):
        logs.clear()
        seen: list[float] = []

        async def on_progress(p: float, total: float | None, message: str | None,
                              seen: list[float] = seen) -> None:
            seen.append(p)

        async with Client(transport, mode=mode, log_handler=on_log) as client:
            while "up_whoami" not in {t.name for t in await client.list_tools()}:  # noqa: ASYNC110 - upstream start-up
                await anyio.sleep(0.05)
            assert (await client.call_tool("up_whoami")).data.startswith("gw-")

            assert (await client.call_tool("up_count", {"steps": 3},
                                           progress_handler=on_progress)).data == 3
            await until(lambda seen=seen: len(seen) >= 3)  # handlers run as their own tasks
            assert seen == [1, 2, 3]
            assert (await client.call_tool("up_chatty")).data == "done"
            await until(lambda: any("working on it" in line for line in logs))


async def test_a_legacy_host_answers_the_upstreams_sampling_request(tmp_path: Path) -> None:
    """A handshake-era upstream pushes sampling/createMessage mid-call."""
    asked: list[dict[str, Any]] = []

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append({"method": method, **params})
        # An answer that mentions a method the lane watches for is still an answer.
        return {"role": "assistant", "model": "test-model",
                "content": {"type": "text", "text": "forty-two, not \"tools/call\""}}

    async with raw_host(write_config(tmp_path, protocol="legacy"), "legacy",
                        capabilities={"sampling": {}}, on_request=answer) as host:
        assert lane_id(await host.call("up_whoami")).startswith("gw-")
        result = await host.call("up_ask_model", {"question": "meaning of life?"})
    assert result["content"][0]["text"] == 'model said: forty-two, not "tools/call"'
    assert [a["method"] for a in asked] == ["sampling/createMessage"]
    assert asked[0]["messages"][0]["content"]["text"] == "meaning of life?"


async def test_a_host_without_sampling_gets_the_upstreams_error(tmp_path: Path) -> None:
    async with raw_host(write_config(tmp_path, protocol="legacy"), "legacy") as host:
        result = await host.call("up_ask_model", {"question": "?"})
    assert result["isError"] is True
    assert "no connected host that supports sampling" in result["content"][0]["text"]


async def test_a_2026_upstreams_ask_is_put_to_a_handshake_era_host(tmp_path: Path) -> None:
    """input_required from the upstream: the lane asks the host and calls again."""
    asked: list[str] = []

    async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(method)
        return {"action": "accept", "content": {"name": "Ada"}}

    config = write_config(tmp_path)

    async def guarded(lane: bool, env: dict[str, str]) -> dict[str, Any]:
        async with raw_host(config, "legacy", lane=lane, env=env,
                            capabilities={"elicitation": {}}, on_request=answer) as host:
            return await host.call("up_guard")

    results = await both_paths(tmp_path, guarded)
    assert results[True] == results[False]
    assert results[True]["content"][0]["text"] == "hello Ada (accept)"
    assert "resultType" not in results[True]  # a 2026 field a 2025 host must not get
    assert asked == ["elicitation/create", "elicitation/create"]


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_host_cancellation_cancels_the_call_upstream(tmp_path: Path, era: str) -> None:
    async with raw_host(write_config(tmp_path), era) as host:
        call = {"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": {
            "name": "up_slow", "arguments": {"seconds": 30, "tag": "c1"},
            "_meta": host._meta()}}
        await host.send(call)
        await file_appears(tmp_path / "c1.started")  # the call reached the upstream tool
        await host.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                         "params": {"requestId": "slow-1", "reason": "user gave up"}})
        await file_appears(tmp_path / "c1.cancelled")
        # The session goes on; the cancelled request is never answered.
        assert lane_id(await host.call("up_whoami")).startswith("gw-")
        assert host.unanswered == []
    assert not await anyio.Path(tmp_path / "c1.finished").exists()


async def test_a_cancellation_right_behind_its_call_is_honoured(tmp_path: Path) -> None:
    async with raw_host(write_config(tmp_path), "legacy") as host:
        call = {"jsonrpc": "2.0", "id": 777, "method": "tools/call", "params": {
            "name": "up_slow", "arguments": {"seconds": 0.3, "tag": "r1"}}}
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                  "params": {"requestId": "777"}}  # the id as a string: the same request
        assert host.process.stdin is not None
        await host.process.stdin.send((json.dumps(call) + "\n" + json.dumps(cancel)
                                       + "\n").encode())
        # Had 777 run, its answer (0.3 s) would be on the pipe before this one (1 s).
        assert (await host.call("up_slow", {"seconds": 1, "tag": "r2"}))["content"]
        assert host.unanswered == []  # 777 was never answered
    assert not await anyio.Path(tmp_path / "r1.finished").exists()


async def test_a_call_timeout_is_an_error_result_and_cancels_upstream(tmp_path: Path) -> None:
    async with raw_host(write_config(tmp_path), "legacy",
                        env={"MCP_GATEWAY_CALL_TIMEOUT": "1"}) as host:
        result = await host.call("up_slow", {"seconds": 20, "tag": "t1"})
        assert result["isError"] is True
        assert "did not answer within 1s" in result["content"][0]["text"]
        await file_appears(tmp_path / "t1.cancelled")
        assert lane_id(await host.call("up_whoami")).startswith("gw-")


async def test_an_upstream_dying_mid_call_fails_that_call_and_the_gateway_recovers(
        tmp_path: Path) -> None:
    async with raw_host(write_config(tmp_path), "legacy") as host:
        first = lane_id(await host.call("up_whoami"))
        result = await host.call("up_crash")
        assert result["isError"] is True
        assert "connection closed during tools/call 'crash'" in result["content"][0]["text"]
        with anyio.fail_after(30):  # the supervisor restarts it; calls flow again
            while True:
                again = await host.call("up_whoami")
                if not again.get("isError"):
                    break
                await anyio.sleep(0.1)
        assert first.startswith("gw-") and lane_id(again).startswith("gw-")


async def test_rate_limits_apply_on_the_lane_as_on_the_full_path(tmp_path: Path) -> None:
    config = write_config(tmp_path, rate_limit={"per_second": 0.01, "burst": 1})

    async def refusal(lane: bool, env: dict[str, str]) -> str:
        async with raw_host(config, "legacy", lane=lane, env=env) as host:
            assert not (await host.call("up_echo", {"text": "ok"})).get("isError")
            refused = await host.call("up_echo", {"text": "again"})
            assert refused["isError"] is True
            text: str = refused["content"][0]["text"]
            return text.split("; retry after")[0]

    texts = await both_paths(tmp_path, refusal)
    assert texts[True] == texts[False]
    assert "rate limited: server 'up' allows 0.01 calls/s (burst 1)" in texts[True]


async def test_a_2026_host_cannot_answer_a_handshake_era_push_on_either_path(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, protocol="legacy")

    async def asked(lane: bool, env: dict[str, str]) -> dict[str, Any]:
        async with raw_host(config, "modern", lane=lane, env=env) as host:
            assert lane_id(await host.call("up_whoami")).startswith("gw-") is lane
            return await host.call("up_ask_model", {"question": "?"})

    results = await both_paths(tmp_path, asked)
    assert results[True] == results[False]
    assert results[True]["isError"] is True
    assert "no connected host that supports sampling" in results[True]["content"][0]["text"]


async def test_calls_the_lane_cannot_answer_exactly_take_the_full_path(tmp_path: Path) -> None:
    """(Two gateways, side by side: as ``both_paths``, for the time.)"""
    config, stale = write_config(tmp_path), write_config(
        tmp_path, fallback={"stale_cache_ttl": 60})

    async def own_tools() -> None:   # the admin tools are the gateway's own
        async with raw_host(config, "modern",
                            env={"MCP_GATEWAY_DB": str(tmp_path / "own.db")}) as host:
            servers = await host.call("gateway_list_servers")
            assert servers["structuredContent"]["servers"][0]["name"] == "up"

    async def stale_fallback() -> None:   # a read-only tool with one keeps typed results
        async with raw_host(stale, "legacy",
                            env={"MCP_GATEWAY_DB": str(tmp_path / "stale.db")}) as host:
            assert not lane_id(await host.call("up_whoami")).startswith("gw-")
            assert (await host.call("up_echo", {"text": "x"}))["content"][0]["text"] == "x"

    async with anyio.create_task_group() as tg:
        tg.start_soon(own_tools)
        tg.start_soon(stale_fallback)


async def test_lane_calls_are_recorded_like_any_other(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    async with raw_host(write_config(tmp_path), "legacy",
                        env={"MCP_GATEWAY_DB": str(db)}) as host:
        assert lane_id(await host.call("up_whoami")).startswith("gw-")
        await host.call("up_refuse", {"reason": "no", "api_key": "hunter2"})
        big = await host.call("up_echo", {"text": BIG})  # lifted (upstream/lifting.py)
        await host.call("up_refuse", {"reason": "long " + BIG * 2})
    logs = await anyio.run_process([PY, "-m", "fast_mcp_gateway", "logs", "--db", str(db),
                                    "--json"])
    listed = list(map(json.loads, logs.stdout.decode().splitlines()))
    long_refusal = next(r for r in listed if "long " in (r["error"] or ""))
    assert long_refusal["error"].startswith("refused: long a \"quoted\"")  # decoded
    echoed = next(r for r in listed if r["exposed"] == "up_echo")
    # The size of what the host read (the literal spliced back), not of the token's line.
    assert echoed["response_bytes"] > len(encode_line({"result": big})) - 64
    records = {r["exposed"]: r for r in listed if "long " not in (r["error"] or "")}
    assert records["up_whoami"]["status"] == "success"
    assert records["up_whoami"]["replica"] == "up" and records["up_whoami"]["server"] == "up"
    refused = records["up_refuse"]
    assert refused["status"] == "error" and "refused: no" in refused["error"]
    assert "hunter2" not in json.dumps(refused)  # redacted like every recorded argument
    assert refused["response_bytes"] > 0 and len(refused["trace_id"]) == 32


async def test_malformed_calls_get_the_sdks_errors_and_the_lane_keeps_serving(
        tmp_path: Path) -> None:
    async with raw_host(write_config(tmp_path), "legacy") as host:
        odd = [
            {"jsonrpc": "2.0", "id": [1], "method": "tools/call",
             "params": {"name": "up_echo", "arguments": {"text": "x"}}},
            {"jsonrpc": "2.0", "id": 901, "method": "tools/call", "params": "up_echo"},
            {"jsonrpc": "2.0", "id": 902, "method": "tools/call",
             "params": {"name": "up_echo", "arguments": ["not", "an", "object"]}},
        ]
        for message in odd:
            await host.send(message)
        assert host.process.stdin is not None
        await host.process.stdin.send(b'{"jsonrpc": "2.0", "id": 903, "method": "tools/call"\n')
        reply = await host.call("up_whoami")  # still served, by the lane
        assert lane_id(reply).startswith("gw-")
        for request_id in (901, 902):
            error = await host.request("ping", request_id=f"after-{request_id}")
            assert "result" in error
        # Whatever the SDK makes of them (it answers what it can parse an id from),
        # none of them was relayed upstream as a call.
        answered = {m.get("id"): m for m in host.unanswered}
        assert answered[902]["error"]["code"] == -32602
        assert not any("result" in m for m in host.unanswered)
