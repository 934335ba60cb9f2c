"""A password a host passes as an argument never reaches the call log, even when the
upstream echoes it in its error (FastMCP's validation errors quote the arguments as
``input_value=...``): a real ``mcp-gateway serve`` over stdio (the express lane), a real
stdio upstream, the SQLite files read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.fixtures import SERVERS
from tests.stdio_gateway import stdio_gateway

PLANTED = "pw-planted-7d41c0"


def test_an_echoed_password_is_masked_in_the_call_record(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"leaky": {
        "command": sys.executable, "args": [str(SERVERS / "leaky.py")]}}}))
    db = tmp_path / "gateway.db"
    with stdio_gateway("--config", str(config), "--db", str(db)) as gateway:
        gateway.wait_for("gateway_list_servers", lambda r: r["servers"][0]["state"] == "ready")
        # echo takes 'text' only: FastMCP refuses the call, quoting the arguments it got.
        reply = gateway.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": {
            "name": "leaky_echo", "arguments": {"password": PLANTED}}})
        assert reply is not None and reply["result"]["isError"], reply
        # Its answer too (review23): what a host sent goes on into the model's transcript;
        # a tool whose schema names the password was masked there already (RECENT).
        assert PLANTED not in json.dumps(reply) and "input_value=***" in json.dumps(reply)
        calls = gateway.wait_for("gateway_calls", lambda r: any(
            c["exposed"] == "leaky_echo" for c in r["calls"]))["calls"]
        record = next(c for c in calls if c["exposed"] == "leaky_echo")
        assert record["status"] == "error"
        assert "***" in record["error"] and PLANTED not in record["error"], record
        assert PLANTED not in record["arguments"]
        log = gateway.stop()
    assert PLANTED not in log
    for path in tmp_path.iterdir():  # the db and its WAL/shm files
        assert PLANTED.encode() not in path.read_bytes(), path


def test_an_error_answer_echoing_a_prompts_credential_argument_is_masked(
        tmp_path: Path) -> None:
    """review24: the isError text of a tool call was masked with the call's credential
    arguments (review23), but an upstream's JSON-RPC error answer -- a prompt refusing
    its ``api_token`` argument, quoting it -- reached the host whole."""
    planted = "tk-planted-5e02ab"
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"ep": {
        "command": sys.executable, "args": [str(SERVERS / "echoing_prompt.py")]}}}))
    with stdio_gateway("--config", str(config), "--no-db") as gateway:
        gateway.wait_for("gateway_list_servers", lambda r: r["servers"][0]["state"] == "ready")
        reply = gateway.send({"jsonrpc": "2.0", "id": 901, "method": "prompts/get", "params": {
            "name": "ep_login", "arguments": {"api_token": planted, "user": "grace"}}})
        assert reply is not None and "error" in reply, reply
        assert reply["error"]["message"].endswith("token *** is not valid for grace"), reply
        log = gateway.stop()
    assert planted not in log
