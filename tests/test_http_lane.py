"""The HTTP express lane (http/lane.py): the same answers as the full path, over real HTTP.

Two gateways on 127.0.0.1 front the same upstreams (an in-memory FastMCP server and the
hand-written ``tests/servers/fidelity.py``), one with the lane and one without
(``http_express_lane=False``).  Every case sends the same raw 2026-07-28 POST to both
and compares the HTTP status, the headers that matter and the body (canonical JSON:
key order inside objects is the upstream's on the lane, the models' on the full path); the
lane's ``served`` counter tells whether it answered or passed the request on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.front.outcomes import CallOutcome
from fast_mcp_gateway.http import lane as lane_module
from fast_mcp_gateway.http.lane import HttpLane
from fast_mcp_gateway.http.slow_clients import HeaderTimeoutHttpToolsProtocol, protocol_with_timeout
from tests.fixtures import PY, SERVERS, alpha_server, make_gateway, memory_entry, serve_http, until
from tests.servers.fidelity import URL_ERROR

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"


def new_token() -> tuple[str, str]:
    token = "mgw_" + secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


FULL, FULL_SHA = new_token()      # scope tools, every server
NARROW, NARROW_SHA = new_token()  # scope tools, server fid only
TOKENS = [{"name": "full", "sha256": FULL_SHA, "scopes": ["tools"]},
          {"name": "narrow", "sha256": NARROW_SHA, "scopes": ["tools"], "servers": ["fid"]}]


@dataclass
class Front:
    gateway: Gateway
    base: str
    http: httpx2.AsyncClient
    lane: HttpLane | None

    @property
    def served(self) -> int:
        return self.lane.served if self.lane is not None else 0


def _gateway(lane: bool) -> Gateway:
    return make_gateway(
        {"alpha": memory_entry("alpha", tools={"exclude": ["wipe"]}),
         "fid": {"command": PY, "args": [str(SERVERS / "fidelity.py")]}},
        {"alpha": alpha_server()}, options={"auth": {"tokens": TOKENS}},
        http_express_lane=lane, call_timeout=60)


@contextlib.asynccontextmanager
async def front(lane: bool, guarded: bool = False) -> AsyncIterator[Front]:
    """A gateway served by uvicorn's own protocol, or (``guarded``) by the one
    ``serve`` runs (``http/slow_clients.py``, which tells the app a host went away)."""
    gateway = _gateway(lane)
    app = gateway.http_app("http")
    entry = app.mcp_entry
    found = getattr(entry, "app", None)
    protocol = protocol_with_timeout(30.0) if guarded else "auto"
    async with serve_http(app, http=protocol) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        yield Front(gateway, base, http, found if isinstance(found, HttpLane) else None)


@contextlib.asynccontextmanager
async def both() -> AsyncIterator[tuple[Front, Front]]:
    async with front(True) as lane, front(False) as full:
        assert lane.lane is not None and lane.lane.enabled
        assert full.lane is not None and not full.lane.enabled
        yield lane, full


def body_of(name: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None = None,
            request_id: Any = 7) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "_meta": {
        types.PROTOCOL_VERSION_META_KEY: MODERN,
        types.CLIENT_INFO_META_KEY: {"name": "raw-http", "version": "1"},
        types.CLIENT_CAPABILITIES_META_KEY: {}, **(meta or {})}}
    if arguments is not None:
        params["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def headers_of(name: str, token: str | None = FULL, **extra: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "mcp-protocol-version": MODERN,
               "accept": "application/json, text/event-stream", "mcp-method": "tools/call",
               "mcp-name": name}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return {**headers, **extra}


MATTERS = ("content-type", "mcp-session-id", "mcp-protocol-version", "www-authenticate")


async def same_answer(lane: Front, full: Front, body: dict[str, Any],
                      headers: dict[str, str], *, taken: bool) -> httpx2.Response:
    """POST ``body`` to both; assert equal answers, and that the lane took it iff
    ``taken``.  The lane's response."""
    before = lane.served
    got = await lane.http.post("/mcp", content=json.dumps(body), headers=headers)
    want = await full.http.post("/mcp", content=json.dumps(body), headers=headers)
    assert lane.served - before == (1 if taken else 0)
    assert got.status_code == want.status_code, (got.text, want.text)
    for header in MATTERS:
        assert got.headers.get(header) == want.headers.get(header), header
    # Equal JSON, canonically encoded (so 1 and 1.0, or escapes, still differ): only
    # the order of keys inside an object may differ (the lane relays the upstream's).
    assert canonical(got.content) == canonical(want.content), (got.content, want.content)
    return got


def canonical(body: bytes) -> str | list[str]:
    if body.startswith(b"event:") or body.startswith(b":"):  # an SSE stream: its events
        return [json.dumps(json.loads(line[len(b"data: "):]), sort_keys=True)
                for line in body.splitlines() if line.startswith(b"data: ")]
    return json.dumps(json.loads(body), sort_keys=True) if body else ""


async def test_results_are_the_full_paths_byte_for_byte() -> None:
    async with both() as (lane, full):
        for name, arguments in [("alpha_add", {"a": 2, "b": 3}), ("alpha_media", {}),
                                ("alpha_fail", {"message": "no: ✗"}), ("fid_plain", None),
                                ("fid_link", {})]:
            got = await same_answer(lane, full, body_of(name, arguments),
                                    headers_of(name), taken=True)
            assert got.status_code == 200
            assert got.headers["content-type"] == "application/json"
        result = got.json()["result"]
        assert result["resultType"] == "complete"
        # isError from the upstream's ToolError, as the full path makes it.
        fail = (await lane.http.post("/mcp", content=json.dumps(body_of(
            "alpha_fail", {"message": "boom"})), headers=headers_of("alpha_fail"))).json()
        assert fail["result"]["isError"] is True and "boom" in fail["result"]["content"][0][
            "text"]


async def test_progress_and_logs_stream_as_on_the_full_path() -> None:
    async with both() as (lane, full):
        name = "alpha_progress"
        for meta in ({"progressToken": "tok-1", types.LOG_LEVEL_META_KEY: "info"},
                     {"progressToken": 5}, {types.LOG_LEVEL_META_KEY: "error"}):
            got = await same_answer(lane, full, body_of(name, {"steps": 3, "tag": "t"}, meta),
                                    headers_of(name), taken=True)
        got = await same_answer(
            lane, full, body_of(name, {"steps": 3, "tag": "t"}, {
                "progressToken": "tok-1", types.LOG_LEVEL_META_KEY: "info"}),
            headers_of(name), taken=True)
        assert got.headers["content-type"] == "text/event-stream"
        events = [json.loads(e) for e in canonical(got.content)]
        methods = [e.get("method") for e in events]
        assert methods.count("notifications/progress") == 3
        assert methods.count("notifications/message") == 3
        assert events[-1]["result"]["content"][0]["text"] == "t done"
        # A fastmcp client (progress token and log level on every call) gets them too.
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None
                              ) -> None:
            seen.append(progress)

        before = lane.served
        async with Client(StreamableHttpTransport(f"{lane.base}/mcp", auth=FULL),
                          mode=MODERN, progress_handler=on_progress) as client:
            assert (await client.call_tool(name, {"steps": 2})).data == " done"
            await until(lambda: len(seen) >= 2)  # the handler runs as its own task
        assert lane.served == before + 1 and seen == [1, 2]


async def test_an_upstream_json_rpc_error_is_relayed_as_the_full_path_relays_it() -> None:
    async with both() as (lane, full):
        got = await same_answer(lane, full, body_of("fid_needs_url", {}),
                                headers_of("fid_needs_url"), taken=True)
        error = got.json()["error"]
        assert error["code"] == URL_ERROR["code"] and error.get("data") == URL_ERROR["data"]


async def test_refusals_and_unknown_names_match_the_full_path() -> None:
    async with both() as (lane, full):
        # Unknown and hidden tools, another server's tool for a narrow token: passed on.
        for name, token in [("alpha_nope", FULL), ("alpha_wipe", FULL), ("alpha_add", NARROW)]:
            await same_answer(lane, full, body_of(name, {}), headers_of(name, token),
                              taken=False)
        # No token, a bad one: FastMCP's 401 with its challenge.
        for token in (None, "mgw_not-a-token"):
            got = await same_answer(lane, full, body_of("alpha_add", {"a": 1, "b": 1}),
                                    headers_of("alpha_add", token), taken=False)
            assert got.status_code == 401
        # The narrow token on its own server: the lane serves it.
        await same_answer(lane, full, body_of("fid_plain", None),
                          headers_of("fid_plain", NARROW), taken=True)

        # An authorizer's refusal happens in the pipeline: the lane answers it the same.
        async def refuse(call: Any) -> str | None:
            return f"not today: {call.exposed}"

        for f in (lane, full):
            f.gateway.provider.pipeline.authorizer = refuse
        got = await same_answer(lane, full, body_of("alpha_add", {"a": 1, "b": 1}),
                                headers_of("alpha_add"), taken=True)
        assert got.json()["result"]["isError"] is True
        assert "not today: alpha_add" in got.text


async def test_what_the_lane_does_not_fully_understand_takes_the_full_path() -> None:
    async with both() as (lane, full):
        name, args = "alpha_add", {"a": 1, "b": 2}
        cases: list[tuple[dict[str, Any], dict[str, str]]] = [
            (body_of(name, args, {"progressToken": True}), headers_of(name)),
            (body_of(name, args, {types.LOG_LEVEL_META_KEY: "loud"}), headers_of(name)),
            (body_of(name, args), headers_of(name, accept="text/event-stream")),
            (body_of(name, args), headers_of(name, accept="application/json")),
            (body_of(name, args), headers_of("alpha_fail")),  # routing header mismatch
            (body_of(name, args), headers_of(name, **{"mcp-param-a": "1"})),
            ({**body_of(name, args), "method": "tools/list"}, headers_of(name)),
            (body_of(name, args, {types.PROTOCOL_VERSION_META_KEY: "2025-11-25"}),
             headers_of(name)),
            # NaN is no JSON: the SDK reads it as null (the lane passed NaN on)
            (body_of(name, {"a": float("nan"), "b": 2}), headers_of(name)),
        ]
        for body, headers in cases:
            await same_answer(lane, full, body, headers, taken=False)
        # A handshake-era client (sessions, no per-request envelope): the full path.
        before = lane.served
        async with Client(StreamableHttpTransport(f"{lane.base}/mcp", auth=FULL),
                          mode="legacy") as client:
            assert (await client.call_tool(name, args)).data == 3
        assert lane.served == before
        # ... and a 2026-07-28 fastmcp client is served by the lane.
        async with Client(StreamableHttpTransport(f"{lane.base}/mcp", auth=FULL),
                          mode=MODERN) as client:
            assert (await client.call_tool(name, args)).data == 3
            assert (await client.call_tool("alpha_fail", {"message": "x"},
                                           raise_on_error=False)).is_error
        assert lane.served == before + 2


@pytest.mark.parametrize("guarded", [False, pytest.param(True, marks=pytest.mark.skipif(
    HeaderTimeoutHttpToolsProtocol is None, reason="httptools not installed"))])
async def test_a_host_that_goes_away_cancels_its_call(
    guarded: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    watchers: list[object] = []
    watch = lane_module._watch

    async def counted(receive: Any, call: Any) -> None:
        watchers.append(call)
        await watch(receive, call)

    monkeypatch.setattr(lane_module, "_watch", counted)
    async with front(True, guarded) as lane:
        outcomes: list[CallOutcome] = []
        seen = anyio.Event()

        def observe(outcome: CallOutcome) -> None:
            outcomes.append(outcome)
            seen.set()

        lane.gateway.provider.pipeline.observers.append(observe)
        before = lane.served
        async with anyio.create_task_group() as tg:
            async def post() -> None:
                await lane.http.post("/mcp", content=json.dumps(body_of(
                    "alpha_slow", {"seconds": 600})), headers=headers_of("alpha_slow"))

            tg.start_soon(post)
            with anyio.fail_after(30):
                # The call is in the pipeline once the lane counted it (no event there:
                # polled, on a counter the lane sets before it starts the call).
                while lane.served == before:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()  # the client drops the connection
        with anyio.fail_after(30):
            await seen.wait()
        (outcome,) = outcomes
        assert outcome.status == "cancelled" and outcome.tool == "alpha_slow"
        # Under the gateway's own protocol the server says the host left (``HostGone``):
        # no task per call reads ``receive()`` for it; under another server one does.
        assert len(watchers) == (0 if guarded else 1)


async def test_observers_learn_of_a_call_after_its_answer_went_out() -> None:
    """A lane call's observers (records, stats, metrics) are not on the host's wait:
    they run once the answer is written, and before the host's next request is read."""
    async with front(True) as lane:
        answered: list[bool] = []

        def observe(outcome: CallOutcome) -> None:
            answered.append(getattr(outcome.call.front, "lane", None).finished)

        lane.gateway.provider.pipeline.observers.append(observe)
        for n in range(3):
            got = await lane.http.post("/mcp", content=json.dumps(body_of(
                "fid_plain", None)), headers=headers_of("fid_plain"))
            assert got.status_code == 200 and got.json()["result"]["content"]
            assert len(answered) == n + 1
        assert answered == [True, True, True]


async def test_the_setting_turns_the_lane_off() -> None:
    async with front(False) as full:
        assert full.lane is not None and not full.lane.enabled
        got = await full.http.post("/mcp", content=json.dumps(body_of(
            "alpha_add", {"a": 4, "b": 5})), headers=headers_of("alpha_add"))
        assert got.status_code == 200 and got.json()["result"]["structuredContent"] == {
            "result": 9}
        assert full.served == 0


async def test_a_long_call_becomes_a_stream_with_pings_as_the_sdk_makes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK commits to SSE after 15 s; the lane's deferral is shortened here, and the
    # call sleeps longer than it, so the stream and at least one ping must come first.
    monkeypatch.setattr("fast_mcp_gateway.http.lane.SSE_DEFER", 0.05)
    async with front(True) as lane:
        got = await lane.http.post("/mcp", content=json.dumps(body_of(
            "alpha_slow", {"seconds": 0.3})), headers=headers_of("alpha_slow"))
        assert got.status_code == 200
        assert got.headers["content-type"] == "text/event-stream"
        assert got.content.startswith(b": ping\r\n\r\n")
        (event,) = canonical(got.content)
        assert json.loads(event)["result"]["content"][0]["text"] == "slept"
        assert lane.served == 1
