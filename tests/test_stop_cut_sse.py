"""A handshake-era MCP call in flight when ``serve --transport http`` gets SIGTERM.

Its answer is an SSE stream the SDK starts at once, so the stop (``http/serving.py``
``CutAtStop``) could not answer it 503 as it answers a call not started: it only ended
the stream, and the host, whose request got no answer, waited for its own timeout or
saw a bare disconnect.  Now the stream's last event is a JSON-RPC error under the
request's id, in the words ``stop_answers`` gives a cut JSON answer.  A real gateway
process, a real stdio upstream whose tool runs until cancelled (``servers/slow.py``),
real HTTP on 127.0.0.1, read as a host reads it (an httpx stream; the SDK's client).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from tests.fixtures import WITHIN
from tests.test_stop_cut_mcp import stopping_gateway, until_started

HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"



def _session(http: httpx2.Client, url: str) -> dict[str, str]:
    """A handshake-era session opened: the headers of its requests."""
    headers = {"Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    opened = http.post(url, headers=headers, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": HANDSHAKE, "capabilities": {},
            "clientInfo": {"name": "raw-http", "version": "1"}}})
    assert opened.status_code == 200, opened.text
    headers |= {"Mcp-Session-Id": opened.headers["mcp-session-id"],
                "MCP-Protocol-Version": HANDSHAKE}
    done = http.post(url, headers=headers,
                     json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202, done.text
    return headers


def _events(stream: str) -> list[dict[str, Any]]:
    """The JSON data of each event of an SSE body."""
    found = []
    for block in stream.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].strip() for line in block.split("\n") if line.startswith("data:")]
        if data and data[0]:
            found.append(json.loads("\n".join(data)))
    return found


def test_a_handshake_era_call_cut_by_a_stop_ends_with_its_json_rpc_error(
        tmp_path: Path) -> None:
    with stopping_gateway(tmp_path) as (url, events, proc, log), \
            httpx2.Client(timeout=WITHIN) as http:
        headers = _session(http, url)
        with http.stream("POST", url, headers=headers, json={
                "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "slow_wait", "arguments": {"seconds": 600}}}) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            until_started(events)
            proc.send_signal(signal.SIGTERM)
            stream = answer.read().decode()
        said = log.wait_ended()
        assert proc.wait(timeout=WITHIN) == 0, said
    # The host is answered: its request's id, in words saying what happened and what
    # to do, as the last event of the stream (which then ends, as a stream does).
    sent = _events(stream)
    assert sent, (stream, said.splitlines())
    last = sent[-1]
    assert last["jsonrpc"] == "2.0" and last["id"] == 7, stream
    assert last["error"]["code"] == types.INTERNAL_ERROR, last
    message = last["error"]["message"]
    assert message.startswith("the gateway stopped (a restart or a deploy) before this "
                              "request ended"), message
    assert "retry on another instance of the gateway" in message, message
    assert "Traceback" not in said and " ERROR " not in said, said
    cut = [line for line in said.splitlines() if "stopping: cut POST /mcp" in line]
    # A call cut mid-run is news (what it asked for may be done): WARNING, as a 503's.
    assert len(cut) == 1 and " WARNING " in cut[0], said
    assert cut[0].endswith("its stream is ended with a JSON-RPC error under its id"), said


@pytest.mark.anyio
async def test_the_sdk_client_s_call_cut_by_a_stop_fails_in_the_stop_s_words(
        tmp_path: Path) -> None:
    """The SDK's client (handshake era) matches the event to its call: the call fails
    with the gateway's words, not a bare disconnect."""
    with stopping_gateway(tmp_path) as (url, events, proc, log):
        async with Client(url, mode="legacy") as client:
            assert client.protocol_version == HANDSHAKE

            async def stop_once_started() -> None:
                await anyio.to_thread.run_sync(until_started, events)
                proc.send_signal(signal.SIGTERM)

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_once_started)
                with pytest.raises(MCPError) as cut:
                    await client.call_tool("slow_wait", {"seconds": 600})
            await anyio.to_thread.run_sync(log.wait_ended)
        said = log.wait_ended()
    assert str(cut.value).startswith("the gateway stopped (a restart or a deploy) before "
                                     "this request ended"), cut.value
    assert "Traceback" not in said and " ERROR " not in said, said


def test_a_2026_call_whose_answer_became_a_stream_ends_with_its_json_rpc_error(
        tmp_path: Path) -> None:
    """A sessionless 2026-07-28 call the express lane turned into a stream (its first
    progress event) is cut the same way: the lane noted its id as the cut passed."""
    with stopping_gateway(tmp_path) as (url, _, proc, log), \
            httpx2.Client(timeout=WITHIN) as http:
        with http.stream("POST", url, headers={
                "Content-Type": "application/json", "MCP-Protocol-Version": MODERN,
                "Accept": "application/json, text/event-stream", "Mcp-Method": "tools/call",
                "Mcp-Name": "slow_again"}, json={
                "jsonrpc": "2.0", "id": "call-9", "method": "tools/call", "params": {
                    "name": "slow_again", "arguments": {}, "_meta": {
                        "progressToken": "p9", types.PROTOCOL_VERSION_META_KEY: MODERN,
                        types.CLIENT_INFO_META_KEY: {"name": "raw-http", "version": "1"},
                        types.CLIENT_CAPABILITIES_META_KEY: {}}}}) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()  # the second progress: the call hangs from there
            while '"progress":2' not in next(lines):
                pass
            proc.send_signal(signal.SIGTERM)
            stream = "\n".join(lines)
        said = log.wait_ended()
        assert proc.wait(timeout=WITHIN) == 0, said
    sent = _events(stream)  # after the progress events: before, the stream just ended
    assert sent, (stream, said)
    last = sent[-1]
    assert last["id"] == "call-9" and last["error"]["code"] == types.INTERNAL_ERROR, stream
    assert last["error"]["message"].startswith("the gateway stopped"), last
    assert "Traceback" not in said and " ERROR " not in said, said
