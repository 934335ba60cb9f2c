"""Which request a server's refusal of a forgotten session refused, and what follows
(``upstream/asking.py``, ``http_session_end.SessionEnd.refused``, ``requests.py``,
``holding.settle``).

The upstream is a hand-written handshake-era server on a real port speaking as the
TypeScript SDK's example servers do: a request for a session it does not know is
answered 400 "Bad Request: No valid session ID provided".  Its tools say what it ran:
``boom`` runs and fails with a bare 500 (no JSON-RPC error: the SDK's client says
"Server returned an error response", the same words as its stand-in for the 400);
``gone`` forgets the session the first time (that request is refused, never run);
``hang`` forgets it the first time, then never answers.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.upstream.holding import settle
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.replica import Upstream
from fast_mcp_gateway.upstream.signals import ChangeSignal
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, serve_http, until
from tests.test_session_renewal import without_tap

pytestmark = pytest.mark.anyio

REFUSAL = {"jsonrpc": "2.0", "id": None, "error": {
    "code": -32000, "message": "Bad Request: No valid session ID provided"}}


class Forgetful:
    """The upstream: its sessions, what it ran (``runs``), and the events a test
    waits on or sets."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.ids = itertools.count(1)
        self.runs: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # requests refused, by method or tool
        self.forgot = False
        self.boom_running = anyio.Event()
        self.boom_may_fail = anyio.Event()
        self.hung = anyio.Event()
        self.released = anyio.Event()

    def forget(self) -> None:
        self.sessions.clear()
        self.forgot = True

    async def mcp(self, request: Request) -> Response:
        if request.method == "DELETE":
            return Response(status_code=200)
        if request.method == "GET":
            return Response(status_code=405)
        message = json.loads(await request.body())
        method, given = message.get("method"), request.headers.get("mcp-session-id")
        if method == "initialize":
            session = f"s{next(self.ids)}"
            self.sessions.add(session)
            return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}}, "serverInfo": {"name": "forgetful",
                                                               "version": "1"}}},
                headers={"mcp-session-id": session})
        if given not in self.sessions:
            name = (message.get("params") or {}).get("name") or method
            self.refused[name] += 1
            return JSONResponse(REFUSAL, status_code=400)
        if "id" not in message:
            return Response(status_code=202)
        answer = await self.answer(method, message.get("params") or {})
        if isinstance(answer, Response):
            return answer
        return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": answer})

    async def answer(self, method: str, params: dict[str, Any]) -> Any:
        if method == "tools/list":
            return {"tools": [{"name": n, "inputSchema": {"type": "object"}}
                              for n in ("boom", "gone", "hang")]}
        if method != "tools/call":
            return {}
        name = params["name"]
        if name in ("gone", "hang") and not self.forgot:
            self.forget()  # this request meets the refusal: not run
            self.refused[name] += 1
            return JSONResponse(REFUSAL, status_code=400)
        self.runs[name] += 1
        if name == "boom":
            self.boom_running.set()
            await self.boom_may_fail.wait()
            return PlainTextResponse("Internal Server Error", status_code=500)
        if name == "hang":
            self.hung.set()
            await self.released.wait()
        return {"content": [{"type": "text", "text": f"{name} ran"}]}


@contextlib.asynccontextmanager
async def forgetful_upstream(*, tap: bool, **entry: Any) -> AsyncIterator[
        tuple[Forgetful, Upstream]]:
    server = Forgetful()
    call = entry.pop("call", 60)
    app = Starlette(routes=[Route("/mcp", server.mcp, methods=["GET", "POST", "DELETE"])])
    async with serve_http(app, startup=False) as base:
        config = parse_config({"servers": {"up": {
            "url": f"{base}/mcp", "protocol": "legacy", **entry}}}, source="test").servers["up"]
        upstream = Upstream(config, restart=FAST_RESTART, call_timeout=call,
                            transport_factory=default_transport if tap else without_tap)
        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream.run)
            try:
                with anyio.fail_after(60):  # a guard only
                    await upstream.wait_first_attempt()
                assert upstream.state is UpstreamState.READY, upstream.last_error
                yield server, upstream
            finally:
                server.released.set()
                server.boom_may_fail.set()
                upstream.stop()


@pytest.mark.parametrize("raw", [True, False])  # the lanes' call, and the full path's
async def test_a_call_that_ran_and_failed_after_a_refusal_is_not_run_again(raw: bool) -> None:
    """On the SDK's client (the tap steps aside): ``boom`` runs, the server then forgets
    the session and refuses ``gone``, and ``boom`` fails with a bare 500, which the SDK
    says in the same words as the refusal.  ``boom`` ran: its error is the caller's,
    never sent again; ``gone`` was refused: it goes again on the new session."""
    async with forgetful_upstream(tap=False) as (server, upstream):
        failed: list[BaseException] = []
        answered: list[dict[str, Any]] = []

        async def boom() -> None:
            try:
                if raw:
                    await upstream.call_tool_raw({"name": "boom", "arguments": {}}, None)
                else:
                    await upstream.call_tool("boom", {}, None)
            except Exception as exc:  # noqa: BLE001 - the error is what is checked
                failed.append(exc)

        async def gone() -> None:
            if raw:
                answered.append(await upstream.call_tool_raw(
                    {"name": "gone", "arguments": {}}, None))
            else:
                result = await upstream.call_tool("gone", {}, None)
                answered.append(result.model_dump(exclude_none=True,  # type: ignore[union-attr]
                                                  include={"content"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(boom)
            await server.boom_running.wait()
            tg.start_soon(gone)
            end = upstream._sup.end
            assert end is not None
            await until(lambda: end.lost is not None)  # the refusal was seen
            server.boom_may_fail.set()
        assert server.runs["boom"] == 1, "boom ran again"
        assert len(failed) == 1 and isinstance(failed[0], MCPError), failed
        assert failed[0].error.message == "Server returned an error response"
        assert answered == [{"content": [{"type": "text", "text": "gone ran"}]}]
        assert server.refused["gone"] == 1 and server.runs["gone"] == 1
        assert upstream.connects == 2 and upstream.restarts == 1


@pytest.mark.parametrize("tap", [True, False])
async def test_a_resent_call_has_the_time_left_and_says_both_reasons(tap: bool) -> None:
    """``hang`` is refused, sent again on the new session and never answered there: it
    fails within its own call timeout (not a new one), saying it met the refusal and
    what was left of its time."""
    async with forgetful_upstream(tap=tap, call=3) as (server, upstream):
        with pytest.raises(UpstreamError) as caught:
            await upstream.call_tool_raw({"name": "hang", "arguments": {}}, None)
        text = str(caught.value)
        assert "no longer knows the gateway's session (HTTP 400" in text, text
        # Sent again with the rest of its 3 s, or no new session within them.
        assert "left of its call timeout (3s)" in text \
            or "its call timeout (3s) ran out before a new session" in text, text
        assert server.refused["hang"] == 1


async def test_settling_a_forgotten_session_waits_on_its_last_request() -> None:
    """``settle`` (a forgotten session kept for its requests in flight) checks when
    told (the replica's change signal: the last request in flight ended), never on a
    timer."""
    signal, busy, checks = ChangeSignal(), [True], [0]

    def in_flight() -> bool:
        checks[0] += 1
        return busy[0]

    async with anyio.create_task_group() as tg:
        tg.start_soon(settle, in_flight, signal.wait_until, 60.0)
        await anyio.wait_all_tasks_blocked()
        assert checks == [1]  # checked once, then waiting on the signal
        signal.notify()  # another change: checked again, still busy
        await anyio.wait_all_tasks_blocked()
        assert checks == [2]
        busy[0] = False
        signal.notify()  # the last request ended: settled (the task group ends)
    assert checks == [3]
