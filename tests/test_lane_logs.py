"""What an upstream writes just before its answer, on every lane as on the full path.

``tests/servers/raw_stdio.py``'s ``told`` writes a progress (for the call's token), a
log and its answer in one write.  The full path relays them in that order, the log
and the progress on the call's own stream (the stdio host's lines; the POST's SSE
stream over HTTP).  The stdio tap took the answer at once and handed the log to the
SDK session's reader, which relayed it a turn later: after the answer on the stdio
lane (handshake-era host), and, the call over, to no host at all (a 2026-07-28 host on
stdio, both HTTP lanes).  ``nulls`` answers with the upstream's own nulls in its
``structuredContent``, content items and ``_meta``: relayed as they came on every path
and era (the full path's SDK dumped a 2026-07-28 host's result ``exclude_none``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.logging import LogMessage
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from fast_mcp_gateway.front.wire import without_schema_nulls
from tests.fixtures import PY, SERVERS, WITHIN, make_gateway, serve_http
from tests.test_http_lane import MODERN, body_of, headers_of
from tests.test_lane import both_paths, raw_host
from tests.test_lane_non_finite import session_of
from tests.test_session_lane import headers

pytestmark = pytest.mark.anyio

LOG = {"level": "warning", "logger": "raw", "data": "just before"}
# What every path relays of ``nulls``' answer, for either era: the upstream's data
# (``structuredContent``, ``_meta`` members) as it came; the nulls of members MCP's
# schema types (no null allowed there) left out, as the SDK's models read them.
RELAYED = {
    "content": [{"type": "text", "text": "n"}, {"type": "resource_link", "name": "one"},
                {"type": "text", "text": "k", "_meta": {"k": None}},
                {"type": "resource", "resource": {"text": "t", "_meta": {"q": None}}}],
    "structuredContent": {"a": None, "b": [None, 1], "c": {"d": None}},
    "_meta": {"m": None}, "isError": False}


def relayed(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` as ``RELAYED`` reads it (no 2026-07-28 envelope, no exposed URIs)."""
    result = {k: v for k, v in result.items() if k != "resultType"}
    result["_meta"] = {k: v for k, v in result["_meta"].items()
                       if k != "io.modelcontextprotocol/serverInfo"}
    for item in result["content"]:
        item.pop("uri", None)
        if isinstance(item.get("resource"), dict):
            item["resource"].pop("uri", None)
    return result


def shape(message: dict[str, Any]) -> str:
    """One message of a call's stream, as compared (a URI in its exposed form left out)."""
    message = json.loads(json.dumps(message))
    for item in (message.get("result") or {}).get("content", []):
        item.pop("uri", None)
        if isinstance(item.get("resource"), dict):
            item["resource"].pop("uri", None)
    return json.dumps(message, sort_keys=True)


def assert_ints(line: str) -> None:
    """``told``'s progress as the upstream wrote it (``"progress": 1, "total": 1``): the
    numbers' JSON type kept (they reached hosts as 1.0 on every path: fidelity15)."""
    params = json.loads(line)["params"]
    assert (type(params["progress"]), type(params["total"])) == (int, int), line


def test_schema_nulls_are_left_out_and_the_upstreams_data_kept() -> None:
    plain = {"content": [{"type": "text", "text": "x"}], "isError": False}
    assert without_schema_nulls(plain) is plain  # the common answer: not copied
    given = {"content": [{"type": "text", "text": "x", "annotations": None},
                         {"type": "resource", "resource": {"uri": "a://b", "mimeType": None,
                                                           "_meta": {"q": None}}}],
             "structuredContent": {"a": None}, "_meta": {"m": None}, "isError": None}
    assert without_schema_nulls(given) == {
        "content": [{"type": "text", "text": "x"},
                    {"type": "resource", "resource": {"uri": "a://b", "_meta": {"q": None}}}],
        "structuredContent": {"a": None}, "_meta": {"m": None}}
    assert given["content"][0] == {"type": "text", "text": "x", "annotations": None}


def config(tmp_path: Path) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"servers": {"raw": {"command": PY, "args": [
        str(SERVERS / "raw_stdio.py")]}}}))
    return path


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_the_stdio_lane_relays_what_came_before_the_answer_first(
        tmp_path: Path, era: str) -> None:
    path = config(tmp_path)

    async def stream(lane: bool, env: dict[str, str]) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        async with raw_host(path, era, lane=lane, env=env,
                            listed=("raw_told", "raw_nulls")) as host:
            level = {"io.modelcontextprotocol/logLevel": "debug"} if era == "modern" else {}
            if era == "legacy":
                await host.request("logging/setLevel", {"level": "debug"})
            start = len(host.lines)
            await host.request("tools/call", {"name": "raw_told", "arguments": {}},
                               meta={"progressToken": "t", **level}, request_id=50)
            # Everything written up to the answer, in order (request() returned with it).
            seen["told"] = [shape(json.loads(line)) for line in host.lines[start:]]
            start = len(host.lines)
            await host.request("tools/call", {"name": "raw_nulls", "arguments": {}},
                               request_id=51)
            seen["nulls"] = [shape(json.loads(line)) for line in host.lines[start:]]
            whoami = await host.call("raw_whoami")
            seen["lane"] = [str(whoami["content"][0]["text"].startswith("gw-"))]
        return seen

    got = await both_paths(tmp_path, stream)
    assert (got[True].pop("lane"), got[False].pop("lane")) == (["True"], ["False"])
    assert [json.loads(m).get("method", "answer") for m in got[True]["told"]] == [
        "notifications/progress", "notifications/message", "answer"], got[True]["told"]
    assert got[True] == got[False]
    assert_ints(got[True]["told"][0])
    assert relayed(json.loads(got[True]["nulls"][0])["result"]) == RELAYED


async def test_both_http_lanes_relay_what_came_before_the_answer_on_its_stream() -> None:
    """The 2026-07-28 lane's POST and the session lane's, each against the full path
    of another gateway: the progress and the log on the POST's SSE stream, then the
    answer; the upstream's nulls as it wrote them."""
    seen: dict[bool, dict[str, list[str]]] = {}
    for lane in (True, False):
        gateway = make_gateway({"raw": {"command": PY, "args": [
            str(SERVERS / "raw_stdio.py")]}}, http_express_lane=lane, call_timeout=60)
        async with serve_http(gateway.http_app("http")) as base, \
                httpx2.AsyncClient(base_url=base, timeout=60) as http:
            found = seen[lane] = {}
            session = await session_of(http)
            for name in ("raw_told", "raw_nulls"):
                modern = await http.post("/mcp", content=json.dumps(body_of(
                    name, {}, {"progressToken": "t",
                               "io.modelcontextprotocol/logLevel": "debug"},
                    request_id=10)), headers=headers_of(name, None))
                found[f"{MODERN} {name}"] = [str(modern.status_code), *events(modern)]
                legacy = await http.post("/mcp", headers=headers(None, session), json={
                    "jsonrpc": "2.0", "id": 20, "method": "tools/call", "params": {
                        "name": name, "arguments": {}, "_meta": {"progressToken": "t"}}})
                found[f"legacy {name}"] = [str(legacy.status_code), *events(legacy)]
            # Which path answered: the lanes send upstream ids "gw-N", the SDK integers.
            modern = await http.post("/mcp", content=json.dumps(body_of("raw_whoami", {})),
                                     headers=headers_of("raw_whoami", None))
            legacy = await http.post("/mcp", headers=headers(None, session), json={
                "jsonrpc": "2.0", "id": 30, "method": "tools/call",
                "params": {"name": "raw_whoami", "arguments": {}}})
            found["lanes"] = [str("gw-" in m) for m in [*events(modern), *events(legacy)]]
    assert seen[True].pop("lanes") == ["True", "True"]
    assert seen[False].pop("lanes") == ["False", "False"]
    for key in (f"{MODERN} raw_told", "legacy raw_told"):
        kinds = [json.loads(m).get("method", "answer") for m in seen[True][key][1:]]
        assert kinds == ["notifications/progress", "notifications/message", "answer"], key
    for key, want in seen[False].items():
        assert seen[True][key] == want, key
    for key in (f"{MODERN} raw_told", "legacy raw_told"):
        assert_ints(seen[True][key][1])
    for era in (MODERN, "legacy"):
        assert relayed(json.loads(seen[True][f"{era} raw_nulls"][-1])["result"]) == RELAYED


def events(response: httpx2.Response) -> list[str]:
    """Each JSON-RPC message of a JSON or SSE answer, in order."""
    if response.headers["content-type"].startswith("application/json"):
        return [shape(json.loads(response.content))]
    return [shape(json.loads(line[6:])) for line in response.content.split(b"\r\n")
            if line.startswith(b"data: ")]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_fastmcp_client_over_http_hears_the_log_before_the_result(mode: str) -> None:
    """A FastMCP client of either era on the HTTP lanes (``auto``: the 2026-07-28 lane,
    ``legacy``: the session lane): the log and progress the upstream wrote before its
    answer reach its handlers; the nulls of ``nulls``' answer as the upstream wrote them."""
    gateway = make_gateway({"raw": {"command": PY, "args": [
        str(SERVERS / "raw_stdio.py")]}}, call_timeout=60)
    logs: list[LogMessage] = []
    steps: list[float] = []

    async def on_log(message: LogMessage) -> None:
        logs.append(message)

    async def on_progress(progress: float, total: float | None, text: str | None) -> None:
        steps.append(progress)

    async with serve_http(gateway.http_app("http")) as base, \
            Client(StreamableHttpTransport(f"{base}/mcp"), mode=mode, log_handler=on_log,
                   progress_handler=on_progress) as client:
        if mode == "legacy":
            await client.set_logging_level("debug")
        whoami = await client.call_tool("raw_whoami", {})
        assert str(whoami.content[0].text).startswith("gw-")  # type: ignore[union-attr]
        await client.call_tool("raw_told", {})
        # Each handler runs as a task the client's reader starts as it reads the line:
        # one read before the answer has run when the call returns.
        assert [m.data for m in logs] == ["just before"]
        assert steps == [1.0]
        nulls = await client.call_tool("raw_nulls", {})
        assert nulls.structured_content == RELAYED["structuredContent"]
        assert nulls.meta is not None and nulls.meta.get("m", "absent") is None
        assert nulls.data.a is None  # type: ignore[union-attr]  # "a" is there, null


async def test_a_fastmcp_client_on_stdio_hears_the_log_before_the_result(
        tmp_path: Path) -> None:
    """The same for a 2026-07-28 FastMCP client on the stdio lane (it never heard the
    log).  A handshake-era one heard it after the answer, which its handlers cannot
    tell from before: the raw host above reads the order of the lines."""
    mode = "auto"
    logs: list[str] = []

    async def on_log(message: LogMessage) -> None:
        logs.append(str(message.data))

    transport = StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config",
                                    str(config(tmp_path))], keep_alive=False,
                               env={**os.environ, "MCP_GATEWAY_EXPRESS_LANE": "true",
                                    "MCP_GATEWAY_DB": str(tmp_path / "gateway.db")})
    async with Client(transport, mode=mode, log_handler=on_log) as client:
        await until_listed(client)
        whoami = await client.call_tool("raw_whoami", {})
        assert str(whoami.content[0].text).startswith("gw-")  # type: ignore[union-attr]
        await client.call_tool("raw_told", {})
        assert logs == ["just before"]  # its handler ran as its line was read
        nulls = await client.call_tool("raw_nulls", {})
        assert nulls.meta is not None and nulls.meta.get("m", "absent") is None


async def until_listed(client: Client[Any]) -> None:
    """Until the upstream's tools are listed (start-up connects in the background)."""
    with anyio.fail_after(WITHIN):
        while "raw_told" not in {t.name for t in await client.list_tools()}:  # noqa: ASYNC110
            await anyio.sleep(0.05)  # another process starting: nothing to wait on
