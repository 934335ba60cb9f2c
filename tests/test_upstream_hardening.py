"""Hostile stdio upstreams: huge, endless, undecodable or junk output, and servers that
answer -32601 to optional lists (issue 14 items 3-5, issue 8 item 2).

Complexity is asserted with operation counts (bytes the stdout framer copies), never
with wall-clock time; every wait is on a condition.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.upstream import stdio_tap
from fast_mcp_gateway.upstream.framing import LineFramer, MessageTooLarge
from fast_mcp_gateway.upstream.lifting import lifting, text_of
from fast_mcp_gateway.upstream.model import IDLE_CLOSED, RestartPolicy
from fast_mcp_gateway.upstream.replica import Upstream, UpstreamState
from tests.fixtures import PY, SERVERS
from tests.test_lane import RawHost

pytestmark = pytest.mark.anyio

MB = 1_000_000
RAW = str(SERVERS / "raw_stdio.py")
QUICK = RestartPolicy(initial=0.01, maximum=0.05, jitter=0.0, crash_limit=3,
                      crash_window=60.0)


# -- the framer, alone --------------------------------------------------------------


def feed_all(framer: LineFramer, data: bytes, chunk: int = 65536) -> list[bytes]:
    return [line for i in range(0, len(data), chunk) for line in framer.feed(data[i:i + chunk])]


def test_the_framer_splits_lines_wherever_the_chunks_end() -> None:
    data = b'{"a":1}\n\n{"b":"' + b"z" * 200_000 + b'"}\n{"c":3}\npartial'
    for chunk in (1, 7, 4096, 65536, len(data)):
        framer = LineFramer(1 * MB)
        assert feed_all(framer, data, chunk) == [
            b'{"a":1}', b"", b'{"b":"' + b"z" * 200_000 + b'"}', b'{"c":3}']
        assert framer.feed(b" end\n") == [b"partial end"]


def test_reading_a_large_line_copies_each_byte_a_bounded_number_of_times() -> None:
    """The old reader re-joined its buffer on every 64 KiB chunk: about n^2/2^17 bytes
    copied (5 MB: ~190 GB).  Now each byte is copied at most twice."""
    copied = {}
    for size in (5 * MB, 20 * MB):
        framer = LineFramer(64 * MB)
        lines = feed_all(framer, b"x" * size + b"\n")
        assert [len(line) for line in lines] == [size]
        copied[size] = framer.copied
        assert framer.copied <= 2 * size
    assert copied[20 * MB] <= 4.2 * copied[5 * MB]  # linear: 4x the size, ~4x the work


def test_the_framer_refuses_a_message_over_the_limit() -> None:
    with pytest.raises(MessageTooLarge, match=r"larger than max_message_bytes \(1000000\)"):
        feed_all(LineFramer(1 * MB), b"x" * (2 * MB))  # no newline: refused before its end
    framer = LineFramer(1 * MB)
    with pytest.raises(MessageTooLarge, match=r"\(1000001 bytes\)"):
        framer.feed(b"y" * (MB + 1) + b"\n")
    assert LineFramer(1 * MB).feed(b"y" * MB + b"\n") == [b"y" * MB]  # the limit itself is fine


# -- one replica in process ------------------------------------------------------


@asynccontextmanager
async def replica(*flags: str, **server: Any) -> AsyncIterator[Upstream]:
    """A running ``Upstream`` on ``raw_stdio.py``, after its first connect attempt."""
    entry = {"command": PY, "args": [RAW, *flags], **server}
    entry.setdefault("timeouts", {"call": 120})
    config = parse_config({"servers": {"raw": entry}}, source="test").servers["raw"]
    upstream = Upstream(config, restart=QUICK)
    async with anyio.create_task_group() as tg:
        tg.start_soon(upstream.run)
        try:
            with anyio.fail_after(60):  # a guard only
                await upstream.wait_first_attempt()
            yield upstream
        finally:
            upstream.stop()


async def call(upstream: Upstream, lane: bool, name: str, **arguments: Any) -> str:
    """One tools/call in either encoding: raw JSON (the express lane) or typed models."""
    if lane:
        result = await upstream.call_tool_raw({"name": name, "arguments": arguments}, None)
        return str(result["content"][0]["text"])
    typed = await upstream.call_tool(name, arguments, None)
    return typed.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("lane", [True, False], ids=["raw", "typed"])
async def test_a_large_response_is_read_in_linear_work(lane: bool) -> None:
    async with replica() as upstream:
        assert upstream.state is UpstreamState.READY, upstream.last_error
        tap = upstream._sup.tap
        assert tap is not None
        copied = {}
        for size in (5 * MB, 20 * MB):
            before = tap.framer.copied
            assert len(await call(upstream, lane, "big", size=size)) == size
            copied[size] = tap.framer.copied - before
            assert copied[size] <= 2.2 * size  # the line is the payload plus ~80 bytes
        assert copied[20 * MB] <= 4.2 * copied[5 * MB]
        assert await call(upstream, lane, "echo", text="still here") == "still here"


@pytest.mark.parametrize("where", ["text", "meta"])
async def test_a_long_undecodable_answer_to_a_lane_call_fails_it_at_once(where: str) -> None:
    """The tap is handed the error made for an undecodable answer, not the answer's bytes:
    with its long text lifted (upstream/lifting.py) the bad bytes went on to the host,
    or, failing to parse, the error went to the SDK's session and the call waited for
    its timeout."""
    async with replica() as upstream:
        lifts = lifting.set(True)  # as an express lane's call (JsonTool.send)
        try:
            with anyio.fail_after(60), pytest.raises(MCPError) as refused:
                await upstream.call_tool_raw({"name": "bad_answer", "arguments": {
                    "pad": 300_000, "where": where}}, None)
        finally:
            lifting.reset(lifts)
        assert "the upstream's response was not valid UTF-8 (byte 0xe9" in str(refused.value)
        assert await call(upstream, True, "echo", text="still here") == "still here"


async def test_a_long_answer_is_parsed_once_unless_a_lane_call_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only while an express lane's call waits is a long line parsed for lifting
    (upstream/lifting.py): any other long answer was parsed twice, lifted and then as
    it came."""
    lifted: list[int] = []
    real = stdio_tap.lifted_loads

    def counted(data: bytes, **options: Any) -> Any:
        lifted.append(len(data))
        return real(data, **options)

    monkeypatch.setattr(stdio_tap, "lifted_loads", counted)
    async with replica() as upstream:
        for lane in (False, True):  # typed, then raw without lifting (tasks, limits)
            assert len(await call(upstream, lane, "big", size=300_000)) == 300_000
        assert lifted == []
        lifts = lifting.set(True)
        try:
            result = await upstream.call_tool_raw({"name": "big", "arguments": {
                "size": 300_000}}, None)
        finally:
            lifting.reset(lifts)
        assert text_of(result["content"][0]["text"]) == "x" * 300_000
        assert len(lifted) == 1


async def test_junk_and_invalid_utf8_at_start_up_are_skipped_and_reported() -> None:
    async with replica("--junk-at-start") as upstream:
        assert upstream.state is UpstreamState.READY, upstream.last_error
        stats = upstream.statistics()
        assert stats.protocol_errors == 2
        # last_error quotes the first violation (the junk line; the bad UTF-8 came after).
        assert stats.last_error == ("upstream wrote a line on stdout that is not JSON-RPC: "
                                    "'starting up (not json)'")
        assert await call(upstream, True, "echo", text="ok") == "ok"


async def test_an_undecodable_initialize_answer_fails_the_attempt_at_once_and_parks() -> None:
    async with replica("--bad-initialize") as upstream:
        first = upstream.last_error or ""
        assert first.startswith(
            "connect: initialize failed: the upstream's response was not valid UTF-8 "
            "(byte 0xe9"), first
        assert upstream.attempts == 1  # answered, not timed out (the timeout is 120 s)
        assert await upstream.wait_until(lambda: upstream.state is UpstreamState.FAILED, 60)
        assert "gave up after 3 failures" in (upstream.last_error or "")


async def test_a_minus_32601_to_optional_lists_is_an_empty_list_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.session")
    async with replica("--no-templates", "--no-prompts") as upstream:
        assert upstream.state is UpstreamState.READY, upstream.last_error
        counts = upstream.catalog.counts()  # (raw_stdio.py's tools, however many)
        assert counts["tools"] > 0 and counts["resources"] == 1, counts
        assert counts["resource_templates"] == 0 and counts["prompts"] == 0, counts
        await upstream.list_catalog()
        await upstream.list_catalog()
    declined = [r.getMessage() for r in caplog.records if "answered -32601" in r.getMessage()]
    assert sorted(declined) == [
        "upstream raw: prompts/list answered -32601 (Method not found); taken as empty",
        "upstream raw: resources/templates/list answered -32601 (Method not found); "
        "taken as empty",
    ]


async def test_resources_list_may_be_declined_too() -> None:
    async with replica("--no-resources", "--no-templates") as upstream:
        assert upstream.state is UpstreamState.READY, upstream.last_error
        assert upstream.catalog.counts()["resources"] == 0


async def test_a_connect_failure_names_the_step_and_the_method() -> None:
    """tools/list is not optional for a server that declares tools."""
    async with replica("--no-tools") as upstream:
        assert upstream.state is not UpstreamState.READY
        assert upstream.last_error == "connect: tools/list answered -32601 Method not found"


# -- through a real gateway, express lane and full path ------------------------------


def gateway_config(tmp_path: Path, *flags: str) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"servers": {"up": {
        "command": PY, "args": [RAW, "--no-templates", *flags],
        "timeouts": {"call": 120},
    }}}))
    return path


@asynccontextmanager
async def gateway(config: Path, lane: bool) -> AsyncIterator[RawHost]:
    env = {**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower()}
    process = await anyio.open_process(
        [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
         "--log-level", "WARNING"], env=env, stderr=None)
    async with process, anyio.create_task_group() as tg:
        host = RawHost(process, "legacy", None)
        tg.start_soon(host.read)
        reply = await host.request("initialize", {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw-host", "version": "1"}})
        assert "result" in reply, reply
        await host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        try:
            yield host
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.fail_after(20):
                await process.wait()
            tg.cancel_scope.cancel()


async def until_answered(host: RawHost) -> dict[str, Any]:
    """Call ``up_echo`` until the upstream answers (it restarts in another process)."""
    with anyio.fail_after(60):
        while True:
            reply = await host.request("tools/call", {"name": "up_echo",
                                                      "arguments": {"text": "back"}})
            if "result" in reply and not reply["result"].get("isError"):
                return reply["result"]
            await anyio.sleep(0.05)  # another process's progress: nothing to wait on


def failure(reply: dict[str, Any]) -> str:
    """The text of an error reply or of an isError result."""
    if "error" in reply:
        return str(reply["error"]["message"])
    assert reply["result"].get("isError"), reply
    return str(reply["result"]["content"][0]["text"])


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full"])
async def test_hostile_output_through_the_gateway(tmp_path: Path, lane: bool) -> None:
    async with gateway(gateway_config(tmp_path), lane) as host:
        who = (await until_answered(host), await host.call("up_whoami"))[1]
        assert who["content"][0]["text"].startswith("gw-") is lane, who

        # 50 MB with a newline, then 50 MB without: both over the default 32 MiB, both
        # refused once 32 MiB have arrived without a newline.
        for tool in ("up_big", "up_flood"):
            reply = await host.request("tools/call", {"name": tool,
                                                      "arguments": {"size": 50 * MB}})
            text = failure(reply)
            assert "larger than max_message_bytes (33554432)" in text, text
            assert "the session is restarted" in text, text
            assert (await until_answered(host))["content"][0]["text"] == "back"

        # An undecodable answer fails its call now, not at the 120 s call timeout.
        text = failure(await host.request("tools/call", {"name": "up_bad_answer",
                                                         "arguments": {}}))
        assert "the upstream's response was not valid UTF-8 (byte 0xe9" in text, text

        # Junk lines and undecodable notifications are skipped; the session goes on.
        assert (await host.call("up_latin1"))["content"][0]["text"] == "after latin1"
        assert (await host.call("up_junk"))["content"][0]["text"] == "after junk"
        health = (await host.call("gateway_health", {"detail": True}))["structuredContent"]
        replica_status = health["servers"][0]["replicas"][0]
        assert replica_status["state"] == "ready"
        assert "not JSON-RPC: 'this is not json'" in replica_status["last_error"]
        assert host.unanswered == []


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full"])
async def test_an_upstreams_own_minus_32000_answer_is_an_answer_not_a_lost_connection(
        tmp_path: Path, lane: bool) -> None:
    """-32000 is the SDK's CONNECTION_CLOSED and the first code of JSON-RPC's server-error
    range upstreams answer with: "-32000 nope" reaches the host as the upstream said it,
    and the session goes on (it was ended and the server restarted, failing every call
    in flight)."""
    async with gateway(gateway_config(tmp_path, "--server-error"), lane) as host:
        await until_answered(host)
        before = (await host.call("up_pid"))["content"][0]["text"]
        reply = await host.request("tools/call", {"name": "up_server_error", "arguments": {
            "code": -32000, "message": "nope: the quota of this key is spent"}})
        assert "nope: the quota of this key is spent" in failure(reply), reply
        assert "connection closed" not in failure(reply), reply
        assert (await host.call("up_pid"))["content"][0]["text"] == before  # not restarted
        health = (await host.call("gateway_health", {"detail": True}))["structuredContent"]
        replica_status = health["servers"][0]["replicas"][0]
        assert (replica_status["state"], replica_status["restarts"]) == ("ready", 0), health


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "full"])
async def test_an_upstreams_error_holding_the_idle_close_words_is_its_answer(
        tmp_path: Path, lane: bool) -> None:
    """The gateway's answer for a request an idle close met unread (``http_resend``) was
    told by its words: an upstream's own -32000 holding them was read as a lost
    connection.  It is told by a mark no upstream can write (``model.idle_closed``)."""
    words = f"nope: {IDLE_CLOSED}, said the server"
    async with gateway(gateway_config(tmp_path, "--server-error"), lane) as host:
        await until_answered(host)
        reply = await host.request("tools/call", {"name": "up_server_error", "arguments": {
            "code": -32000, "message": words}})
        assert words in failure(reply) and "connection closed" not in failure(reply), reply


def _sdk_lost_words() -> list[str]:
    """The words the SDK's streamable-HTTP client ends a request with when its answer
    can never come (``_resolve_abandoned_request`` under its default CONNECTION_CLOSED),
    read from the installed source: an f-string by its constant head."""
    import ast
    import inspect

    from mcp.client import streamable_http

    words = []
    for node in ast.walk(ast.parse(inspect.getsource(streamable_http))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") \
                == "_resolve_abandoned_request" and len(node.args) == 3 \
                and not any(k.arg == "code" for k in node.keywords):
            text = node.args[2]
            if isinstance(text, ast.JoinedStr):
                head = text.values[0]
                assert isinstance(head, ast.Constant)
                words.append(f"{head.value}boom")
            else:
                assert isinstance(text, ast.Constant)
                words.append(text.value)
    return words


def test_every_lost_stream_the_sdk_says_is_a_lost_connection() -> None:
    """A request the SDK's client gives up on for its stream (a resumable one it could
    not resume included) is a lost connection (the server may have run it), never the
    upstream's own -32000 answer: that counted it a success, kept the session, and gave
    the host the SDK's words as the server's."""
    from mcp_types import CONNECTION_CLOSED

    from fast_mcp_gateway.upstream.session import connection_lost

    words = _sdk_lost_words()
    assert "SSE stream ended and reconnection attempts were exhausted" in words, words
    for text in words:
        assert connection_lost(MCPError(code=CONNECTION_CLOSED, message=text)), text
    assert not connection_lost(MCPError(code=CONNECTION_CLOSED, message="nope"))


async def test_a_lone_surrogate_in_an_in_process_servers_catalog_stops_nothing() -> None:
    """A string no UTF-8 can hold (a lone surrogate: only an in-process server's strings
    carry one; the transports' parsers refuse it) in a tool's description raised out of
    the catalog's rebuild (pinning's digest, the list-changed fingerprint), which
    stopped the gateway."""
    from fastmcp import Client, FastMCP

    from tests.fixtures import alpha_server, make_gateway, memory_entry

    odd: FastMCP[Any] = FastMCP("odd")

    @odd.tool(description="caf\ud800")
    def lookup() -> str:
        return "found"

    gateway = make_gateway({"odd": memory_entry("odd"), "alpha": memory_entry("alpha")},
                           {"odd": odd, "alpha": alpha_server()})
    async with Client(gateway.server) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert {"odd_lookup", "alpha_add"} <= names, names
        assert (await client.call_tool("odd_lookup", {})).content[0].text == "found"
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        servers = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert {s["name"]: s["state"] for s in servers["servers"]} == {
            "odd": "ready", "alpha": "ready"}


def test_a_value_changed_as_json_sees_it_is_a_list_change() -> None:
    """The list-changed check compared the models with Python's ``==`` (947e490), for
    which ``1`` is ``True`` is ``1.0`` and ``0.0`` is ``-0.0``: an upstream whose tool
    went from ``{"const": 1}`` to ``{"const": true}`` listed it so, and its hosts were not
    told.  A dict's order, which the list shows, is a change too; an equal copy is not."""
    from mcp_types import Tool

    from fast_mcp_gateway.routing.naming import Origin
    from fast_mcp_gateway.routing.view import CatalogView, changed_kinds

    def view(schema: dict[str, Any]) -> CatalogView:
        tool = Tool(name="t", inputSchema={"type": "object", "properties": {"x": schema}})
        return CatalogView(tools={"a_t": (Origin("a", "t"), tool)})

    base = view({"const": 1})
    assert changed_kinds(base, view({"const": 1})) == set()
    for other in ({"const": True}, {"const": 1.0}, {"const": 1, "title": "x"}):
        assert changed_kinds(base, view(other)) == {"tools"}, other
    assert changed_kinds(view({"minimum": 0.0}), view({"minimum": -0.0})) == {"tools"}
    assert changed_kinds(view({"a": 1, "b": 2}), view({"b": 2, "a": 1})) == {"tools"}
    assert changed_kinds(view({"minimum": float("nan")}),
                         view({"minimum": float("nan")})) == set()
