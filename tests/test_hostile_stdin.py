"""Hostile host lines on a real ``mcp-gateway serve`` stdio front (issue 14, item 2).

No line a host writes may stop the gateway or leave the host waiting for its own
timeout.  Each corpus line is written to a gateway subprocess (after a real
handshake, with the demo clock upstream behind it), followed by a ``ping`` under a
fresh id: every reply read before that ping's is the hostile line's, so an
answered line and a dropped one are told apart without waiting on the clock.
Invalid JSON gets -32700 with id null (JSON-RPC 2.0), an invalid request -32600
under its id when the host can match one, the rest nothing; afterwards a tools/call
still works, the process is alive and its stderr holds no traceback.  The same
corpus runs with the express lane on and off.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fast_mcp_gateway.front import stdio
from tests.fixtures import PY

DEADLINE = 60.0  # seconds for any one reply: generous for a loaded 2-core machine
CLIENT_INFO = {"name": "hostile-host", "version": "1"}
PARSE, INVALID = -32700, -32600


def msg(**fields: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **fields}).encode()


def ping(request_id: Any) -> bytes:
    return msg(id=request_id, method="ping")


@dataclass(frozen=True)
class Case:
    """``payload`` is written with a ``\\n`` after it; ``replies`` are what must come
    back, in any order, as ``("error", code, id)`` or ``("result", id)`` (empty: the line
    is dropped); an error's message must contain ``says``."""

    name: str
    payload: bytes
    replies: tuple[tuple[Any, ...], ...] = ()
    says: str = ""


def err(code: int, request_id: Any) -> tuple[tuple[Any, ...], ...]:
    return (("error", code, request_id),)


DEEP = 100_000
CORPUS: list[Case] = [
    # -- not JSON: -32700, id null ---------------------------------------------------
    Case("truncated", b'{"jsonrpc":"2.0","id":1,"method":"ping"', err(PARSE, None), "EOF"),
    Case("trailing comma", b'{"jsonrpc":"2.0","id":1,"method":"ping",}', err(PARSE, None),
         "trailing comma"),
    Case("single quotes", b"{'jsonrpc':'2.0','id':1,'method':'ping'}", err(PARSE, None),
         "invalid JSON"),
    Case("two messages on one line", ping(1) + b" " + ping(2), err(PARSE, None),
         "trailing characters"),
    Case("plain text", b"hello gateway, are you there?", err(PARSE, None), "invalid JSON"),
    Case("NaN id", b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}', err(PARSE, None),
         "NaN is not a JSON value"),
    Case("Infinity id", b'{"jsonrpc":"2.0","id":-Infinity,"method":"ping"}',
         err(PARSE, None), "Infinity"),
    Case("raw NUL inside the id string", b'{"jsonrpc":"2.0","id":"a\x00b","method":"ping"}',
         err(PARSE, None), "control character"),
    Case("NUL bytes only", b"\x00\x00\x00\x00", err(PARSE, None), "invalid JSON"),
    Case("NUL between tokens", b'{"jsonrpc":"2.0",\x00"id":3,"method":"ping"}',
         err(PARSE, None), "invalid JSON"),
    Case("invalid UTF-8 before the JSON", b"\xff\xfe" + ping(4), err(PARSE, None),
         "not valid UTF-8 (byte 0xff at offset 0)"),
    Case("invalid UTF-8 in params",
         b'{"jsonrpc":"2.0","id":5,"method":"ping","params":{"x":"\xc3\x28"}}',
         err(PARSE, None), "not valid UTF-8"),
    Case("UTF-8-encoded surrogate (CESU) in the id",
         b'{"jsonrpc":"2.0","id":"\xed\xa0\x80","method":"ping"}', err(PARSE, None),
         "not valid UTF-8"),
    Case("UTF-16 text", ping(6).decode().encode("utf-16-le"), err(PARSE, None),
         "NUL bytes (UTF-16 text?)"),
    Case("100k open brackets, closed", b"[" * DEEP + b"]" * DEEP, err(PARSE, None),
         "nested too deeply"),
    Case("100k open objects, never closed", b'{"a":' * DEEP, err(PARSE, None),
         "nested too deeply"),
    Case("deep nesting in the params of a request",
         b'{"jsonrpc":"2.0","id":7,"method":"ping","params":{"x":' + b"[" * DEEP
         + b"]" * DEEP + b"}}", err(PARSE, None), "nested too deeply"),
    Case("a 5000-digit id", b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}',
         err(PARSE, None), "number out of range"),
    Case("a 4 MiB line of unterminated JSON",
         b'{"jsonrpc":"2.0","id":8,"method":"ping","params":{"x":"' + b"a" * (4 << 20),
         err(PARSE, None), "EOF"),
    # -- lone UTF-16 surrogates: valid JSON, invalid Unicode: -32600 under the id -------
    Case("tools/call with a lone-surrogate id (once exited the gateway)",
         b'{"jsonrpc":"2.0","id":"\\ud800","method":"tools/call",'
         b'"params":{"name":"clock_now","arguments":{}}}', err(INVALID, "\ud800"),
         "lone UTF-16 surrogate"),
    Case("ping with a lone trailing surrogate id",
         b'{"jsonrpc":"2.0","id":"x\\udfff","method":"ping"}', err(INVALID, "x\udfff"),
         "lone UTF-16 surrogate"),
    Case("lone surrogate in the method", b'{"jsonrpc":"2.0","id":9,"method":"\\ud800"}',
         err(INVALID, 9), "lone UTF-16 surrogate"),
    Case("lone surrogate in tools/call arguments",
         b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"clock_now",'
         b'"arguments":{"timezone":"\\ud83d"}}}', err(INVALID, 10), "lone UTF-16 surrogate"),
    Case("lone surrogate in a notification",
         b'{"jsonrpc":"2.0","method":"notifications/message","params":{"x":"\\ud800"}}'),
    # -- ids the host cannot have meant, or that cannot be answered ---------------------
    Case("float id", msg(id=1.5, method="ping"), err(INVALID, 1.5), '"id" must be'),
    Case("integral float id", b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}',
         err(INVALID, 1.0), "fraction or an exponent"),
    Case("exponent id", b'{"jsonrpc":"2.0","id":2e3,"method":"ping"}', err(INVALID, 2000.0),
         "fraction or an exponent"),
    Case("true id", msg(id=True, method="ping"), err(INVALID, True), "a boolean"),
    Case("false id", msg(id=False, method="tools/call", params={"name": "clock_now"}),
         err(INVALID, False), "a boolean"),
    Case("null id", msg(id=None, method="ping")),
    Case("object id", msg(id={"a": 1}, method="ping")),
    Case("array id", msg(id=[1], method="ping")),
    Case("id beyond a double", b'{"jsonrpc":"2.0","id":1e400,"method":"ping"}'),
    Case("a 30-digit integer id", ping(10**30), (("result", 10**30),)),
    # -- not a valid request -------------------------------------------------------------
    Case("no method", b'{"jsonrpc":"2.0","id":11}', err(INVALID, 11), '"method" member'),
    Case('jsonrpc "1.0"', b'{"jsonrpc":"1.0","id":12,"method":"ping"}', err(INVALID, 12),
         '"jsonrpc" must be "2.0"'),
    Case("jsonrpc missing", b'{"id":13,"method":"ping"}', err(INVALID, 13),
         '"jsonrpc": "2.0" member is missing'),
    Case("jsonrpc a number", b'{"jsonrpc":2.0,"id":14,"method":"ping"}', err(INVALID, 14),
         '"jsonrpc" must be "2.0"'),
    Case("method a number", msg(id=15, method=42), err(INVALID, 15), '"method" must be'),
    Case("params an array", msg(id=16, method="tools/list", params=[1]), err(INVALID, 16),
         '"params" must be an object'),
    Case("params a string", msg(id="s", method="ping", params="x"), err(INVALID, "s"),
         '"params" must be an object'),
    Case("empty object", b"{}"),
    Case("jsonrpc only", b'{"jsonrpc":"2.0"}'),
    # -- valid JSON-RPC the server refuses itself ---------------------------------------
    Case("unknown method", msg(id=17, method="no/such/method"), err(-32601, 17)),
    Case("tools/call, arguments not an object",
         msg(id=18, method="tools/call", params={"name": "clock_now", "arguments": "x"}),
         err(-32602, 18)),
    Case("tools/call without params", msg(id=19, method="tools/call"), err(-32602, 19)),
    Case("tools/call of an unknown tool",
         msg(id=21, method="tools/call", params={"name": "clock_never", "arguments": {}}),
         (("result", 21),)),
    Case("tools/call with a 30-digit id",
         msg(id=10**30 + 1, method="tools/call", params={"name": "clock_now"}),
         (("result", 10**30 + 1),)),
    Case("tools/call with _meta a number",
         msg(id=20, method="tools/call", params={"name": "clock_now", "_meta": 5}),
         err(-32602, 20)),
    # -- batches (MCP removed them): each request with an id is refused -----------------
    Case("empty batch", b"[]"),
    Case("batch of two valid pings", b"[" + ping("b1") + b"," + ping("b2") + b"]",
         (("error", INVALID, "b1"), ("error", INVALID, "b2")), "batches are not supported"),
    Case("batch of valid and invalid requests",
         b"[" + ping("b3") + b',{"jsonrpc":"2.0","method":"notifications/initialized"},'
         + msg(id=4.5, method="ping") + b",5]",
         (("error", INVALID, "b3"), ("error", INVALID, 4.5)), "batches are not supported"),
    Case("batch of numbers", b"[1,2,3]"),
    Case("batch in a batch", b"[[" + ping("b4") + b"]]"),
    # -- notifications with bad params: never answered --------------------------------
    Case("cancelled with params a number", msg(method="notifications/cancelled", params=5)),
    Case("cancelled for an unknown request",
         msg(method="notifications/cancelled", params={"requestId": "nobody"})),
    Case("cancelled with an object request id",
         msg(method="notifications/cancelled", params={"requestId": {"x": [1]}})),
    Case("progress with no fields", msg(method="notifications/progress", params={})),
    Case("unknown notification", msg(method="notifications/whatever", params={"a": 1})),
    Case("initialize again, without params", msg(id=22, method="initialize", params={}),
         err(-32602, 22)),
    Case("initialized again", msg(method="notifications/initialized")),
    # -- responses nobody asked for: never answered -----------------------------------
    Case("result for an unknown id", msg(id=99999, result={})),
    Case("error for an unknown id", msg(id="gw-ask-999", error={"code": 1, "message": "x"})),
    Case("response with result and error",
         msg(id=99998, result={}, error={"code": 1, "message": "x"})),
    Case("response with a malformed error", msg(id=99997, error="boom")),
    Case("error response with id null",
         msg(id=None, error={"code": -32700, "message": "your fault"})),
    # -- valid JSON, not an object ----------------------------------------------------
    Case("null", b"null"),
    Case("a number", b"42"),
    Case("a string", b'"tools/call"'),
    Case("true", b"true"),
    # -- line endings and padding -------------------------------------------------------
    Case("CR-only line endings", ping("cr1") + b"\r" + ping("cr2") + b"\r",
         (("result", "cr1"), ("result", "cr2"))),
    Case("CRLF", ping("crlf") + b"\r", (("result", "crlf"),)),
    Case("byte order mark", b"\xef\xbb\xbf" + ping("bom"), (("result", "bom"),)),
    Case("whitespace only", b" \t  "),
    Case("lone CR", b"\r"),
]


def summary(message: dict[str, Any]) -> tuple[Any, ...]:
    request_id = message.get("id")
    if "error" in message:
        return ("error", message["error"]["code"], request_id)
    return ("result", request_id)


def key(request_id: Any) -> tuple[str, Any]:
    # True == 1 and 1.0 == 1 in Python: an id is matched with its JSON type.
    return type(request_id).__name__, request_id


def typed(replies: tuple[tuple[Any, ...], ...] | list[tuple[Any, ...]]) -> list[Any]:
    # Served requests may be answered in any order; ids are compared with their type.
    return sorted(((*r[:-1], *key(r[-1])) for r in replies), key=repr)


@dataclass
class Outcome:
    answered: int = 0
    dropped: int = 0
    mismatches: list[str] = field(default_factory=list)


class GatewayProcess:
    """``mcp-gateway serve`` on pipes: a reader thread queues each stdout line."""

    def __init__(self, config: Path, db: Path, stderr: Path, *, lane: bool) -> None:
        env = {**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower()}
        self._stderr = stderr.open("wb")
        self.proc = subprocess.Popen(
            [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(config), "--db", str(db),
             "--log-level", "WARNING"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        self.lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._probes = (f"probe-{n}" for n in range(1, 10**9))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(b"")  # EOF

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(json.dumps(message).encode() + b"\n")

    def next_message(self, waiting_for: str) -> dict[str, Any]:
        """The next response the gateway writes (its notifications are skipped)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                raw = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"nothing within {DEADLINE} s while waiting for "
                                     f"{waiting_for}") from None
            assert raw, f"the gateway closed stdout (exit {self.proc.poll()})"
            message = json.loads(raw)  # every line the gateway writes must be JSON
            assert isinstance(message, dict), raw
            if "method" not in message:
                return message
            assert "id" not in message, f"unexpected request to the host: {message}"

    def until(self, request_id: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The responses read before the one to ``request_id``, and that one."""
        before: list[dict[str, Any]] = []
        while True:
            message = self.next_message(f"the reply to {request_id!r} (read: {before})")
            if key(message.get("id")) == key(request_id):
                return before, message
            before.append(message)

    def ready(self, tool: str) -> None:
        """The host's handshake, then until ``tool`` is listed."""
        reply = self.request("initialize", {"protocolVersion": "2025-11-25",
                                            "capabilities": {}, "clientInfo": CLIENT_INFO})
        assert "result" in reply, reply
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        wait_for_tool(self, tool)

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = next(self._probes)
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method,
                   "params": params or {}})
        before, reply = self.until(request_id)
        assert before == [], f"unexpected replies before {method}: {before}"
        return reply

    def after(self, payload: bytes, expected_ids: list[Any]) -> list[dict[str, Any]]:
        """Write ``payload`` as a line, then a ping: the replies to the line.

        The gateway screens a line before it reads the next, so its own answers (and
        what the SDK refuses outright) come before the ping's; a request it serves
        may be answered after it, so the replies to ``expected_ids`` are awaited.
        """
        probe = next(self._probes)
        self.write(payload + b"\n" + ping(probe) + b"\n")
        replies, reply = self.until(probe)
        assert reply.get("result") == {}, reply
        pending = {key(i) for i in expected_ids} - {key(r.get("id")) for r in replies}
        while pending:
            replies.append(self.next_message(f"replies to {pending} (read: {replies})"))
            pending.discard(key(replies[-1].get("id")))
        return replies

    def kill(self) -> None:
        """Kill the gateway if it still runs (a test's clean-up after a failure)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the gateway exits when its stdin closes
        try:
            code = self.proc.wait(timeout=DEADLINE)
        finally:
            self.kill()
            self._reader.join(timeout=DEADLINE)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self._stderr.close()
        return code


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text("servers:\n  clock:\n    command: ${GATEWAY_PYTHON}\n"
                    '    args: ["-m", "fast_mcp_gateway.demo.clock"]\n')
    return path


@pytest.fixture(params=[True, False], ids=["lane", "no-lane"])
def gateway(request: pytest.FixtureRequest, config: Path,
            tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(config, tmp_path / "g.db", tmp_path / "stderr.log",
                             lane=request.param)
    try:
        process.ready("clock_now")
        yield process
    finally:
        if process.proc.poll() is None:
            process.close()


def wait_for_tool(process: GatewayProcess, name: str) -> None:
    """Until ``name`` is listed (the gateway connects its upstreams in the background)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        tools = process.request("tools/list")["result"]["tools"]
        if any(tool["name"] == name for tool in tools):
            return
        assert time.monotonic() < deadline, f"{name} never listed: {tools}"
        time.sleep(0.05)  # another process's progress: nothing here to wait on


def test_the_corpus_is_large_and_its_names_unique() -> None:
    assert len(CORPUS) >= 40
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.timeout(300)
def test_every_hostile_line_is_answered_or_dropped_and_the_gateway_lives_on(
        gateway: GatewayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        request: pytest.FixtureRequest) -> None:
    outcome = Outcome()
    for case in CORPUS:
        replies = gateway.after(case.payload, [r[-1] for r in case.replies])
        if typed([summary(r) for r in replies]) != typed(case.replies):
            outcome.mismatches.append(f"{case.name}: expected {case.replies}, got {replies}")
            continue
        for reply in replies:
            if "error" in reply:
                message = reply["error"]["message"]
                if not (isinstance(message, str) and case.says in message):
                    outcome.mismatches.append(f"{case.name}: {message!r} lacks {case.says!r}")
        if replies:
            outcome.answered += 1
        else:
            outcome.dropped += 1
    assert outcome.mismatches == [], "\n".join(outcome.mismatches)

    # The gateway still serves: a tools/call through the upstream (the express lane's
    # own path when it is on), and it is still running.
    reply = gateway.request("tools/call", {"name": "clock_now", "arguments": {}})
    assert reply["result"]["isError"] is False, reply
    assert reply["result"]["structuredContent"]["timezone"] == "UTC"
    assert gateway.proc.poll() is None
    assert gateway.close() == 0
    log = (tmp_path / "stderr.log").read_text(errors="replace")
    assert "Traceback" not in log, log
    # Dropped lines are logged, rate-limited: at most a burst, each one a single line.
    warned = [line for line in log.splitlines() if "stdin: dropped a" in line]
    assert 1 <= len(warned) <= outcome.dropped, log
    with capsys.disabled():
        print(f"\n[{request.node.callspec.id}] {len(CORPUS)} hostile lines: "
              f"{outcome.answered} answered, {outcome.dropped} dropped (no reply due), "
              f"{len(warned)} drop warnings logged; alive after them, exit 0")


# -- in-process: the reader's limits and the drop log's rate ---------------------------

def feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_a_line_over_the_limit_is_skipped_answered_and_the_next_served() -> None:
    async def run() -> tuple[list[str], list[bytes]]:
        answers: list[bytes] = []

        async def answer(line: bytes) -> None:
            answers.append(line)

        lines = stdio.LineReader(feed(ping(1) * 30_000 + b"\n" + ping(2) + b"\n"), answer,
                                 max_line_bytes=1 << 20)
        return [line async for line in lines], answers

    served, answers = asyncio.run(run())
    assert [json.loads(line)["id"] for line in served] == [2]
    (reply,) = [json.loads(line) for line in answers]
    assert reply["id"] is None and reply["error"]["code"] == PARSE
    assert "longer than 1 MiB" in reply["error"]["message"]


def test_dropped_lines_are_logged_at_most_a_burst_then_one_per_ten_seconds(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = stdio._DropLog(lambda: now[0])
    refusal = stdio.Refusal("a reason", dropped=1)
    with caplog.at_level("WARNING", logger=stdio.__name__):
        for _ in range(50):
            log.dropped(refusal, 10)
        assert len(caplog.records) == 10
        now[0] += 10.0
        log.dropped(refusal, 10)
    assert len(caplog.records) == 11
    assert "40 more dropped since the last such warning" in caplog.records[-1].getMessage()
