"""MCP calls in flight when ``serve --transport http`` gets SIGTERM and its grace ends.

A call cut by the stop (``http/serving.CutAtStop``) was answered 503 in the REST error
shape: an MCP client showed only "Server returned an error response".  Now it gets a
JSON-RPC error with its request's id and words naming the stop and what to do, as the
MCP endpoint's other refusals.  And each cut request was a WARNING line of its own (100
calls in flight, 100 lines): now the first three are named, the rest counted in one
line as the stop ends.  A real gateway process, a real stdio upstream whose tool runs
until cancelled (``servers/slow.py``), real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types

from tests.fixtures import PY, SERVERS, WITHIN
from tests.test_stop_cut_request import CLI, Lines

MODERN = "2026-07-28"
CALLS = 5


def _call(url: str, request_id: int, answers: dict[int, tuple[int, str, Any]],
          **extra: Any) -> None:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {
        "name": "slow_wait", "arguments": {"seconds": 600}, "_meta": {
            types.PROTOCOL_VERSION_META_KEY: MODERN,
            types.CLIENT_INFO_META_KEY: {"name": "raw-http", "version": "1"},
            types.CLIENT_CAPABILITIES_META_KEY: {}}}, **extra}
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "MCP-Protocol-Version": MODERN,
        "Accept": "application/json, text/event-stream", "Mcp-Method": "tools/call",
        "Mcp-Name": "slow_wait"})
    try:
        with urllib.request.urlopen(request, timeout=WITHIN) as response:
            answers[request_id] = (response.status, response.headers["content-type"],
                                   response.read())
    except urllib.error.HTTPError as exc:
        answers[request_id] = (exc.code, exc.headers["content-type"], json.loads(exc.read()))


@contextlib.contextmanager
def stopping_gateway(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str], Lines]]:
    """A gateway serving the slow upstream over HTTP (``MCP_GATEWAY_STOP_GRACE=1``):
    its MCP URL, the upstream's events file, the process and its stderr lines."""
    events = tmp_path / "events"
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"slow": {
        "command": PY, "args": [str(SERVERS / "slow.py"), str(events)]}}}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*CLI, "--config", str(config), "--transport", "http", "--port", str(port),
         "--no-db"], env={**os.environ, "MCP_GATEWAY_STOP_GRACE": "1", "HOME": str(tmp_path)},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        log = Lines(proc.stderr)
        log.wait_for("upstream slow: starting -> ready")
        yield f"http://127.0.0.1:{port}/mcp", events, proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def until_started(events: Path, calls: int = 1) -> None:
    """Until the slow upstream has started ``calls`` calls (its events file says so)."""
    deadline = time.monotonic() + WITHIN
    while not (events.exists() and events.read_text().count("started") == calls):
        assert time.monotonic() < deadline, events.read_text() if events.exists() else ""
        time.sleep(0.02)  # a condition polled: nothing the gateway logs says it


def test_mcp_calls_cut_by_a_stop_get_json_rpc_errors_and_few_lines(tmp_path: Path) -> None:
    answers: dict[int, tuple[int, str, Any]] = {}
    with stopping_gateway(tmp_path) as (url, events, proc, log):
        calls = [threading.Thread(target=_call, args=(url, 100 + n, answers))
                 for n in range(CALLS - 1)]
        # One the lane passes on (it reads the body; a member it does not know goes to
        # the full path): its id is the body's, parsed as the stop cuts it.
        calls.append(threading.Thread(target=_call, args=(url, 100 + CALLS - 1, answers),
                                      kwargs={"x-note": 1}))
        for call in calls:
            call.start()
        until_started(events, CALLS)  # every call runs upstream
        proc.send_signal(signal.SIGTERM)
        said = log.wait_ended()
        assert proc.wait(timeout=WITHIN) == 0, said
        for call in calls:
            call.join(timeout=WITHIN)
    # Each host is answered as the MCP endpoint answers: its id, in words saying what
    # happened and what to do.
    assert sorted(answers) == [100 + n for n in range(CALLS)], answers
    for request_id, (status, content_type, body) in answers.items():
        assert status == 503 and content_type == "application/json", answers
        assert body["jsonrpc"] == "2.0" and body["id"] == request_id, body
        assert body["error"]["code"] == types.INTERNAL_ERROR, body
        message = body["error"]["message"]
        assert "the gateway stopped" in message and "1 s after the stop began" in message
        assert "retry on another instance of the gateway" in message, message
    # Start-up says the server count in one line (the banner, with the event loop).
    counts = [line for line in said.splitlines() if "1 server(s)" in line
              or "1 upstream(s)" in line]
    assert len(counts) == 1 and "(http; event loop: " in counts[0], said
    # Three named, the rest counted in one line; no traceback, no ERROR.
    assert "Traceback" not in said and " ERROR " not in said, said
    named = [line for line in said.splitlines() if "stopping: cut POST /mcp," in line]
    assert len(named) == 3 and all(" WARNING " in x and "answered 503" in x for x in named), \
        said
    counted = [line for line in said.splitlines() if "stopping: cut 5 request(s) in all" in line]
    assert len(counted) == 1 and "the first 3 named above, and 2 more: 2 x POST /mcp, " \
        "answered 503" in counted[0], said
