"""Over stateful streamable HTTP, a request under an id still in flight in its MCP
session is answered -32600 and never runs (``http/request_ids.py``).

The SDK keys each POST's answer stream by the request's id: a second POST under id 5
took the first's stream, got the first request's answer, and the first POST got none.
A real gateway on 127.0.0.1 (uvicorn) and a real upstream (``tests/servers/ticker.py``:
``work`` answers once the test writes ``finish``; ``hang`` never does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest

from tests.fixtures import WITHIN, make_gateway, serve_http, stdio_entry, until
from tests.test_progress_deadline import events

pytestmark = pytest.mark.anyio

ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def open_session(http: httpx2.AsyncClient) -> dict[str, str]:
    """A handshake-era (stateful) session; the headers its requests carry."""
    opened = await http.post("/mcp", headers=ACCEPT, content=json.dumps({
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}))
    assert opened.status_code == 200, opened.text
    headers = {**ACCEPT, "mcp-session-id": opened.headers["mcp-session-id"],
               "mcp-protocol-version": "2025-11-25"}
    await http.post("/mcp", headers=headers, content=json.dumps(
        {"jsonrpc": "2.0", "method": "notifications/initialized"}))
    return headers


def call(request_id: Any, name: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                       "params": {"name": name, "arguments": {}}})


async def answer_of(http: httpx2.AsyncClient, headers: dict[str, str], body: str
                    ) -> tuple[int, dict[str, Any]]:
    """The POST's status and its JSON-RPC answer (read off the SSE stream, or the body)."""
    async with http.stream("POST", "/mcp", headers=headers, content=body) as response:
        if not response.headers["content-type"].startswith("text/event-stream"):
            return response.status_code, json.loads(await response.aread())
        async for line in response.aiter_lines():
            if line.startswith("data: {") and "method" not in (message := json.loads(line[6:])):
                return response.status_code, message
    raise AssertionError("the stream ended with no answer")


TOKEN = "mgw_ids-ops-7b1e4c9a2f"
AUTH = {"auth": {"tokens": [{"name": "ops", "token": TOKEN, "scopes": ["tools"]}]}}


@pytest.mark.parametrize("auth", [False, True], ids=["no auth", "auth"])
async def test_a_duplicate_id_in_flight_in_a_session_is_refused_and_never_runs(
        tmp_path: Path, auth: bool) -> None:
    gateway = make_gateway({"t": stdio_entry("ticker.py", str(tmp_path))},
                           options=AUTH if auth else None)
    answers: dict[str, tuple[int, dict[str, Any]]] = {}
    async with serve_http(gateway.http_app("http")) as base, httpx2.AsyncClient(
            base_url=base, timeout=WITHIN,
            headers={"authorization": f"Bearer {TOKEN}"} if auth else None) as http:
        one, other = await open_session(http), await open_session(http)

        async def post(tag: str, headers: dict[str, str], body: str) -> None:
            answers[tag] = await answer_of(http, headers, body)

        with anyio.fail_after(WITHIN):
            async with anyio.create_task_group() as tg:
                tg.start_soon(post, "first", one, call(5, "t_work"))
                await until(lambda: "started" in events(tmp_path))
                for request_id in (5, "5"):  # "5": the same id as the SDK keys it
                    status, refused = await answer_of(http, one, call(request_id, "t_hang"))
                    assert status == 400
                    assert refused == {"jsonrpc": "2.0", "id": request_id, "error": {
                        "code": types.INVALID_REQUEST, "message":
                        f"Invalid request: id {json.dumps(request_id)} is already used by a "
                        "request of this session still in flight; each request needs an id "
                        "of its own (MCP: a request id MUST NOT be reused within a session). "
                        "Send it again under a new id"}}, refused
                # Another session's ids are its own.
                tg.start_soon(post, "other", other, call(5, "t_work"))
                await until(lambda: events(tmp_path).count("started") == 2)
                (tmp_path / "finish").touch()
        for tag in ("first", "other"):
            status, answered = answers[tag]
            assert status == 200 and answered["id"] == 5, answered
            assert answered["result"]["content"][0]["text"] == "finished after 0 ticks"
        assert "hang started" not in events(tmp_path)  # the duplicates never ran
        # Answered, the id is free again.
        status, again = await answer_of(http, one, json.dumps(
            {"jsonrpc": "2.0", "id": 5, "method": "tools/list"}))
        assert status == 200 and "result" in again, again


async def test_another_credential_naming_a_session_sees_none_of_its_ids_in_flight(
        tmp_path: Path) -> None:
    """The ids in flight were held per session alone, ahead of the session's owner
    check: another token's POST naming the session under an id in flight there got the
    duplicate-id 400 (telling it the session is live and which ids it runs, where a
    session it does not hold is a 404), and held that id from the owner meanwhile."""
    bob = "mgw_ids-bob-5d2a7c1e9b"
    gateway = make_gateway({"t": stdio_entry("ticker.py", str(tmp_path))}, options={
        "auth": {"tokens": [*AUTH["auth"]["tokens"],
                            {"name": "bob", "token": bob, "scopes": ["tools"]}]}})
    answers: dict[str, tuple[int, dict[str, Any]]] = {}
    async with serve_http(gateway.http_app("http")) as base, httpx2.AsyncClient(
            base_url=base, timeout=WITHIN,
            headers={"authorization": f"Bearer {TOKEN}"}) as http:
        mine = await open_session(http)
        theirs = {**mine, "authorization": f"Bearer {bob}"}

        async def post(tag: str, headers: dict[str, str], body: str) -> None:
            answers[tag] = await answer_of(http, headers, body)

        with anyio.fail_after(WITHIN):
            async with anyio.create_task_group() as tg:
                tg.start_soon(post, "first", mine, call(5, "t_work"))
                await until(lambda: "started" in events(tmp_path))
                status, refused = await answer_of(http, theirs, call(5, "t_hang"))
                assert status == 404, refused
                assert refused["error"]["message"].startswith("Session not found"), refused
                (tmp_path / "finish").touch()
        status, answered = answers["first"]
        assert status == 200 and answered["id"] == 5, answered
        assert "hang started" not in events(tmp_path)


async def test_a_post_without_a_valid_token_is_refused_before_its_body_is_read(
        tmp_path: Path) -> None:
    """``InFlightIds`` wraps the route outside FastMCP's auth guard: it read (up to the
    body limit) and parsed the body of any POST naming a session, a credential or not,
    before the guard's 401 -- which never reads it.  A body that never completes shows
    it: the 401 came only once the body was whole."""
    gateway = make_gateway({}, options=AUTH, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base:
        host, port = base.removeprefix("http://").split(":")
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send((
                f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/json\r\nAccept: application/json, "
                "text/event-stream\r\nMcp-Session-Id: 0123456789abcdef\r\n"
                "Authorization: Bearer mgw_not-a-token\r\nContent-Length: 1000\r\n\r\n"
                '{"jsonrpc": "2.0", "id": 1, ').encode())  # and no more
            head = b""
            with anyio.fail_after(WITHIN):
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
    assert head.startswith(b"HTTP/1.1 401"), head


async def test_json_nested_past_pythons_parser_gets_the_sdks_parse_error(
        tmp_path: Path) -> None:
    """A body nested deeper than Python's parser goes (~1,000 levels) raised out of the
    id check: a bare 500 and a traceback.  The SDK's parse error instead."""
    gateway = make_gateway({"t": stdio_entry("ticker.py", str(tmp_path))})
    async with serve_http(gateway.http_app("http")) as base, httpx2.AsyncClient(
            base_url=base, timeout=WITHIN) as http:
        headers = await open_session(http)
        deep = "[" * 5000 + "]" * 5000
        got = await http.post("/mcp", headers=headers, content=(
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t_work",'
            f'"arguments":{{"x":{deep}}}}}}}'))
        assert got.status_code == 400, got.text
        assert got.json()["error"]["code"] == types.PARSE_ERROR
