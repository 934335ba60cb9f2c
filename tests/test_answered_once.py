"""A notification POST whose session a DELETE ends between the SDK's 202 and its
hand-over of the message (http/answered.py): one answer, and nothing escapes, so the
server keeps the host's connection (the soak run saw 72-84 of 300 connections broken)."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import httpx2
import pytest

from fast_mcp_gateway.http.answered import _ANSWERED, _AnsweredAlready
from tests.fixtures import alpha_server, make_gateway, memory_entry

HEADERS = {"accept": "application/json, text/event-stream",
           "content-type": "application/json"}
VERSION = "2025-11-25"


def scope_of(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8765),
            "headers": [(k.encode(), v.encode())
                        for k, v in {"host": "127.0.0.1:8765", **headers}.items()]}


async def cancelled_then_ended(app: Any, http: httpx2.AsyncClient, session: dict[str, str]
                               ) -> tuple[list[dict[str, Any]], list[int]]:
    """POST a cancellation on ``session`` to ``app`` whose host DELETEs the session as
    soon as the 202's body is sent: what it was sent, and the DELETE's status."""
    body = json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": 7}}).encode()
    sent: list[dict[str, Any]] = []
    ended: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not ended:
            # The host's DELETE lands between the 202 and the hand-over.
            ended.append((await http.delete("/mcp", headers=session)).status_code)

    await app(scope_of("/mcp", session), receive, send)  # nothing escapes
    return sent, ended


@pytest.mark.anyio
async def test_a_notification_whose_session_ends_under_it_gets_one_answer(
        caplog: pytest.LogCaptureFixture) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    app = gateway.http_app("http")
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8765",
            timeout=30) as http:
        for _ in range(3):  # each a session of its own, ended under its notification
            opened = await http.post("/mcp", headers=HEADERS, json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": VERSION, "capabilities": {},
                    "clientInfo": {"name": "leaving", "version": "1"}}})
            assert opened.status_code == 200, opened.text
            session = {**HEADERS, "mcp-session-id": opened.headers["mcp-session-id"],
                       "mcp-protocol-version": VERSION}
            ready = await http.post("/mcp", headers=session, json={
                "jsonrpc": "2.0", "method": "notifications/initialized"})
            assert ready.status_code == 202
            sent, ended = await cancelled_then_ended(app, http, session)
            assert ended == [200]
            assert [(m["type"], m.get("status")) for m in sent] == [
                ("http.response.start", 202), ("http.response.body", None)]
    # The SDK's ERROR with its traceback for a stream closed after the answer is dropped.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_the_sdks_other_post_errors_are_still_logged() -> None:
    """The filter drops only a closed stream met after the answer: the same record
    with any other error, or before an answer, is the SDK's to log."""
    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord("mcp.server.streamable_http", logging.ERROR, __file__, 1,
                                 "Error handling POST request", None,
                                 (type(error), error, None))

    kept = _AnsweredAlready()
    assert kept.filter(record(anyio.ClosedResourceError()))  # no answer sent yet
    token = _ANSWERED.set(True)
    try:
        assert not kept.filter(record(anyio.ClosedResourceError()))
        assert kept.filter(record(ValueError("a bug")))
    finally:
        _ANSWERED.reset(token)
