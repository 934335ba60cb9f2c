"""A 2026-07-28 host's asking rounds through several gateways (``request_state_keys``).

The gateway's server seals the ``requestState`` of the asking rounds its full path
answers (FastMCP's tools: the HTTP express lane off, OpenTelemetry tracing on, a tool
with ``Mcp-Param`` headers): with a key of each process's own, a host whose next round
reached another gateway behind the same address (or this one after a restart) was
refused.  With shared keys any of them continues the round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
import pytest
from fastmcp import Context, FastMCP
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from fastmcp.tools.base import InputRequiredToolResult
from mcp.server.request_state import RequestStateSecurity
from pydantic import ValidationError

from fast_mcp_gateway import Gateway, GatewaySettings
from fast_mcp_gateway._compat import RoundStates
from fast_mcp_gateway.config.settings import settings_problem
from fast_mcp_gateway.http.lane import HttpLane
from tests.fixtures import make_gateway, memory_entry, serve_http
from tests.test_era import NAME_SCHEMA
from tests.test_tasks import ALICE, ALICE_SHA, BOB, BOB_SHA, post

pytestmark = pytest.mark.anyio

KEY = "k" * 16 + "0123456789abcdef-shared"


def asking_server() -> FastMCP[Any]:
    """A 2026-07-28 tool that asks for a name, carrying a state of its own between rounds.

    Its own seal binds no caller: run in-process, it would see the host's token (a
    context variable) on the full path and none on the express lane, where an upstream
    behind stdio or HTTP sees the gateway's connection on both."""
    mcp = FastMCP("asking", request_state_security=RequestStateSecurity(
        keys=[os.urandom(32)], bind_principal=None))

    @mcp.tool
    async def greet(ctx: Context) -> Any:
        answer = (ctx.input_responses or {}).get("name")
        if answer is None:
            return InputRequiredToolResult(types.InputRequiredResult(
                request_state="round-1", input_requests={"name": types.ElicitRequest(
                    params=types.ElicitRequestFormParams(message="Your name?",
                                                         requested_schema=NAME_SCHEMA))}))
        return f"hello {(answer.content or {}).get('name')} ({ctx.request_state})"

    return mcp


def gateways(upstream: FastMCP[Any], rings: tuple[list[str], list[str]],
             lanes: tuple[bool, bool] = (False, False),
             jwt: dict[str, Any] | None = None) -> list[Gateway]:
    """Two gateways in front of one upstream, each with its keys (``rings``), with or
    without the HTTP express lane (without it, every round is the full path's)."""
    auth: dict[str, Any] = {"tokens": [
        {"name": "alice", "sha256": ALICE_SHA, "scopes": ["tools"]},
        {"name": "bob", "sha256": BOB_SHA, "scopes": ["tools"]}]}
    if jwt is not None:
        auth["jwt"] = jwt
    return [make_gateway({"asking": memory_entry("asking", protocol="2026-07-28")},
                         {"asking": upstream}, http_express_lane=lane,
                         request_state_keys=keys, options={"auth": auth})
            for keys, lane in zip(rings, lanes, strict=True)]


LANES: dict[int, HttpLane] = {}  # id(gateway) -> its HTTP express lane, once served


@asynccontextmanager
async def served(first: Gateway, second: Gateway
                 ) -> AsyncIterator[tuple[httpx2.AsyncClient, httpx2.AsyncClient]]:
    """A client of each gateway, served over HTTP on 127.0.0.1 (its lane in ``LANES``)."""
    apps = [first.http_app("http"), second.http_app("http")]
    for gateway, app in zip((first, second), apps, strict=True):
        lane = getattr(app.mcp_entry, "app", None)
        assert isinstance(lane, HttpLane)
        LANES[id(gateway)] = lane
    async with serve_http(apps[0]) as a, serve_http(apps[1]) as b, \
            httpx2.AsyncClient(base_url=a, timeout=60) as to_a, \
            httpx2.AsyncClient(base_url=b, timeout=60) as to_b:
        yield to_a, to_b


def round_two(asked: dict[str, Any]) -> dict[str, Any]:
    """The host's next round: its answer, and the state the question carried."""
    return {"name": "asking_greet", "requestState": asked["requestState"],
            "inputResponses": {"name": {"action": "accept", "content": {"name": "Ada"}}}}


@pytest.mark.parametrize("shared", [True, False])
async def test_a_hosts_next_round_may_reach_another_gateway(shared: bool) -> None:
    first, second = gateways(asking_server(), ([KEY], [KEY]) if shared else ([], []))
    async with served(first, second) as (to_a, to_b):
        asked = (await post(to_a, ALICE, "tools/call", {"name": "asking_greet"}))["result"]
        assert asked["resultType"] == "input_required"
        # The question is the gateway's to put: its serverInfo, not the upstream's.
        assert asked["_meta"][types.SERVER_INFO_META_KEY]["name"] == "fast-mcp-gateway"
        answered = await post(to_b, ALICE, "tools/call", round_two(asked))
        if shared:
            assert answered["result"]["content"][0]["text"] == "hello Ada (round-1)"
        else:  # a key of each process's own: the other gateway cannot open it
            assert answered["error"]["message"] == "Invalid or expired requestState"
        again = await post(to_a, ALICE, "tools/call", round_two(asked))  # it sealed it
        assert again["result"]["content"][0]["text"] == "hello Ada (round-1)"


def test_the_keys_are_checked_and_never_echoed() -> None:
    short = "too-short-a-secret"
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(request_state_keys=f"{KEY},{short}")
    problem = settings_problem(caught.value)
    assert problem.startswith("MCP_GATEWAY_REQUEST_STATE_KEYS: ")
    assert "key 2 has 18 bytes; each needs at least 32" in problem
    assert short not in problem and KEY not in problem
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(request_state_keys=[KEY, KEY])
    assert "key 2 repeats an earlier key" in settings_problem(caught.value)
    settings = GatewaySettings(request_state_keys=f" {KEY} ,{KEY}-next")
    assert [k.get_secret_value() for k in settings.request_state_keys] == [KEY, KEY + "-next"]
    assert KEY not in repr(settings)


@pytest.mark.parametrize("lanes", [
    pytest.param((False, True), id="full-then-lane"),
    pytest.param((True, False), id="lane-then-full"),
    pytest.param((True, True), id="lane-then-lane"),
])
async def test_a_round_moves_between_a_full_path_and_an_express_lane(
        lanes: tuple[bool, bool]) -> None:
    """Shared keys, one gateway with the HTTP express lane and one without: a round the
    full path began (sealed) is left by the other's lane to its full path, which opens
    it; a round a lane relayed (the upstream's own state) goes on wherever it lands."""
    first, second = gateways(asking_server(), ([KEY], [KEY]), lanes)
    async with served(first, second) as (to_a, to_b):
        asked = (await post(to_a, ALICE, "tools/call", {"name": "asking_greet"}))["result"]
        assert asked["resultType"] == "input_required"
        assert LANES[id(first)].served == int(lanes[0])  # the round's path, as meant
        # Sealed by the gateway whichever path answered (the upstream's own state inside).
        opened = RoundStates.of(second.server).open(
            {"name": "asking_greet", **round_two(asked)}, '["alice",null,null]')
        assert opened.startswith("v1.")  # the upstream's own sealed state
        answered = await post(to_b, ALICE, "tools/call", round_two(asked))
        assert answered.get("result", answered)["content"][0]["text"] == "hello Ada (round-1)"
        assert LANES[id(second)].served == int(lanes[1])


@pytest.mark.parametrize("lanes", [
    pytest.param((True, False), id="lane-then-full"),
    pytest.param((False, True), id="full-then-lane"),
])
async def test_a_jwt_callers_round_is_bound_alike_on_both_paths(
        lanes: tuple[bool, bool]) -> None:
    """A JWT caller's binding (client id, issuer, subject) is the same on the lane as on
    the full path: carol goes on where she began; dave, whose tokens name the same
    gateway principal (the ``email`` claim) but another subject, is refused."""
    pair = RSAKeyPair.generate()
    issuer = "https://idp.test/"

    def token(subject: str) -> str:
        return pair.create_token(subject=subject, issuer=issuer, audience="mcp-gateway",
                                 scopes=["tools"], additional_claims={"email": "c@idp.test"})

    carol, dave = token("carol"), token("dave")
    first, second = gateways(asking_server(), ([KEY], [KEY]), lanes, jwt={
        "public_key": pair.public_key, "issuer": issuer, "audience": "mcp-gateway",
        "subject_claim": "email"})
    async with served(first, second) as (to_a, to_b):
        asked = (await post(to_a, carol, "tools/call", {"name": "asking_greet"}))["result"]
        assert asked["resultType"] == "input_required"
        refused = await post(to_b, dave, "tools/call", round_two(asked))
        assert refused["error"]["message"] == "Invalid or expired requestState"
        answered = await post(to_b, carol, "tools/call", round_two(asked))
        assert answered["result"]["content"][0]["text"] == "hello Ada (round-1)"
        assert (LANES[id(first)].served, LANES[id(second)].served) == tuple(map(int, lanes))


async def test_a_tampered_forged_or_borrowed_state_is_refused_on_both_paths() -> None:
    """Whichever path began a round, neither path takes a state the gateway did not seal
    for this caller and call: altered, forged, the upstream's own state unsealed (what
    the lanes once handed out), another caller's (bob), another call's arguments.  The
    lane leaves each to the full path, which refuses it in the SDK's words; the round
    itself still goes on."""
    first, second = gateways(asking_server(), ([KEY], [KEY]), (True, False))
    async with served(first, second) as (to_a, to_b):
        for begin in (to_a, to_b):
            asked = (await post(begin, ALICE, "tools/call", {"name": "asking_greet"}))["result"]
            state = asked["requestState"]
            middle = len(state) // 2
            altered = state[:middle] + ("A" if state[middle] != "A" else "B") + state[middle + 1:]
            inner = RoundStates.of(first.server).open(
                {"name": "asking_greet", **round_two(asked)}, '["alice",null,null]')
            forged = RoundStates.ephemeral("fast-mcp-gateway").seal(
                {"name": "asking_greet"}, '["alice",null,null]', inner)
            attempts = [(ALICE, {**round_two(asked), "requestState": bad})
                        for bad in (altered, forged, inner, "v1.", 7)]
            attempts += [(BOB, round_two(asked)),
                         (ALICE, {**round_two(asked), "arguments": {"extra": 1}})]
            for to in (to_a, to_b):
                for token, params in attempts:
                    before = LANES[id(first)].served
                    refused = await post(to, token, "tools/call", params)
                    assert refused.get("error") == {
                        "code": -32602, "message": "Invalid or expired requestState",
                        "data": {"reason": "invalid_request_state"}}, (params, refused)
                    assert LANES[id(first)].served == before  # the full path's to refuse
            for to in (to_a, to_b):
                answered = await post(to, ALICE, "tools/call", round_two(asked))
                assert answered["result"]["content"][0]["text"] == "hello Ada (round-1)"


def test_the_lanes_seal_is_the_full_paths_boundary() -> None:
    """``_compat.RoundStates`` drives the SDK boundary FastMCP installed (its private
    ``_seal``/``_unseal``, ``_security``, ``_audience``): what it seals carries the
    server's audience and opens only for the same tool, arguments and caller."""
    from mcp.shared.exceptions import MCPError

    server = FastMCP("gw", request_state_security=RequestStateSecurity(keys=[KEY]))
    states = RoundStates.of(server)
    asked = {"name": "t", "arguments": {"a": 1}}
    sealed = states.seal(asked, '["alice",null,null]', "inner")
    claims = json.loads(RequestStateSecurity(keys=[KEY]).codec.unseal(sealed))
    assert (claims["aud"], claims["m"], claims["t"], claims["s"]) == (
        "gw", "tools/call", "t", "inner")
    assert states.open({**asked, "requestState": sealed}, '["alice",null,null]') == "inner"
    for params, binding in (({**asked, "requestState": sealed}, '["bob",null,null]'),
                            ({**asked, "requestState": sealed}, None),
                            ({**asked, "arguments": {"a": 2}, "requestState": sealed},
                             '["alice",null,null]'),
                            ({**asked, "requestState": sealed[:-1]}, '["alice",null,null]')):
        with pytest.raises(MCPError, match="Invalid or expired requestState"):
            states.open(params, binding)
    with pytest.raises(MCPError, match="Invalid or expired requestState"):  # another server
        RoundStates.of(FastMCP("other", request_state_security=RequestStateSecurity(
            keys=[KEY]))).open({**asked, "requestState": sealed}, '["alice",null,null]')


OLD, NEW = KEY, "n" * 16 + "0123456789abcdef-rotated"


@pytest.mark.parametrize("rings", [
    pytest.param(([OLD, NEW], [OLD]), id="old,new-beside-old"),
    pytest.param(([NEW, OLD], [OLD, NEW]), id="new,old-beside-old,new"),
    pytest.param(([NEW], [NEW, OLD]), id="new-beside-new,old"),
    pytest.param(([NEW, OLD], [OLD]), id="new,old-beside-old"),  # a step skipped
])
async def test_each_step_of_a_key_rotation_keeps_rounds_moving(
        rings: tuple[list[str], list[str]]) -> None:
    """Two gateways a step of a rolling key rotation apart: a round either begins goes on
    on the other (README: old,new everywhere, then new,old, then new); a step skipped
    (new,old beside old) refuses the rounds the updated one seals."""
    first, second = gateways(asking_server(), rings)
    async with served(first, second) as (to_a, to_b):
        for begin, go_on in ((to_a, to_b), (to_b, to_a)):
            asked = (await post(begin, ALICE, "tools/call", {"name": "asking_greet"}))["result"]
            answered = await post(go_on, ALICE, "tools/call", round_two(asked))
            if go_on is to_b and rings == ([NEW, OLD], [OLD]):  # sealed with NEW
                assert answered["error"]["message"] == "Invalid or expired requestState"
                continue
            assert answered.get("result", answered)["content"][0]["text"] == \
                "hello Ada (round-1)", answered


@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_bad_key_stops_the_cli_without_echoing_it(tmp_path: Any, command: str) -> None:
    """``mcp-gateway serve`` and ``check`` refuse a short key (and a JSON list that is
    not one), naming the variable, never the value."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    short = "short-secret-value"
    for value in (f"{KEY},{short}", f'["{short}"', f'["{KEY}", "{short}"]'):
        done = subprocess.run(
            [sys.executable, "-m", "fast_mcp_gateway", command, "--config", str(config),
             "--db", str(tmp_path / "gateway.db")], stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "MCP_GATEWAY_REQUEST_STATE_KEYS": value})
        assert done.returncode != 0, (value, done.stdout, done.stderr)
        out = done.stdout + done.stderr
        assert "MCP_GATEWAY_REQUEST_STATE_KEYS" in out, out
        assert short not in out and KEY not in out, out


STATE_KEY = "p" * 16 + "0123456789abcdef-upstream"


@pytest.mark.parametrize("lanes", [
    pytest.param((True, False), id="lane-then-full"),
    pytest.param((False, True), id="full-then-lane"),
    pytest.param((True, True), id="lane-then-lane"),
])
async def test_a_stdio_round_goes_on_through_another_gateway_process(
        tmp_path: Any, capfd: pytest.CaptureFixture[str], lanes: tuple[bool, bool]) -> None:
    """The stdio lane seals and opens as the full path does: a 2026-07-28 host's round
    asked through one ``mcp-gateway serve`` (lane on or off) goes on through the next one
    sharing the keys (a restarted gateway, say), whichever path each takes; a tampered
    state is refused there in the SDK's words.  The upstream (a process per gateway)
    seals its own state with a key of its own, the same in both."""
    from tests.test_lane import PY, SERVERS, raw_host

    config = tmp_path / "servers.yaml"
    config.write_text(f"servers:\n  pusher:\n    command: {json.dumps(PY)}\n"
                      f"    args: [{json.dumps(str(SERVERS / 'pusher.py'))}]\n"
                      f"    env: {{PUSHER_STATE_KEY: {json.dumps(STATE_KEY)}}}\n")
    env = {"MCP_GATEWAY_REQUEST_STATE_KEYS": KEY}
    command = [PY, "-m", "fast_mcp_gateway", "serve", "--log-level", "DEBUG", "--config"]
    call = {"name": "pusher_guard", "arguments": {}}
    capfd.readouterr()
    async with raw_host(config, "modern", lane=lanes[0], env=env, command=command,
                        listed=("pusher_guard",)) as host:
        asked = (await host.request("tools/call", call))["result"]
    assert asked["resultType"] == "input_required", asked
    assert ("express lane: tools/call pusher_guard" in capfd.readouterr().err) is lanes[0]
    answers = {key: {"action": "accept", "content": {"name": "Ada"}}
               for key in asked["inputRequests"]}
    state = asked["requestState"]
    tampered = state[:-2] + ("AA" if state[-2:] != "AA" else "BB")
    async with raw_host(config, "modern", lane=lanes[1], env=env, command=command,
                        listed=("pusher_guard",)) as host:
        refused = await host.request("tools/call", {
            **call, "requestState": tampered, "inputResponses": answers})
        assert refused.get("error", {}).get("message") == "Invalid or expired requestState"
        done = await host.request("tools/call", {
            **call, "requestState": state, "inputResponses": answers})
    assert done["result"]["content"][0]["text"] == "guard:Ada:Ada", done
    assert ("express lane: tools/call pusher_guard" in capfd.readouterr().err) is lanes[1]
