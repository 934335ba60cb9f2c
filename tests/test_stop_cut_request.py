"""A REST change in flight when ``serve --transport http`` gets SIGTERM.

uvicorn gives requests in flight 5 s, then cancels their tasks (``Task.cancel()``) and
went on to the lifespan, which closed the store while the change -- shielded from its
store write through its audit (``finishing``) -- still ran: its audit entry could be
dropped without a word.  And uvicorn logged the cancellation as a crash: "Exception in
ASGI application" with a traceback, after "Cancel 1 running task(s)" at ERROR.  Now
the stop waits (bounded) for the change, which ends written and audited; the request
ends in one line saying what was cut and why, answered 503.  A real gateway process,
a real stdio server whose start the test holds (``servers/slow_start.py``), a real
SQLite file.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from tests.fixtures import PY, SERVERS, WITHIN

CLI = [sys.executable, "-m", "fast_mcp_gateway", "serve"]
OPS = "mgw_stop-cut-ops-5b7c1e9d2a4f"


class Lines:
    """The lines a process writes to ``stream``, read by a thread; ``wait_for`` blocks
    until one holds a text (or the stream ends)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, text: str) -> str:
        with self._changed:
            self._changed.wait_for(lambda: self._ended or any(text in x for x in self.lines),
                                   timeout=WITHIN)
            found = [x for x in self.lines if text in x]
            assert found, f"no line with {text!r}:\n{''.join(self.lines)}"
            return found[0]

    def wait_ended(self) -> str:
        with self._changed:
            self._changed.wait_for(lambda: self._ended, timeout=WITHIN)
            return "".join(self.lines)


def _post(url: str, body: dict[str, Any], answer: list[tuple[int, dict[str, Any]]]) -> None:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {OPS}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WITHIN) as response:
            answer.append((response.status, json.loads(response.read())))
    except urllib.error.HTTPError as exc:
        answer.append((exc.code, json.loads(exc.read())))


def _started(mark: Path) -> None:
    """Until the upstream's process made ``mark`` (nothing the gateway logs says it)."""
    deadline = time.monotonic() + WITHIN
    while not mark.exists():
        assert time.monotonic() < deadline, f"{mark} was never made"
        time.sleep(0.02)  # a condition polled: no event tells us


def test_a_rest_change_cut_by_a_stop_is_audited_and_said_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({
        "gateway": {"auth": {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}},
        "servers": {"clock": {"command": "${GATEWAY_PYTHON}",
                              "args": ["-m", "fast_mcp_gateway.demo.clock"]}}}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = tmp_path / "g.db"
    proc = subprocess.Popen(
        [*CLI, "--config", str(config), "--transport", "http", "--port", str(port),
         "--db", str(db)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    release = tmp_path / "release"
    answer: list[tuple[int, dict[str, Any]]] = []
    try:
        log = Lines(proc.stderr)
        log.wait_for("upstream clock: starting -> ready")
        # Added over REST: stored, then waiting (in ``finishing``) for its first
        # connect, which the test holds until the stop waits for it; released, the
        # server fails at once (``--fail``): the add is taken back, and audited.
        adding = threading.Thread(target=_post, args=(
            f"http://127.0.0.1:{port}/api/v1/servers",
            {"name": "slow", "config": {
                "command": PY, "args": [str(SERVERS / "slow_start.py"), str(release),
                                        "--per-process", "--fail"],
                "timeouts": {"connect": 300}}}, answer))
        adding.start()
        _started(tmp_path / "release.started.1")
        proc.send_signal(signal.SIGTERM)
        # uvicorn cuts the request after its 5 s; the stop then waits for the change.
        log.wait_for("stopping: waiting up to 5 s for 1 admin operation(s) in flight: "
                     "add_server 'slow' by ops")
        (tmp_path / "release.1").touch()  # its server fails at once: the change ends
        said = log.wait_ended()
        assert proc.wait(timeout=WITHIN) == 0, said
        adding.join(timeout=WITHIN)
    finally:
        (tmp_path / "release.1").touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # One line says what was cut and why; no traceback, no ERROR.
    assert "Traceback" not in said and " ERROR " not in said, said
    cut = [line for line in said.splitlines() if "cut POST /api/v1/servers" in line]
    assert len(cut) == 1 and "still running 5 s after the stop began" in cut[0], said
    assert answer and answer[0][0] == 503, answer
    assert answer[0][1]["error"]["code"] == "gateway_stopping"
    # The change ended (taken back: its server did not start) and is audited.
    with sqlite3.connect(db) as check:
        assert list(check.execute("SELECT name FROM servers")) == []
        audited = list(check.execute("SELECT action, target, actor, result FROM audit"))
    assert [row[:3] for row in audited] == [("add_server", "slow", "ops")], audited
    assert audited[0][3].startswith("not added: "), audited
