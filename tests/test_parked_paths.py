"""A parked call (a 2026-07-28 host in front of a handshake-era upstream that pushes its
questions, front/mrtr.py) whose rounds reach both paths of one gateway: the express
lane opens the full path's sealed requestState since both seal alike (_compat.RoundStates),
so a round the full path began may be continued, and ended, on the lane, and the reverse.
The parked call's outcome is what its first round's encoding made of it (a typed result
on the full path, a JSON one on the lane); the last round must answer it either way.
Real HTTP on 127.0.0.1, the upstream a real stdio process (tests/servers/pusher.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from fast_mcp_gateway.http.lane import HttpLane
from tests.fixtures import make_gateway, serve_http
from tests.test_tasks import ALICE, ALICE_SHA, post

pytestmark = pytest.mark.anyio
PUSHER = Path(__file__).parent / "servers" / "pusher.py"
HOST_CAPS = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "sampling": {}}}


def _answers(asked: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for key, request in asked["inputRequests"].items():
        if request["method"] == "elicitation/create":
            answers[key] = {"action": "accept", "content": {"value": "Ada"}}
        else:
            answers[key] = {"role": "assistant", "model": "m",
                            "content": {"type": "text", "text": "sampled"}}
    return answers


def _pusher_app() -> tuple[Any, HttpLane]:
    """A gateway's HTTP app in front of the handshake-era pusher, and its express lane."""
    gateway = make_gateway(
        {"pusher": {"command": sys.executable, "args": [str(PUSHER)], "protocol": "legacy"}},
        options={"auth": {"tokens": [{"name": "alice", "sha256": ALICE_SHA,
                                      "scopes": ["tools"]}]}})
    app = gateway.http_app("http")
    lane = getattr(app.mcp_entry, "app", None)
    assert isinstance(lane, HttpLane)
    return app, lane


@pytest.mark.parametrize("first_on_lane", [False, True], ids=["full-then-lane",
                                                            "lane-then-full"])
async def test_a_parked_call_begun_on_one_path_ends_on_the_other(first_on_lane: bool) -> None:
    app, lane = _pusher_app()
    async with serve_http(app) as base, httpx2.AsyncClient(base_url=base, timeout=60) as http:
        lane.enabled = first_on_lane
        asked = (await post(http, ALICE, "tools/call", {
            "name": "pusher_interview", "arguments": {"topic": "poem"}}, HOST_CAPS))["result"]
        assert asked["resultType"] == "input_required", asked
        assert lane.served == int(first_on_lane)
        lane.enabled = not first_on_lane  # every later round on the other path
        for _ in range(3):  # the elicitation, then the sampling, then the result
            reply = await post(http, ALICE, "tools/call", {
                "name": "pusher_interview", "arguments": {"topic": "poem"},
                "requestState": asked["requestState"], "inputResponses": _answers(asked)},
                HOST_CAPS)
            assert "result" in reply, reply
            if reply["result"].get("resultType") != "input_required":
                break
            asked = reply["result"]
        result = reply["result"]
        assert not result.get("isError"), result
        assert result["content"][0]["text"].startswith("accept:Ada|m:sampled|"), result


async def test_the_http_lane_parks_a_call_only_when_its_upstream_asks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2026-07-28 host's call of a handshake-era replica may meet a pushed question, so
    it is parked; the HTTP lane parks it lazily, as the stdio lane does (it runs in its
    request's task until the upstream asks): parked eagerly, every call cost a task, a
    token and their cancel scopes (~0.24 ms of gateway CPU, benchmarks/http_cpu.py
    --stdio).  Asked, its first round is answered early and the call goes on."""
    from fast_mcp_gateway.front.mrtr import Parking

    eager: list[str] = []
    park = Parking._park

    def counted(self: Parking, call: Any, sending: Any) -> Any:
        eager.append(call.exposed)
        return park(self, call, sending)

    monkeypatch.setattr(Parking, "_park", counted)
    app, lane = _pusher_app()
    async with serve_http(app) as base, httpx2.AsyncClient(base_url=base, timeout=60) as http:
        bumped = (await post(http, ALICE, "tools/call", {"name": "pusher_bump",
                                                         "arguments": {}}))["result"]
        assert not bumped.get("isError"), bumped
        asked = (await post(http, ALICE, "tools/call", {
            "name": "pusher_interview", "arguments": {"topic": "poem"}}, HOST_CAPS))["result"]
        assert asked["resultType"] == "input_required", asked
        while asked.get("resultType") == "input_required":
            asked = (await post(http, ALICE, "tools/call", {
                "name": "pusher_interview", "arguments": {"topic": "poem"},
                "requestState": asked["requestState"], "inputResponses": _answers(asked)},
                HOST_CAPS))["result"]
        assert asked["content"][0]["text"].startswith("accept:Ada|m:sampled|"), asked
        assert lane.served == 4 and eager == []
