"""NaN and infinities from an upstream, on every express lane as on the full path.

Python's ``json.dumps`` writes ``NaN`` / ``Infinity`` bare, and the gateway's parsers
(Python's, pydantic's) read them as numbers; the full path's SDK models write them
``null``, and FastMCP refuses a ``structuredContent`` holding one (an ``isError``
result: "Tool result contains a non-finite float ...").  The lanes wrote Python's
``NaN``, which is no JSON: a strict host (``JSON.parse``, the TypeScript SDK) cannot
read the line.  ``tests/servers/raw_stdio.py --non-finite`` writes the tokens in a
result's ``structuredContent``, ``_meta``, an embedded resource, a progress and a log
notification and an error's ``data``; each lane's answer (and what it sends besides)
must be strict JSON and equal to the full path's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from fast_mcp_gateway.front.outcomes import CallOutcome
from fast_mcp_gateway.upstream import framing
from tests.fixtures import PY, SERVERS, make_gateway, serve_http, stdio_entry, until
from tests.test_asks_routing import http_process
from tests.test_http_lane import MODERN, body_of, headers_of
from tests.test_lane import both_paths, raw_host
from tests.test_session_lane import ERA, headers

pytestmark = pytest.mark.anyio

WHERES = ("structured", "meta", "lifted", "resource", "progress", "log", "error")
CALLS = 2 * len(WHERES) + 2  # per HTTP gateway: each where on both lanes, two whoami
REFUSED = ("Tool result contains a non-finite float (nan) at $.x; "
           "JSON cannot represent NaN or Infinity")


def no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def strict(line: bytes) -> dict[str, Any]:
    """``line`` as a strict JSON reader reads it (``JSON.parse``: no NaN, no Infinity)."""
    message: dict[str, Any] = json.loads(line, parse_constant=no_constant)
    return message


def canonical(message: dict[str, Any]) -> str:
    return json.dumps(message, sort_keys=True)


def test_finite_writes_null_and_refuses_only_structured_content() -> None:
    nan, inf = float("nan"), float("inf")
    assert framing.finite({"a": [nan, 1.5, -inf, "NaN"], "b": {"c": inf}, "d": True}) == {
        "a": [None, 1.5, None, "NaN"], "b": {"c": None}, "d": True}
    assert framing.finite({"a": [nan], "b": {"c": inf, "d": None}}, drop=True) == {
        "a": [None], "b": {"d": None}}   # a 2026-07-28 result's members: left out
    assert framing.finite_message({"jsonrpc": "2.0", "id": 1, "result": {
        "_meta": {"x": nan}, "structuredContent": {"y": 1}}})["result"]["_meta"] == {"x": None}
    with pytest.raises(framing.StructuredNotFinite):
        framing.finite_message({"jsonrpc": "2.0", "id": 1,
                                "result": {"structuredContent": {"y": [nan]}}})


def raw_config(tmp_path: Path) -> Path:
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"raw": stdio_entry("raw_stdio.py", "--non-finite")}}))
    return config


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_the_stdio_lane_writes_what_the_full_path_writes(tmp_path: Path, era: str) -> None:
    config = raw_config(tmp_path)

    async def answers(lane: bool, env: dict[str, str]) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        async with raw_host(config, era, lane=lane, env=env, listed=("raw_non_finite",)) as host:
            if era == "legacy":
                await host.request("logging/setLevel", {"level": "debug"})
            for i, where in enumerate(WHERES):
                start, request_id = len(host.lines), 100 + i
                level = {"io.modelcontextprotocol/logLevel": "debug"} if era == "modern" else {}
                await host.request("tools/call", {
                    "name": "raw_non_finite", "arguments": {"where": where}},
                    meta={"progressToken": f"t{i}", **level}, request_id=request_id)
                lines = [strict(line) for line in host.lines[start:]]
                seen[where] = sorted(canonical(m) for m in lines
                                     if m.get("id") == request_id or m.get("method") in (
                                         "notifications/progress", "notifications/message"))
            whoami = await host.call("raw_whoami")  # the lanes send upstream ids "gw-N"
            seen["lane"] = [str(whoami["content"][0]["text"].startswith("gw-"))]
        return seen

    got = await both_paths(tmp_path, answers)
    assert (got[True].pop("lane"), got[False].pop("lane")) == (["True"], ["False"])
    assert got[True] == got[False]
    assert REFUSED in got[True]["structured"][0], got[True]["structured"]
    assert '"score"' not in got[True]["meta"][0] if era == "modern" else \
        '"score": null' in got[True]["meta"][0]   # 2026: left out, as exclude_none does
    assert any('"progress": null' in m for m in got[True]["progress"]), got[True]["progress"]


async def test_a_2026_upstreams_question_reaches_the_host_as_on_the_full_path(
        tmp_path: Path) -> None:
    """An ``input_required`` whose ``elicitation/create`` schema's default is NaN, put by
    the stdio lane's asks bridge to a handshake-era host (the full path's SDK session
    writes it null)."""
    port_file = tmp_path / "port"
    async with http_process(port_file, SERVERS / "non_finite_http.py", port_file) as url:
        config = tmp_path / "servers.yaml"
        config.write_text(json.dumps({"servers": {"raw": {"url": url,
                                                          "protocol": MODERN}}}))

        async def asked(lane: bool, env: dict[str, str]) -> list[str]:
            async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
                return {"action": "accept", "content": {"n": 1}}

            async with raw_host(config, "legacy", lane=lane, env=env,
                                listed=("raw_non_finite",), capabilities={"elicitation": {}},
                                on_request=answer) as host:
                start = len(host.lines)
                result = await host.call("raw_non_finite", {"where": "ask"})
                return [canonical(strict(line)) for line in host.lines[start:]
                        if b'"elicitation/create"' in line] + [canonical(result)]

        got = await both_paths(tmp_path, asked)
    assert got[True] == got[False]
    assert '"default": null' in got[True][0], got[True]


@contextlib.asynccontextmanager
async def http_front(lane: bool, outcomes: list[CallOutcome],
                     entry: dict[str, Any] | None = None) -> AsyncIterator[httpx2.AsyncClient]:
    gateway = make_gateway({"raw": entry or {"command": PY, "args": [
        str(SERVERS / "raw_stdio.py"), "--non-finite"]}}, http_express_lane=lane,
        call_timeout=60)
    gateway.provider.pipeline.observers.append(outcomes.append)
    async with serve_http(gateway.http_app("http")) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        yield http


def messages(response: httpx2.Response) -> list[str]:
    """Each JSON-RPC message of a JSON or SSE answer, strictly read, canonically."""
    if response.headers["content-type"].startswith("application/json"):
        return [canonical(strict(response.content))]
    return [canonical(strict(line[6:])) for line in response.content.split(b"\r\n")
            if line.startswith(b"data: ")]


async def session_of(http: httpx2.AsyncClient) -> str:
    got = await http.post("/mcp", headers=headers(None), json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": ERA, "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}})
    session = got.headers["mcp-session-id"]
    done = await http.post("/mcp", headers=headers(None, session),
                           json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202
    level = await http.post("/mcp", headers=headers(None, session), json={
        "jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "debug"}})
    assert level.status_code == 200
    return session


async def test_both_http_lanes_write_what_the_full_path_writes() -> None:
    """The 2026-07-28 lane (sessionless POSTs) and the session lane (a handshake-era
    session's POSTs), each against the full path of another gateway."""
    seen: dict[bool, dict[str, list[str]]] = {}
    recorded: dict[bool, list[tuple[str, str | None]]] = {}
    for lane in (True, False):
        outcomes: list[CallOutcome] = []
        async with http_front(lane, outcomes) as http:
            found = seen[lane] = {}
            session = await session_of(http)
            for i, where in enumerate(WHERES):
                modern = await http.post("/mcp", content=json.dumps(body_of(
                    "raw_non_finite", {"where": where}, {
                        "progressToken": f"t{i}", "io.modelcontextprotocol/logLevel": "debug"},
                    request_id=10 + i)), headers=headers_of("raw_non_finite", None))
                found[f"{MODERN} {where}"] = [str(modern.status_code), *messages(modern)]
                legacy = await http.post("/mcp", headers=headers(None, session), json={
                    "jsonrpc": "2.0", "id": 20 + i, "method": "tools/call", "params": {
                        "name": "raw_non_finite", "arguments": {"where": where},
                        "_meta": {"progressToken": f"t{i}"}}})
                found[f"{ERA} {where}"] = [str(legacy.status_code), *messages(legacy)]
            # Which path answered: the lanes send upstream ids "gw-N", the SDK integers.
            modern = await http.post("/mcp", content=json.dumps(body_of("raw_whoami", {})),
                                     headers=headers_of("raw_whoami", None))
            legacy = await http.post("/mcp", headers=headers(None, session), json={
                "jsonrpc": "2.0", "id": 30, "method": "tools/call",
                "params": {"name": "raw_whoami", "arguments": {}}})
            found["lanes"] = [str("gw-" in m) for m in [*messages(modern), *messages(legacy)]]
            # Each call recorded alike (the full path's refusal went unrecorded: FastMCP's
            # ToolError came out of the pipeline's last stage, past its observers).
            await until(lambda seen=outcomes: len(seen) == CALLS)
            recorded[lane] = sorted((o.status, o.error) for o in outcomes)
    assert recorded[True] == recorded[False]
    assert ("error", REFUSED) in recorded[True]
    assert seen[True].pop("lanes") == ["True", "True"]
    assert seen[False].pop("lanes") == ["False", "False"]
    for key, want in seen[False].items():
        assert seen[True][key] == want, key
    assert REFUSED in seen[True][f"{MODERN} structured"][1]
    assert REFUSED in seen[True][f"{ERA} structured"][1]


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_an_http_upstreams_tokens_are_answered_as_on_the_full_path(
        tmp_path: Path, era: str) -> None:
    """The same through ``HttpTap`` (a 2026-07-28 session, or a handshake-era one)."""
    port_file = tmp_path / "port"
    async with http_process(port_file, SERVERS / "non_finite_http.py", port_file) as url:
        seen: dict[bool, list[list[str]]] = {}
        for lane in (True, False):
            outcomes: list[CallOutcome] = []
            async with http_front(lane, outcomes, {"url": url, "protocol": era}) as http:
                found = seen[lane] = []
                session = await session_of(http)
                for i, where in enumerate(("structured", "meta", "resource", "progress")):
                    modern = await http.post("/mcp", content=json.dumps(body_of(
                        "raw_non_finite", {"where": where}, {"progressToken": f"t{i}"},
                        request_id=10 + i)), headers=headers_of("raw_non_finite", None))
                    legacy = await http.post("/mcp", headers=headers(None, session), json={
                        "jsonrpc": "2.0", "id": 20 + i, "method": "tools/call", "params": {
                            "name": "raw_non_finite", "arguments": {"where": where},
                            "_meta": {"progressToken": f"t{i}"}}})
                    found.append([str(modern.status_code), *messages(modern),
                                  str(legacy.status_code), *messages(legacy)])
                await until(lambda seen=outcomes: len(seen) == 8)
                found.append(sorted(f"{o.status} {o.error}" for o in outcomes))
    assert seen[True] == seen[False]
    assert REFUSED in seen[True][0][1] and REFUSED in seen[True][0][3]
