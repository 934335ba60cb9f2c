"""The early answer: a stdio ``serve`` answers the host's opening request while its
server stack is still being imported (``front/early.py``), with what the SDK answers.

The oracle is the SDK itself: every serve below replays the opening request into the
SDK, compares its answer with the one sent, and logs which it was; a request the
early reader is not certain the SDK accepts is left to the SDK.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import mcp_types.version as sdk_versions
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp_types import InitializeRequestParams, JSONRPCRequest, jsonrpc_message_adapter
from mcp_types.methods import parse_client_request, validate_client_request
from pydantic import ValidationError

from fast_mcp_gateway._version import GATEWAY_NAME, __version__
from fast_mcp_gateway.front import early
from fast_mcp_gateway.front.early import EarlyAnswer, differences, opening_result, parse_line
from fast_mcp_gateway.front.server import Deferred
from fast_mcp_gateway.front.stdio import screen
from fast_mcp_gateway.upstream.loops import GATEWAYS_KEY
from tests.fixtures import PY
from tests.test_answer_first import ERA_META, Host

WELL = Path(__file__).parent / "servers" / "well.py"
GUARD = 200  # seconds: a hang guard only (a real serve and its upstream start)
ANSWERED = "before the server stack was loaded"
AGREED = "the server's own answer to the opening request is the one sent early"


def initialize(version: Any = "2025-06-18", **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "early-host", "version": "1"}, **params}}


def discover(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": "d-1", "method": "server/discover",
            "params": {"_meta": meta if meta is not None else ERA_META}}


@contextlib.asynccontextmanager
async def debug_serve(tmp_path: Path, config_text: str
                      ) -> AsyncIterator[tuple[anyio.abc.Process, Path]]:
    """A real ``serve`` of ``config_text``, its DEBUG log written to the path given."""
    config = tmp_path / "servers.yaml"
    config.write_text(config_text)
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        process = await anyio.open_process(
            [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
             "--db", str(tmp_path / "store.db"), "--log-level", "DEBUG"], stderr=log)
        async with process:
            assert process.stdin is not None and process.stdout is not None
            yield process, log_path


async def serve_first(tmp_path: Path, first: bytes, then: dict[str, Any], *,
                      separator: str = "_") -> tuple[list[dict[str, Any]], str]:
    """Run a real ``serve`` (DEBUG log), write ``first`` and, once it is answered,
    ``then`` (a request with id 2); the messages read until that is answered, and the
    log."""
    read: list[dict[str, Any]] = []
    async with debug_serve(tmp_path, f"gateway:\n  separator: '{separator}'\n"
                           f"servers:\n  well: {{command: {PY}, args: [{WELL}]}}\n"
                           ) as (process, log_path):
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send(first)
        buffer = b""
        with anyio.fail_after(GUARD):
            while not any(m.get("id") == 2 for m in read):
                buffer += await process.stdout.receive()
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    message = json.loads(raw)
                    read.append(message)
                    if len(read) == 1 and "id" in message:
                        await process.stdin.send(json.dumps(then).encode() + b"\n")
        await process.stdin.aclose()
        with anyio.fail_after(GUARD):
            await process.wait()
    return read, log_path.read_text()


CASES = {
    "initialize 2025-06-18": (initialize(), {}),
    "initialize 2024-11-05, with capabilities": (initialize(
        "2024-11-05", capabilities={"roots": {"listChanged": True}, "sampling": {},
                                    "elicitation": {"form": {}},
                                    "extensions": {"io.example/x": {"mime": ["a"]}}}), {}),
    "initialize at an unknown version": (initialize("2099-01-01"), {}),
    "discover, separator __": (discover(), {"separator": "__"}),
}


@pytest.mark.anyio
@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", list(CASES))
async def test_the_early_answer_is_the_servers_own(tmp_path: Path, case: str) -> None:
    opening, options = CASES[case]
    modern = opening["method"] == "server/discover"
    then = {"jsonrpc": "2.0", "id": 2, "method": "tools/list",
            "params": {"_meta": ERA_META} if modern else {}}
    first = json.dumps(opening).encode() + b"\n"
    if not modern:
        first += b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n'
    read, log = await serve_first(tmp_path, first, then, **options)
    answer = read[0]
    assert answer["id"] == opening["id"] and "result" in answer, answer
    # The gateway's identity (upstream/loops.py): a random token, made before the
    # import, then its config's and store's hash (served_here); the SDK's own answer
    # told the same (AGREED, below: front/lineage.py).
    identity = answer["result"]["_meta"][GATEWAYS_KEY][0]
    assert re.fullmatch(r"[0-9a-f]{32}\.[0-9a-f]{16}", identity), answer
    assert answer["result"] == opening_result(
        opening, name=GATEWAY_NAME, version=__version__,
        separator=options.get("separator", "_"), identity=identity)
    assert f"'<namespace>{options.get('separator', '_')}<name>'" in \
        answer["result"]["instructions"]
    assert f"answered {opening['method']} {ANSWERED}" in log
    assert AGREED in log and "differs from the server's own" not in log
    # The SDK's own answer was not sent again; the session goes on.
    assert [m.get("id") for m in read if "id" in m] == [opening["id"], 2], read
    tools = {t["name"] for t in read[-1]["result"]["tools"]}
    assert "well_echo" in tools or "gateway_list_servers" in tools


@pytest.mark.anyio
@pytest.mark.timeout(240)
async def test_an_opening_the_sdk_may_refuse_is_left_to_it(tmp_path: Path) -> None:
    # ``roots: true`` is not a capability object: the SDK answers an error, as before.
    opening = initialize(capabilities={"roots": True})
    read, log = await serve_first(tmp_path, json.dumps(opening).encode() + b"\n",
                                  {"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert "error" in read[0] and read[0]["id"] == 1, read[0]
    assert ANSWERED not in log and AGREED not in log


async def serve_all(tmp_path: Path, sent: bytes, wanted: set[Any]
                    ) -> tuple[list[dict[str, Any]], str, int]:
    """Run a real ``serve`` with no upstream (DEBUG log), write ``sent`` at once, and
    once every id in ``wanted`` is answered (none: at once) close its stdin; every
    message it wrote until it exited, the log and its exit code."""
    read: list[dict[str, Any]] = []
    async with debug_serve(tmp_path, "servers: {}\n") as (process, log_path):
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send(sent)
        buffer, open_ = b"", True
        with anyio.fail_after(GUARD):
            while True:
                if open_ and wanted <= {m.get("id") for m in read}:
                    await process.stdin.aclose()
                    open_ = False
                try:
                    chunk = await process.stdout.receive()
                except anyio.EndOfStream:
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                read += [json.loads(raw) for raw in complete]
            code = await process.wait()
    return read, log_path.read_text(), code


_INIT = json.dumps(initialize()).encode()
_INITIALIZED = b'{"jsonrpc": "2.0", "method": "notifications/initialized"}'
_LIST = b'{"jsonrpc": "2.0", "id": 2, "method": "tools/list"}'
_PING = b'{"jsonrpc": "2.0", "id": 3, "method": "ping"}'
FRAMINGS = {  # what the host writes at once, the ids to be answered, answered early
    "the whole opening in one write, CRLF": (
        b"\r\n".join([_INIT, _INITIALIZED, _LIST, _PING]) + b"\r\n", {1, 2, 3}, True),
    "blank lines, then a BOM": (
        b"\n \r\n\t\n\xef\xbb\xbf" + b"\n".join([_INIT, _INITIALIZED, _PING]) + b"\n",
        {1, 3}, True),
    "stdin closed right after initialize": (_INIT + b"\n", set(), True),
    # Not an opening first: nothing is answered early, the SDK answers all of it.
    "a ping first": (b"\n".join([_PING.replace(b'"id": 3', b'"id": 5'), _INIT, _PING])
                     + b"\n", {5, 1, 3}, False),
    "a notification first": (b"\n".join([_INITIALIZED, _INIT, _PING]) + b"\n", {1, 3},
                             False),
}


@pytest.mark.anyio
@pytest.mark.timeout(240)
@pytest.mark.parametrize("framing", list(FRAMINGS))
async def test_every_request_is_answered_once_however_framed(tmp_path: Path,
                                                             framing: str) -> None:
    sent, wanted, early_ = FRAMINGS[framing]
    read, log, code = await serve_all(tmp_path, sent, wanted)
    if early_:
        assert f"answered initialize {ANSWERED}" in log and AGREED in log, log[-2000:]
        assert read[0]["id"] == 1 and "result" in read[0], read[0]
    else:
        assert ANSWERED not in log and AGREED not in log, log[-2000:]
    answers = [m["id"] for m in read if "id" in m and "method" not in m]
    assert sorted(answers) == sorted({1} | wanted), read
    assert code == 0, log[-2000:]


def test_the_protocol_versions_are_the_sdks() -> None:
    assert early.HANDSHAKE_VERSIONS == sdk_versions.HANDSHAKE_PROTOCOL_VERSIONS
    assert early.LATEST_HANDSHAKE == sdk_versions.LATEST_HANDSHAKE_VERSION
    assert early.MODERN_VERSIONS == sdk_versions.MODERN_PROTOCOL_VERSIONS


# -- what is answered early: never what the SDK refuses -----------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
# Members the SDK models, each given values of every kind: a flag where an object is
# expected and the reverse are the near misses an early answer must not take.
_small = st.sampled_from([None, True, False, {}, {"x": 1}, 1, "x", []])
_member_keys = st.sampled_from(["listChanged", "list_changed", "form", "url", "context",
                                "tools", "list", "cancel", "requests", "sampling",
                                "elicitation", "createMessage", "create", "x"])
_member = st.one_of(_small, st.dictionaries(_member_keys, st.one_of(
    _small, st.dictionaries(_member_keys, _small, max_size=2)), max_size=2))
_capability = st.one_of(_json, _member, st.dictionaries(_member_keys, _member, max_size=2))
_capabilities = st.one_of(_json, st.dictionaries(
    st.sampled_from(["roots", "sampling", "elicitation", "tasks", "experimental",
                     "extensions", "other"]), _capability, max_size=4))
# Mostly well-formed, so that most examples reach the capabilities' checks.
_valid_info = st.fixed_dictionaries({"name": st.text(max_size=5),
                                     "version": st.text(max_size=5)})
_info = st.one_of(_valid_info, _valid_info, _valid_info, _json, st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=5), st.integers(), st.none()),
     "version": st.one_of(st.text(max_size=5), st.none())},
    optional={"title": _json, "icons": _json, "websiteUrl": _json}))
_id = st.one_of(st.integers(), st.integers(), st.integers(), st.text(max_size=4),
                st.booleans(), st.none(), st.floats(allow_nan=False))
_level = st.one_of(st.sampled_from(["debug", "error", "bogus", None]), _small)
_envelope_extras = st.fixed_dictionaries({}, optional={
    "io.modelcontextprotocol/logLevel": _level, "progressToken": _small,
    "progress_token": _small})


@st.composite
def _openings(draw: st.DrawFn) -> dict[str, Any]:
    # Mostly well-formed but for one part drawn from anything: most examples then
    # reach the checks of that part.
    def part(good: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> Any:
        return draw(anything if draw(st.integers(0, 4)) == 4 else good)

    message: dict[str, Any] = {"jsonrpc": part(st.just("2.0"), st.just("1.0")),
                               "id": part(st.integers(), _id)}
    if draw(st.integers(0, 9)) == 0:  # a member of a response beside the request's
        message[draw(st.sampled_from(["result", "error"]))] = draw(_small)
    capabilities = part(st.dictionaries(st.sampled_from(
        ["roots", "sampling", "elicitation", "tasks", "experimental", "extensions",
         "other"]), _capability, max_size=3), _capabilities)
    info = part(_valid_info, _info)
    if draw(st.booleans()):
        message["method"] = "initialize"
        params = {"protocolVersion": part(st.sampled_from(
            (*early.HANDSHAKE_VERSIONS, "2026-07-28", "x")), _json),
            "capabilities": capabilities, "clientInfo": info}
        if draw(st.booleans()):
            params["_meta"] = part(_envelope_extras, _json)
        message["params"] = params
    else:
        message["method"] = "server/discover"
        meta = {early.VERSION_KEY: part(st.just("2026-07-28"), st.sampled_from(
            ["2025-06-18", None])), early.CLIENT_CAPABILITIES_KEY: capabilities}
        if draw(st.booleans()):
            meta[early.CLIENT_INFO_KEY] = info
        meta = {k: v for k, v in meta.items() if v is not None}
        meta.update(draw(_envelope_extras))
        message["params"] = part(st.just({"_meta": meta}), st.sampled_from(
            [{"_meta": meta, "x": 1}, meta]))
    return message


def sdk_accepts(line: bytes, message: dict[str, Any]) -> bool:
    """Whether the SDK's server takes ``line`` as the opening request it looks like, as
    its stdio server parses it and its runner checks it (``mcp.server.runner``)."""
    if screen(line) is not None or not isinstance(
            jsonrpc_message_adapter.validate_json(line, by_name=False), JSONRPCRequest):
        return False
    params = message["params"]
    try:
        if message["method"] == "initialize":
            validate_client_request("initialize", sdk_versions.LATEST_HANDSHAKE_VERSION,
                                    params)
            InitializeRequestParams.model_validate(params, by_name=False)
            return True
        if isinstance(classify_inbound_request(message), InboundLadderRejection):
            return False
        parse_client_request("server/discover", MODERN, params)
    except ValidationError:
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_openings())
def test_only_requests_the_sdk_accepts_are_answered_early(message: dict[str, Any]) -> None:
    line = json.dumps(message).encode()
    result = opening_result(parse_line(line), name="g", version="1", separator="_")
    if result is not None:
        assert sdk_accepts(line, message), message


def _deep(levels: int) -> dict[str, Any]:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return initialize(capabilities={"experimental": {"x": {"deep": value}}})


MODERN = early.MODERN_VERSIONS[0]


@pytest.mark.parametrize("line", [
    # Python's parser reads 250 levels, the SDK's stops at 200 (a parse error, id null)
    json.dumps(_deep(250)).encode(),
    # read by the SDK as a response (ignored), not as the request it also is
    json.dumps({**initialize(), "error": {"code": 1, "message": "x"}}).encode(),
    json.dumps({**initialize(), "result": {}}).encode(),
    # a flag where the SDK models an object, an object where it models a flag
    json.dumps(initialize(capabilities={"roots": {"listChanged": {}}})).encode(),
    json.dumps(initialize(capabilities={"sampling": {"context": True}})).encode(),
    json.dumps(initialize(capabilities={"elicitation": {"form": True}})).encode(),
    json.dumps(initialize(capabilities={"tasks": {"list": True}})).encode(),
    json.dumps(initialize(capabilities={"tasks": {"requests": {"sampling": True}}})).encode(),
    json.dumps(discover({**ERA_META, early.CLIENT_CAPABILITIES_KEY: {
        "sampling": {"tools": False}}})).encode(),
    # a log level the 2026-07-28 envelope does not name
    json.dumps(discover({**ERA_META, "io.modelcontextprotocol/logLevel": "bogus"})).encode(),
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"\\ud800","version":"1"}}}',  # lone surrogate
    b'\xff{"jsonrpc":"2.0"}',  # not UTF-8
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":NaN}}',
    b'[' + json.dumps(initialize()).encode() + b']',  # a batch
    json.dumps({**initialize(), "id": True}).encode(),
    json.dumps({**initialize(), "id": 1.5}).encode(),
    json.dumps(initialize(clientInfo={"name": "h", "version": "1",
                                      "icons": [{"src": 5}]})).encode(),
    json.dumps(discover({**ERA_META, early.VERSION_KEY: "2099-01-01"})).encode(),
    json.dumps({**discover(), "params": {}}).encode(),
    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode(),
])
def test_lines_left_to_the_sdk(line: bytes) -> None:
    assert opening_result(parse_line(line), name="g", version="1", separator="_") is None


# -- the reader thread ------------------------------------------------------------------


class Pipes:
    def __init__(self) -> None:
        self.host_in, self.gateway_in = os.pipe()   # host writes -> gateway reads
        self.gateway_out, self.host_out = os.pipe()  # gateway writes -> host reads
        self.reader = EarlyAnswer(name="g", version="1", separator="_",
                                  fd_in=self.host_in, fd_out=self.host_out)

    def close(self) -> None:
        for fd in (self.host_in, self.gateway_in, self.gateway_out, self.host_out):
            os.close(fd)


@pytest.fixture
def pipes() -> Any:
    made = Pipes()
    yield made
    made.reader.close()
    made.close()


def read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        data += os.read(fd, 65536)
    return data


def test_the_reader_answers_and_hands_every_byte_over(pipes: Pipes) -> None:
    opening = json.dumps(initialize()).encode()
    sent = b"\r\n" + opening + b"\r\n" + b'{"jsonrpc":"2.0","method":"notifications/initi'
    pipes.reader.start()
    os.write(pipes.gateway_in, sent)
    reply = json.loads(read_line(pipes.gateway_out))  # answered while nothing else ran
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": opening_result(
        initialize(), name="g", version="1", separator="_",
        identity=pipes.reader.identity)}
    handover = pipes.reader.finish()
    assert handover.answered == reply
    assert handover.preread == sent
    assert pipes.reader.finish() is handover


def test_a_line_that_is_not_an_opening_is_handed_over_unanswered(pipes: Pipes) -> None:
    sent = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).encode() + b"\n"
    os.write(pipes.gateway_in, sent)
    pipes.reader.start()
    pipes.reader._thread.join()  # it stops after the first line, answered or not
    handover = pipes.reader.finish()
    assert handover == early.Handover(sent, None)


def test_finish_stops_a_reader_still_waiting_for_its_line(pipes: Pipes) -> None:
    pipes.reader.start()
    os.write(pipes.gateway_in, b'{"jsonrpc": "2.0", "id": 1, "meth')
    # Whether the thread read the partial line yet or not, it is handed over whole:
    # what it read comes in ``preread``, the rest is still in the pipe.
    handover = pipes.reader.finish()
    assert handover.answered is None
    left = b""
    os.set_blocking(pipes.host_in, False)
    with contextlib.suppress(BlockingIOError):
        left = os.read(pipes.host_in, 100)
    assert handover.preread + left == b'{"jsonrpc": "2.0", "id": 1, "meth'


@pytest.mark.parametrize(("sent", "first"), [
    (b"\r\n\n \t\r" + b"{1}\r\n{2}\n", b"{1}"),
    (b"\r{1}\r{2}", b"{1}"),
    (b"  \n{1} \n", b"{1} "),
])
def test_the_first_line_is_the_stdio_fronts(pipes: Pipes, sent: bytes, first: bytes) -> None:
    # Fed a byte at a time: a line end split from its line, \r\n split in two.
    chunks = iter([sent[i:i + 1] for i in range(len(sent))])
    os.write(pipes.gateway_in, b"x")  # the pipe stays readable: poll returns at once
    pipes.reader._read_chunk = lambda: next(chunks, b"")  # type: ignore[method-assign]
    assert pipes.reader._first_line() == first


def test_blank_lines_a_byte_at_a_time_cost_linear_time(pipes: Pipes) -> None:
    opening = json.dumps(initialize()).encode()
    sent = b"\r\n" * 20_000 + opening + b"\n"
    chunks = iter([sent[i:i + 1] for i in range(len(sent))])
    os.write(pipes.gateway_in, b"x")
    pipes.reader._read_chunk = lambda: next(chunks, b"")  # type: ignore[method-assign]
    began = time.thread_time()
    assert pipes.reader._first_line() == opening
    # Linear: well under a second of CPU; each line split again at each byte took
    # minutes for these 40,000 blank lines.
    assert time.thread_time() - began < 10


def test_a_first_line_past_the_limit_is_not_read_on(pipes: Pipes, monkeypatch: Any) -> None:
    monkeypatch.setattr(early, "FIRST_LINE_LIMIT", 10)
    os.write(pipes.gateway_in, b'{"jsonrpc": "2.0", "id": 1, "method": "initialize"')
    pipes.reader.start()
    pipes.reader._thread.join()
    assert pipes.reader.finish().answered is None


def test_a_host_that_closes_stdin_at_once_is_handed_over(pipes: Pipes) -> None:
    os.close(pipes.gateway_in)
    pipes.gateway_in = os.open(os.devnull, os.O_RDONLY)  # closed by the fixture
    pipes.reader.start()
    pipes.reader._thread.join()
    assert pipes.reader.finish() == early.Handover()


# -- the SDK's own answer -----------------------------------------------------------------


def test_differences_allow_instructions_that_grew() -> None:
    sent = {"jsonrpc": "2.0", "id": 1, "result": opening_result(
        initialize(), name="g", version="1", separator="_")}
    later = json.loads(json.dumps(sent))
    assert differences(sent, later) == []
    later["result"]["instructions"] += "\n\n## up\nUse it well."
    assert differences(sent, later) == []
    later["result"]["capabilities"]["tools"] = {}
    later["result"]["serverInfo"]["version"] = "2"
    assert differences(sent, later) == ["capabilities", "serverInfo"]
    assert differences(sent, {"jsonrpc": "2.0", "id": 1, "error": {"code": -1}})[0] \
        .startswith("the SDK answered with an error")


def test_differences_allow_gateways_learned_since_but_not_another_identity() -> None:
    """The SDK's answer may name gateways this one aggregates, connected since the
    early answer (upstream/loops.py); this gateway's own identity must stay first."""
    for opening in (initialize(), discover()):
        sent = {"jsonrpc": "2.0", "id": 1, "result": opening_result(
            opening, name="g", version="1", separator="_", identity="me")}
        later = json.loads(json.dumps(sent))
        later["result"]["_meta"][GATEWAYS_KEY].append("an-upstream-gateway")
        assert differences(sent, later) == []
        later["result"]["_meta"][GATEWAYS_KEY] = ["another", "me"]
        assert differences(sent, later) == ["_meta"]
        later["result"]["_meta"] = {**sent["result"]["_meta"], "io.example/x": 1}
        assert differences(sent, later) == ["_meta"]


@pytest.mark.anyio
async def test_the_sdks_reply_to_the_replayed_request_is_not_sent_again(
        caplog: pytest.LogCaptureFixture) -> None:
    sent = {"jsonrpc": "2.0", "id": 1, "result": opening_result(
        initialize(), name="g", version="1", separator="_")}
    host = Host()
    front = Deferred(iter(()), then=lambda: None).hold(host, host, sent)
    other = json.dumps({"jsonrpc": "2.0", "method": "notifications/message"}) + "\n"
    await front.write(other)
    # The host had its answer: it may use the id again, and that reply may come first.
    reused = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}) + "\n"
    await front.write(reused)
    changed = json.loads(json.dumps(sent))
    changed["result"]["capabilities"] = {}
    with caplog.at_level(logging.WARNING):
        await front.write(json.dumps(changed) + "\n")
    assert "differs from the server's own in capabilities" in caplog.text
    again = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {}}) + "\n"  # an id reused
    await front.write(again)
    assert host.written == [other, reused, again]
