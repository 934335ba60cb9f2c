"""The session lane (http/session_lane.py): a handshake-era host's ``tools/call`` on its
HTTP session, answered as the full path answers it, over real HTTP on 127.0.0.1.

Two gateways front the same upstreams, one with the lanes and one without
(``http_express_lane=False``); each case opens a session on both (``initialize``,
``notifications/initialized``) and sends the same raw POSTs, comparing status, headers
and the SSE stream (framing byte for byte, each message's JSON canonically: key order
inside an object is the upstream's on the lane, the models' on the full path).  The
lane's ``served`` counter tells whether it answered.  Real hosts too: the SDK's
``ClientSession`` (handshake), a FastMCP client in legacy mode, the Inspector CLI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.front.outcomes import CallOutcome
from fast_mcp_gateway.http.session_lane import SessionLane
from tests import npm_tools
from tests.fixtures import (
    PY,
    SERVERS,
    WITHIN,
    alpha_server,
    interactive_server,
    make_gateway,
    memory_entry,
    serve_http,
    until,
)

pytestmark = pytest.mark.anyio

ERA = "2025-06-18"


def new_token() -> tuple[str, str]:
    token = "mgw_" + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


ANN, ANN_SHA = new_token()
BOB, BOB_SHA = new_token()
TOKENS = [{"name": "ann", "sha256": ANN_SHA, "scopes": ["tools"]},
          {"name": "bob", "sha256": BOB_SHA, "scopes": ["tools"]}]


@dataclass
class Front:
    gateway: Gateway
    base: str
    http: httpx2.AsyncClient
    events: dict[str, Any]
    lane: SessionLane

    @property
    def served(self) -> int:
        return self.lane.served


@contextlib.asynccontextmanager
async def front(lane: bool, auth: bool = True,
                options: dict[str, Any] | None = None) -> AsyncIterator[Front]:
    events: dict[str, Any] = {"started": anyio.Event(), "cancelled": anyio.Event()}
    gateway = make_gateway(
        {"alpha": memory_entry("alpha"), "inter": memory_entry("inter"),
         "fid": {"command": PY, "args": [str(SERVERS / "fidelity.py")]}},
        {"alpha": alpha_server(), "inter": interactive_server(events)},
        options=options or ({"auth": {"tokens": TOKENS}} if auth else None),
        http_express_lane=lane, call_timeout=60)
    app = gateway.http_app("http")
    async with serve_http(app) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        yield Front(gateway, base, http, events, session_lane_of(app))


def session_lane_of(app: Any) -> SessionLane:
    """The session lane behind the app's MCP entry (the guard, the 2026-07-28 lane...)."""
    entry = app.mcp_entry
    while not isinstance(entry, SessionLane):
        entry = entry.app
    return entry


def headers(token: str | None = ANN, session: str | None = None) -> dict[str, str]:
    found = {"content-type": "application/json",
             "accept": "application/json, text/event-stream"}
    if token is not None:
        found["authorization"] = f"Bearer {token}"
    if session is not None:
        found |= {"mcp-session-id": session, "mcp-protocol-version": ERA}
    return found


async def open_session(f: Front, token: str | None = ANN,
                       capabilities: dict[str, Any] | None = None) -> str:
    got = await f.http.post("/mcp", headers=headers(token), json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": ERA, "capabilities": capabilities or {},
            "clientInfo": {"name": "raw", "version": "1"}}})
    session = got.headers["mcp-session-id"]
    done = await f.http.post("/mcp", headers=headers(token, session),
                             json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202
    return session


def call(name: str, arguments: dict[str, Any] | None = None, request_id: Any = 7,
         meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


MATTERS = ("content-type", "cache-control", "connection", "x-accel-buffering",
           "content-length")


def shape(response: httpx2.Response, session: str) -> tuple[Any, ...]:
    """What must be equal: status, headers (the session's id as such, in order), the
    stream's framing and each message canonically (a traceparent is new per call)."""
    heads = [(k.decode(), v.decode().replace(session, "<session>"))
             for k, v in response.headers.raw if k.decode() not in ("date", "server")]
    body = response.content
    framing, messages = [], []
    for event in body.split(b"\r\n\r\n"):
        lines = event.split(b"\r\n")
        framing.append([line[:6] for line in lines])
        for line in lines:
            if line.startswith(b"data: "):
                message = json.loads(line[6:])
                params = message.get("params") or {}
                if isinstance(params.get("_meta"), dict):
                    params["_meta"].pop("traceparent", None)
                messages.append(json.dumps(message, sort_keys=True))
    return response.status_code, heads, framing, messages


async def same_answer(lane: Front, full: Front, sessions: tuple[str, str],
                      body: dict[str, Any], *, taken: bool, token: str | None = ANN
                      ) -> httpx2.Response:
    before = lane.served
    got = await lane.http.post("/mcp", json=body, headers=headers(token, sessions[0]))
    want = await full.http.post("/mcp", json=body, headers=headers(token, sessions[1]))
    assert lane.served - before == (1 if taken else 0)
    assert shape(got, sessions[0]) == shape(want, sessions[1]), (got.content, want.content)
    return got


@contextlib.asynccontextmanager
async def both(auth: bool = True) -> AsyncIterator[tuple[Front, Front, tuple[str, str]]]:
    async with front(True, auth) as lane, front(False, auth) as full:
        token = ANN if auth else None
        sessions = (await open_session(lane, token), await open_session(full, token))
        yield lane, full, sessions


def summary(outcome: CallOutcome) -> tuple[Any, ...]:
    """What a call's record says of it that both paths must say alike."""
    call = outcome.call
    caller = call.front.caller
    return (outcome.status, outcome.error, call.exposed, call.service.name, call.principal.name,
            call.front.client_id, call.front.protocol_version, str(call.front.request_id),
            None if caller is None else (caller.name, caller.token))


async def test_answers_are_the_full_paths() -> None:
    async with both() as (lane, full, sessions):
        outcomes: tuple[list[CallOutcome], list[CallOutcome]] = ([], [])
        for f, seen in zip((lane, full), outcomes, strict=True):
            f.gateway.provider.pipeline.observers.append(seen.append)
        for n, (name, arguments) in enumerate([
                ("alpha_add", {"a": 2, "b": 3}), ("alpha_media", {}),
                ("alpha_fail", {"message": "no: ✗"}), ("fid_plain", None),
                ("fid_link", {}), ("fid_needs_url", {})]):
            got = await same_answer(lane, full, sessions, call(name, arguments, n),
                                    taken=True)
            assert got.headers["content-type"] == "text/event-stream"
        # Progress to the host's own token, and logs at every level until it sets one.
        progress = call("alpha_progress", {"steps": 2, "tag": "t"}, "p-1",
                        {"progressToken": "tok"})
        got = await same_answer(lane, full, sessions, progress, taken=True)
        assert got.content.count(b"notifications/progress") == 2
        assert got.content.count(b"notifications/message") == 2
        for f, session in zip((lane, full), sessions, strict=True):
            done = await f.http.post("/mcp", headers=headers(ANN, session), json={
                "jsonrpc": "2.0", "id": "lvl", "method": "logging/setLevel",
                "params": {"level": "error"}})
            assert done.status_code == 200
        got = await same_answer(lane, full, sessions, {**progress, "id": "p-2"}, taken=True)
        assert b"notifications/message" not in got.content
        assert got.content.count(b"notifications/progress") == 2
        # The calls' records say the same on both paths.
        await until(lambda: len(outcomes[0]) == len(outcomes[1]) == 8)
        assert [summary(o) for o in outcomes[0]] == [summary(o) for o in outcomes[1]]


async def test_what_the_lane_does_not_take_goes_the_full_path() -> None:
    async with both() as (lane, full, sessions):
        cases = [call("alpha_nope", {}), call("gateway_list_servers", {}),
                 call("alpha_add", {"a": 1, "b": 2}, meta={"progressToken": True}),
                 call("alpha_add", {"a": 1, "b": 2}, meta={"progressToken": None}),
                 {**call("alpha_add", {"a": 1, "b": 2}), "extra": 1},
                 {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}]
        for body in cases:
            await same_answer(lane, full, sessions, body, taken=False)
        # Another credential's POST on the session: the SDK's 404, in the gateway's words.
        got = await same_answer(lane, full, sessions, call("alpha_add", {"a": 1, "b": 2}),
                                taken=False, token=BOB)
        assert got.status_code == 404
        # An unknown session, no token, a bad one.
        for token, session in ((ANN, "0" * 32), (None, sessions[0]),
                               ("mgw_nope", sessions[0])):
            before = lane.served
            got = await lane.http.post("/mcp", json=call("alpha_add", {"a": 1, "b": 2}),
                                       headers=headers(token, session))
            assert got.status_code in (401, 404) and lane.served == before


async def test_json_the_sdks_parser_reads_otherwise_goes_the_full_path() -> None:
    """Python's parser reads lone surrogates, NaN and ~1,000 levels of nesting; the
    SDK's (pydantic-core) refuses the first and the last (400, parse error) and reads
    NaN as a number that reaches the tool as null."""
    async with both() as (lane, full, sessions):
        for n, raw in enumerate([b'"\\ud800"', b'"a\\udc00"', b"NaN",
                                 b"[" * 210 + b"]" * 210]):
            body = (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":'
                    b'"alpha_fail","arguments":{"message":%b}}}' % (n, raw))
            before = lane.served
            got = await lane.http.post("/mcp", content=body, headers=headers(ANN, sessions[0]))
            want = await full.http.post("/mcp", content=body,
                                        headers=headers(ANN, sessions[1]))
            assert lane.served == before, raw
            assert shape(got, sessions[0]) == shape(want, sessions[1])
        # A surrogate pair, escaped, is plain Unicode: the lane's.
        await same_answer(lane, full, sessions, call("alpha_fail", {"message": "\U0001f600"}),
                          taken=True)


async def test_a_bad_token_costs_as_much_on_a_live_session_as_on_none() -> None:
    """A caller without a valid token learns nothing of which sessions exist: its POST
    is verified as often (and so takes as long) on a live session as on a made-up one,
    and gets FastMCP's 401 either way."""
    async with front(True) as lane:
        session = await open_session(lane)
        verifier = lane.lane.access.verifier  # the one FastMCP's guard asks too
        assert verifier is not None
        counted: list[str] = []
        verify = verifier.verify_token

        async def counting(token: str) -> Any:
            counted.append(token)
            return await verify(token)

        verifier.verify_token = counting  # type: ignore[method-assign]
        seen = []
        for target in (session, "f" * 32):
            counted.clear()
            got = await lane.http.post("/mcp", json=call("alpha_add", {"a": 1, "b": 2}),
                                       headers=headers("mgw_nope", target))
            seen.append((got.status_code, len(counted)))
        assert seen[0] == seen[1] and seen[0][0] == 401, seen


async def test_without_auth_too() -> None:
    async with both(auth=False) as (lane, full, sessions):
        await same_answer(lane, full, sessions, call("alpha_add", {"a": 1, "b": 2}),
                          taken=True, token=None)


async def test_two_sessions_of_two_tokens() -> None:
    async with front(True) as lane:
        ann, bob = await open_session(lane, ANN), await open_session(lane, BOB)
        for token, session in ((ANN, ann), (BOB, bob)):
            got = await lane.http.post("/mcp", json=call("alpha_add", {"a": 1, "b": 1}),
                                       headers=headers(token, session))
            assert b'"structuredContent":{"result":2}' in got.content
        assert lane.served == 2
        swapped = await lane.http.post("/mcp", json=call("alpha_add", {"a": 1, "b": 1}),
                                       headers=headers(BOB, ann))
        assert swapped.status_code == 404 and lane.served == 2


async def _until_served(f: Front, count: int) -> None:
    with anyio.fail_after(30):
        while f.served < count:  # noqa: ASYNC110 - a counter, set as the call starts
            await anyio.sleep(0.01)


async def test_the_hosts_cancellation_cancels_a_lane_call() -> None:
    async with front(True) as lane:
        session = await open_session(lane)
        outcomes: list[CallOutcome] = []
        lane.gateway.provider.pipeline.observers.append(outcomes.append)
        stream: list[bytes] = []
        async with anyio.create_task_group() as tg:
            async def post() -> None:
                got = await lane.http.post("/mcp", json=call("inter_wait_for_cancel", {}, 5),
                                           headers=headers(ANN, session))
                stream.append(got.content)

            tg.start_soon(post)
            await lane.events["started"].wait()
            assert lane.served == 1
            # The same id again while it runs: the full path's duplicate-id refusal.
            again = await lane.http.post("/mcp", json=call("alpha_add", {"a": 1, "b": 1}, 5),
                                         headers=headers(ANN, session))
            assert again.status_code == 400 and "still in flight" in again.text, again.text
            ack = await lane.http.post("/mcp", headers=headers(ANN, session), json={
                "jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 5, "reason": "enough"}})
            assert ack.status_code == 202 and ack.content == b""
            assert ack.headers["mcp-session-id"] == session
        with anyio.fail_after(30):
            await lane.events["cancelled"].wait()  # upstream too
        assert stream == [b'event: message\r\ndata: {"jsonrpc":"2.0","id":5,"error":'
                          b'{"code":-32800,"message":"Request cancelled"}}\r\n\r\n']
        assert [o.status for o in outcomes] == ["cancelled"]


async def test_a_question_pending_when_its_call_is_cancelled_is_withdrawn_first() -> None:
    """The host cancels a call while its question (elicitation) is unanswered: on the
    call's stream, the question's withdrawal comes before the answer, as the SDK
    writes them (under the same question id: the session's first request, 1)."""
    streams: list[list[Any]] = []
    async with both() as (lane, full, _):
        for f in (lane, full):
            session = await open_session(f, ANN, capabilities={"elicitation": {}})
            seen: list[Any] = []
            async with f.http.stream("POST", "/mcp", json=call("inter_ask", {}, 6),
                                     headers=headers(ANN, session)) as got:
                async for line in got.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    message = json.loads(line[6:])
                    seen.append(message)
                    if message.get("method") == "elicitation/create":
                        await f.http.post("/mcp", headers=headers(ANN, session), json={
                            "jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": 6}})
            assert seen[0]["id"] == 1
            streams.append([json.dumps(m, sort_keys=True) for m in seen[1:]])
        assert lane.served == 1
    assert streams[0] == streams[1], streams
    assert len(streams[0]) == 2 and '"caller cancelled"' in streams[0][0]
    assert '"requestId": 1' in streams[0][0]


@pytest.mark.parametrize("lane", [True, False])
async def test_an_answer_the_sdk_reads_answers_the_question(lane: bool) -> None:
    """Members JSON-RPC does not define beside ``result`` (the SDK reads past them; with
    ``result`` and ``error`` both, the error): the lane took only the exact shapes and
    left the rest to the full path, whose session knew no such question, and the call
    waited for ever."""
    async with front(lane) as f:
        session = await open_session(f, ANN, capabilities={"elicitation": {}})
        for n, extra in enumerate([{"_meta": {"k": 1}}, {"error": {"code": 7, "message": "no"}}]):
            answered: list[Any] = []
            with anyio.fail_after(WITHIN):  # a bound only: the answer ends the call
                async with f.http.stream("POST", "/mcp", json=call("inter_ask", {}, n),
                                         headers=headers(ANN, session)) as got:
                    async for line in got.aiter_lines():
                        message = json.loads(line[6:]) if line.startswith("data: ") else {}
                        if message.get("method") == "elicitation/create":
                            ack = await f.http.post("/mcp", headers=headers(ANN, session), json={
                                "jsonrpc": "2.0", "id": message["id"], **extra,
                                "result": {"action": "accept", "content": {"value": "Ann"}}})
                            assert ack.status_code == 202
                        elif message.get("id") == n:
                            answered.append(message["result"]["content"][0]["text"])
            assert answered == ["accept:Ann" if n == 0 else "Error calling tool 'ask': no"]
        assert f.served == (2 if lane else 0)


async def cancelled_mid_call(f: Front, session: str, n: int,
                             cancel: Callable[[], Awaitable[None]]) -> list[bytes]:
    """``inter_wait_for_cancel`` called as request ``n`` on ``session``, and ``cancel``
    (the host's cancellation POST) run once the call started; the call's stream."""
    f.events["started"], stream = anyio.Event(), []
    with anyio.fail_after(WITHIN):  # a bound only: the cancellation ends it
        async with anyio.create_task_group() as tg:
            async def post() -> None:
                got = await f.http.post("/mcp", json=call("inter_wait_for_cancel", {}, n),
                                        headers=headers(ANN, session))
                stream.append(got.content)

            tg.start_soon(post)
            await f.events["started"].wait()
            await cancel()
    return stream


@pytest.mark.parametrize("lane", [True, False])
async def test_a_cancellation_the_sdk_reads_cancels(lane: bool) -> None:
    """The SDK cancels on a notification's ``requestId`` alone (a ``reason`` that is no
    string, a member JSON-RPC does not define: read past), sent as any content type its
    checks take; the lane passed those on, and the call ran on."""
    async with front(lane) as f:
        session = await open_session(f)
        for n, (cancel, sent_as) in enumerate([
                ({"params": {"requestId": 0, "reason": 5}}, "application/json"),
                ({"params": {"requestId": "1"}, "x": 1}, "application/json"),
                ({"params": {"requestId": 2}}, "application/json, text/plain")]):
            async def cancelling(cancel: dict[str, Any] = cancel, sent_as: str = sent_as
                                 ) -> None:
                ack = await f.http.post("/mcp", headers={
                    **headers(ANN, session), "content-type": sent_as}, json={
                    "jsonrpc": "2.0", "method": "notifications/cancelled", **cancel})
                assert ack.status_code == 202

            stream = await cancelled_mid_call(f, session, n, cancelling)
            assert stream == [b'event: message\r\ndata: {"jsonrpc":"2.0","id":%d,"error":'
                              b'{"code":-32800,"message":"Request cancelled"}}\r\n\r\n' % n]
        assert f.served == (3 if lane else 0)


async def test_a_host_that_goes_away_and_a_deleted_session_end_lane_calls() -> None:
    async with front(True) as lane:
        outcomes: list[CallOutcome] = []
        lane.gateway.provider.pipeline.observers.append(outcomes.append)
        session = await open_session(lane)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: lane.http.post(
                "/mcp", json=call("alpha_slow", {"seconds": 600}), headers=headers(ANN, session)))
            await _until_served(lane, 1)
            tg.cancel_scope.cancel()  # the client drops the connection
        await until(lambda: len(outcomes) == 1)
        assert outcomes[0].status == "cancelled"
        ended: list[bytes] = []
        async with anyio.create_task_group() as tg:
            async def post() -> None:
                got = await lane.http.post("/mcp", json=call("alpha_slow", {"seconds": 600}, 8),
                                           headers=headers(ANN, session))
                ended.append(got.content)

            tg.start_soon(post)
            await _until_served(lane, 2)
            gone = await lane.http.delete("/mcp", headers=headers(ANN, session))
            assert gone.status_code == 200
        assert ended == [b""]  # the stream ended without an answer, as the SDK ends it
        await until(lambda: len(outcomes) == 2)
        assert outcomes[1].status == "cancelled" and not lane.lane.calls


async def test_real_hosts_of_the_handshake_era_with_asks() -> None:
    async with front(True) as lane:
        progress: list[float] = []

        async def elicit(context: Any, params: Any) -> types.ElicitResult:
            return types.ElicitResult(action="accept", content={"value": "Ann", "name": "Ann"})

        async def sample(context: Any, params: Any) -> types.CreateMessageResult:
            return types.CreateMessageResult(
                role="assistant", model="m", content=types.TextContent(type="text", text="hi"))

        async def on_progress(progress_value: float, total: float | None,
                              message: str | None) -> None:
            progress.append(progress_value)

        async def roots(context: Any) -> types.ListRootsResult:
            return types.ListRootsResult(roots=[types.Root(uri="file:///work/ann")])

        logs: list[Any] = []

        async def on_log(params: Any) -> None:
            logs.append(params)

        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {ANN}"}, timeout=60)
        async with http, streamable_http_client(f"{lane.base}/mcp", http_client=http) as (
                read, write), ClientSession(read, write, elicitation_callback=elicit,
                                            sampling_callback=sample,
                                            list_roots_callback=roots,
                                            logging_callback=on_log) as session:
            init = await session.initialize()
            assert init.protocol_version == "2025-11-25"
            asked = await session.call_tool("inter_ask", {})
            assert asked.content[0].text == "accept:Ann"  # type: ignore[union-attr]
            sampled = await session.call_tool("inter_sample", {})
            assert sampled.content[0].text == "m:hi"  # type: ignore[union-attr]
            listed = await session.call_tool("inter_roots", {})
            assert listed.structured_content == {"result": ["file:///work/ann"]}
            await session.set_logging_level("warning")
            done = await session.call_tool("alpha_progress", {"steps": 2},
                                           progress_callback=on_progress)
            assert done.content[0].text == " done"  # type: ignore[union-attr]
        assert lane.served == 4 and progress == [1.0, 2.0] and logs == []
        async def answer(*_: Any) -> dict[str, str]:
            return {"value": "Bob", "name": "Bob"}

        async with Client(StreamableHttpTransport(f"{lane.base}/mcp", auth=BOB),
                          mode="legacy", elicitation_handler=answer) as client:
            assert (await client.call_tool("inter_ask", {})).data == "accept:Bob"
            assert (await client.call_tool("alpha_add", {"a": 2, "b": 2})).data == 4
            # A 2026-07-28 upstream's input_required, put to this host as a question
            # (the gateway's session to it moves to 2026-07-28 for it: last).
            guarded = await client.call_tool("inter_ask_guard", {})
            assert guarded.content[0].text == "guard:accept:Bob"  # type: ignore[union-attr]
        assert lane.served == 7


@pytest.fixture(scope="module")
def tools() -> Path:
    folder = npm_tools.ensure()
    if folder is None:
        pytest.skip("npm is not available")
    return folder


async def test_the_inspector_cli_is_served_by_the_lane(tools: Path) -> None:
    async with front(True) as lane:
        inspector = npm_tools.package_path(tools, "@modelcontextprotocol/inspector")
        done = await anyio.run_process(
            [str(npm_tools.node(tools)), str(inspector / "clients/launcher/build/index.js"),
             "--cli", "--protocol-era", "legacy", f"{lane.base}/mcp", "--transport", "http",
             "--header", f"Authorization: Bearer {ANN}", "--method", "tools/call",
             "--tool-name", "alpha_add", "--tool-arg", "a=2", "b=3"], check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert json.loads(done.stdout)["structuredContent"] == {"result": 5}
        assert lane.served == 1


async def test_a_running_call_is_pinged_as_sse_starlette_pings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_mcp_gateway.http import session_reply

    monkeypatch.setattr(session_reply, "PING_EVERY", 0.01)
    async with front(True) as lane:
        session = await open_session(lane)
        seen = b""
        async with lane.http.stream("POST", "/mcp", json=call("inter_wait_for_cancel", {}, 3),
                                    headers=headers(ANN, session)) as got:
            assert got.headers["content-type"] == "text/event-stream"
            async for chunk in got.aiter_raw():
                seen += chunk
                if seen.count(b"\r\n\r\n") >= 2:
                    break
        assert lane.served == 1
        pings = seen.split(b"\r\n\r\n")[:2]
        assert all(p.startswith(b": ping - ") and p.endswith(b"+00:00") for p in pings), seen
        await lane.events["cancelled"].wait()  # the host left: the call was cancelled


@pytest.mark.parametrize("era", ["2024-11-05", "2025-03-26", "2025-11-25"])
async def test_each_handshake_era_gets_its_own_result_fields(
        era: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ERA", era)
    async with both() as (lane, full, sessions):
        for n, (name, arguments) in enumerate([("alpha_media", {}), ("fid_link", {}),
                                               ("alpha_add", {"a": 1, "b": 2})]):
            await same_answer(lane, full, sessions, call(name, arguments, n), taken=True)
