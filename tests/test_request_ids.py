"""A stdio host's request under an id still in flight is answered with an error.

The SDK's dispatcher ran both requests and answered the id twice (its own TODO:
"duplicate ids blind-overwrite"); MCP says a request id MUST NOT be reused within a
session.  A real ``serve`` and a real upstream (``tests/servers/ticker.py``: ``work``
answers once the test writes ``finish``), on the express lane and the full path.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from fast_mcp_gateway.front.request_ids import RequestIds
from tests.fixtures import WITHIN, stdio_entry
from tests.stdio_gateway import StdioGateway, stdio_gateway


def read_reply(gateway: StdioGateway) -> dict[str, Any]:
    assert gateway.proc.stdout is not None
    while True:
        line = gateway.proc.stdout.readline()
        assert line, "the gateway closed its stdout"
        message: dict[str, Any] = json.loads(line)
        if "id" in message and "method" not in message:
            return message


def write(gateway: StdioGateway, message: dict[str, Any]) -> None:
    assert gateway.proc.stdin is not None
    gateway.proc.stdin.write(json.dumps(message) + "\n")
    gateway.proc.stdin.flush()


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + WITHIN
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)  # another process's progress: nothing to wait on


def call(request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": "t_work", "arguments": {}}}


@pytest.mark.parametrize("lane", ["true", "false"], ids=["lane", "full-path"])
def test_a_duplicate_id_in_flight_is_refused_and_never_runs(tmp_path: Path, lane: str) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"t": stdio_entry("ticker.py", str(tmp_path))}}))
    events = tmp_path / "events"
    with stdio_gateway("--config", str(config), "--no-db", "--startup-wait", "30",
                       env={"MCP_GATEWAY_EXPRESS_LANE": lane}) as gateway:
        listed = gateway.send({"jsonrpc": "2.0", "id": "list", "method": "tools/list"})
        assert listed is not None and "t_work" in {t["name"] for t in listed["result"]["tools"]}
        write(gateway, call(5))
        wait_until(lambda: events.exists() and "started" in events.read_text())
        write(gateway, call("5"))  # the same id as the SDK correlates it
        refused = read_reply(gateway)
        assert refused == {"jsonrpc": "2.0", "id": "5", "error": {
            "code": types.INVALID_REQUEST,
            "message": 'Invalid request: id "5" is already used by a request of this session '
                       "still in flight; each request needs an id of its own (MCP: a request "
                       "id MUST NOT be reused within a session). Send it again under a new "
                       "id"}}, refused
        (tmp_path / "finish").touch()
        answered = read_reply(gateway)
        assert answered["id"] == 5
        assert answered["result"]["content"][0]["text"] == "finished after 0 ticks"
        # Answered, the id is free again; the duplicate never ran.
        again = gateway.send({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
        assert again is not None and "result" in again, again
        assert events.read_text().splitlines() == ["started"]
        # So is the opening request's (answered before the server stack was loaded:
        # the SDK's own answer is dropped, not written).
        opening = gateway.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert opening is not None and "result" in opening, opening


def test_a_cancelled_request_frees_its_id_and_only_answers_free_ids() -> None:
    ids = RequestIds()
    request = types.JSONRPCRequest(jsonrpc="2.0", id=7, method="ping")
    assert ids.enter(request) is None
    assert ids.enter(request) is not None
    ids.written('{"jsonrpc":"2.0","id":7,"method":"ping"}\n')  # a request of ours: not it
    assert ids.enter(request) is not None
    ids.enter(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled",
                                        params={"requestId": 7}))
    assert ids.enter(request) is None
    ids.written(b'{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"x"}}\n')
    assert ids.enter(request) is None


@pytest.mark.parametrize("request_id", [7, "7", "07", " 7", "7.0", "x", "", -3, "-3", 2**70,
                                        str(2**70), "1_000"])
def test_ids_are_keyed_as_the_sdk_correlates_them(request_id: int | str) -> None:
    from mcp.shared.dispatcher import coerce_request_id

    from fast_mcp_gateway.front.request_ids import id_key
    assert id_key(request_id) == coerce_request_id(request_id)
