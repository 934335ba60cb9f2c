"""A request sent again on a new session (``upstream/requests.py``) keeps what is left
of its call timeout for its first answer or progress, and progress then gives it its
whole ``timeouts.call`` again, as any request (``upstream/deadline.py``: ``SPENT``).

The upstream is ``tests.test_session_refusal``'s forgetful server with one more tool,
``ticks``: refused the first time (the server forgets the session), then, on the new
session, it reports progress at once and answers when the test lets it.  The renewal is
made to look long (the request's clock, read at its start and at its resend, jumps):
what is left for the resent request is a small part of its call timeout.  No sleeps: the
proof that more than that part passed after the progress is a twin request on a second
replica with a shorter call timeout (but longer than what was left), which times out.
"""

from __future__ import annotations

import itertools
import json
import time
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.errors import UpstreamTimeout
from fast_mcp_gateway.upstream import requests
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.replica import Upstream
from fast_mcp_gateway.upstream.transports import default_transport
from tests.fixtures import FAST_RESTART, WITHIN, serve_http
from tests.test_session_refusal import REFUSAL, Forgetful
from tests.test_session_renewal import without_tap

pytestmark = pytest.mark.anyio

CALL, TWIN, SEEMS_SPENT = 8.0, 4.0, 5.5  # what is left at the resend: at most 2.5 s


class Ticking(Forgetful):
    """``ticks``: refused the first time, then progress at once, the answer when let."""

    def __init__(self) -> None:
        super().__init__()
        self.ticking = anyio.Event()
        self.may_end = anyio.Event()

    async def mcp(self, request: Any) -> Response:
        message = json.loads(await request.body()) if request.method == "POST" else {}
        params = message.get("params") or {}
        if message.get("method") != "tools/call" or params.get("name") != "ticks" \
                or request.headers.get("mcp-session-id") not in self.sessions:
            return await super().mcp(request)  # (its body is read again: starlette keeps it)
        if not self.forgot:  # this request meets the refusal: not run
            self.forget()
            self.refused["ticks"] += 1
            return JSONResponse(REFUSAL, status_code=400)
        self.runs["ticks"] += 1

        async def events() -> Any:
            yield "event: message\ndata: " + json.dumps({
                "jsonrpc": "2.0", "method": "notifications/progress", "params": {
                    "progressToken": params["_meta"]["progressToken"], "progress": 1}}) + "\n\n"
            self.ticking.set()
            await self.may_end.wait()
            yield "event: message\ndata: " + json.dumps({
                "jsonrpc": "2.0", "id": message["id"], "result": {
                    "content": [{"type": "text", "text": "ticks ran"}]}}) + "\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def _clock_jumping_after_the_first_read() -> SimpleNamespace:
    """``requests``' clock: the request's start read true, every later read
    ``SEEMS_SPENT`` seconds later (a renewal that took that long)."""
    reads = itertools.count()
    return SimpleNamespace(monotonic=lambda: time.monotonic() + (
        SEEMS_SPENT if next(reads) else 0.0))


@pytest.mark.parametrize("tap", [True, False])
async def test_progress_gives_a_resent_request_its_whole_call_timeout(
        tap: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resent request that reported progress got only what was left at the resend
    after each progress (2.5 s of 8 here), and timed out while running where one not
    resent runs on: here it outlives the twin's 4 s call timeout after its progress."""
    server = Ticking()
    app = Starlette(routes=[Route("/mcp", server.mcp, methods=["GET", "POST", "DELETE"])])
    async with serve_http(app, startup=False) as base:
        def upstream(call: float) -> Upstream:
            config = parse_config({"servers": {"up": {
                "url": f"{base}/mcp", "protocol": "legacy",
                "timeouts": {"call": call, "max_total": 60}}}}, source="test").servers["up"]
            return Upstream(config, restart=FAST_RESTART,
                            transport_factory=default_transport if tap else without_tap)

        first, twin = upstream(CALL), upstream(TWIN)
        answered: list[dict[str, Any]] = []
        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.run)
            with anyio.fail_after(WITHIN):  # bounds only: each step ends on an event
                await first.wait_first_attempt()
                assert first.state is UpstreamState.READY, first.last_error
                monkeypatch.setattr(requests, "time", _clock_jumping_after_the_first_read())

                async def ticks() -> None:
                    try:
                        answered.append(await first.call_tool_raw(
                            {"name": "ticks", "arguments": {}}, None))
                    except UpstreamTimeout as exc:
                        answered.append({"failed": str(exc)})
                    done.set()

                tg.start_soon(ticks)
                await server.ticking.wait()  # resent, and its progress reported
                tg.start_soon(twin.run)  # a session the server knows (after it forgot)
                await twin.wait_first_attempt()
                assert twin.state is UpstreamState.READY, twin.last_error
                with pytest.raises(UpstreamTimeout):
                    await twin.call_tool_raw({"name": "hang", "arguments": {}}, None)
                server.may_end.set()  # TWIN seconds after the progress: still running
                await done.wait()
            server.released.set()
            first.stop()
            twin.stop()
    assert answered == [{"content": [{"type": "text", "text": "ticks ran"}]}]
    assert server.refused["ticks"] == 1 and server.runs["ticks"] == 1
