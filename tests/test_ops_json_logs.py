"""``--log-format json`` / ``MCP_GATEWAY_LOG_FORMAT=json``: a team's log shipper reads
every stderr line of a real ``serve`` as one JSON object holding every field of the
text line (the CLI's own banner and refusals too), secrets masked in the message and the
traceback alike.  Before, there was no machine-readable option at all."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from fast_mcp_gateway.cli.log_format import JsonLines
from fast_mcp_gateway.telemetry.log_filter import SecretLogFilter
from tests.fixtures import PY, SERVERS
from tests.stdio_gateway import CLI, REPO, stdio_gateway

FIELDS = {"time", "level", "logger", "message", "pid", "instance"}


def objects(stderr: str) -> list[dict[str, object]]:
    """Every stderr line as JSON (a line that is not fails the test, naming it)."""
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    return out


def test_a_serve_logs_every_line_as_json_with_every_field(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(f"servers:\n  well:\n    command: {PY}\n"
                      f"    args: ['{SERVERS / 'well.py'}']\n")
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path),
           "MCP_GATEWAY_LOG_FORMAT": "JSON"}  # any case, as the level
    with stdio_gateway("--config", str(config), "--no-db", "--instance-id", "gw-json",
                       env=env) as gateway:
        gateway.call("well_crash")
        gateway.wait_for("well_pid", lambda pid: isinstance(pid, dict))
        stderr = gateway.stop()
    lines = objects(stderr)
    assert all(set(entry) >= FIELDS for entry in lines), lines
    assert {entry["instance"] for entry in lines} == {"gw-json"}
    assert str(lines[0]["message"]).startswith("starting 1 upstream(s) from ")
    crash = [e for e in lines if "upstream well: ready -> reconnecting" in str(e["message"])]
    assert len(crash) == 1 and crash[0]["level"] == "WARNING", lines
    assert str(crash[0]["time"]).endswith("Z") and lines[-1]["message"].startswith(
        "stopped after")


def test_a_refusal_to_start_is_json_too(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  a: {command: x}\ngateway: {auth: {tokens: [{}]}}\n")
    done = subprocess.run([*CLI, "serve", "--config", str(config), "--no-db",
                           "--transport", "http", "--port", "0", "--log-format", "json",
                           "--instance-id", "gw-json"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "XDG_DATA_HOME": str(tmp_path / "data")})
    assert done.returncode == 2, done.stderr
    last = objects(done.stderr)[-1]
    assert (last["level"], last["logger"], last["instance"]) == (
        "ERROR", "mcp-gateway", "gw-json")
    assert "auth" in str(last["message"])


def test_the_message_and_the_traceback_are_masked_in_json() -> None:
    handler = logging.StreamHandler()
    handler.addFilter(SecretLogFilter())
    handler.setFormatter(JsonLines("gw-1"))
    logger = logging.getLogger("tests.ops_json")
    secret = "sk-live-abcdef1234567890abcdef"
    try:
        raise ValueError(f"upstream said: bad key {secret}")
    except ValueError:
        record = logger.makeRecord("tests.ops_json", logging.ERROR, __file__, 1,
                                   "call failed with %s\nsecond line", (secret,),
                                   exc_info=sys.exc_info())
    assert handler.filter(record)
    entry = json.loads(handler.format(record))
    assert set(entry) >= FIELDS and entry["level"] == "ERROR"
    assert secret not in json.dumps(entry)
    assert entry["message"].startswith("call failed with ")
    assert "ValueError: upstream said: bad key" in entry["exception"]
