"""A 2026-07-28 call answered as an SSE stream (progress, logs) keeps its connection
(upstream/http_tap.py): the tap reads the stream to its end, as in the handshake era,
and the next call reuses the connection; a call cancelled before its answer (the
2026-07-28 cancellation signal is closing the connection) never has its connection
kept.  Counted by the tap and by a TCP relay in front of the upstream.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Context

from tests.test_http_lane import canonical
from tests.test_http_tap import Upstream, front, gateway, host_leaves_mid_call, upstream_server
from tests.test_http_tap_handshake import Relay, Served, _port, settled

pytestmark = pytest.mark.anyio


def streaming_upstream(up: Upstream) -> Any:
    mcp = upstream_server(up)

    @mcp.tool
    async def log_then_hold(ctx: Context) -> str:
        """Logs (its answer becomes a stream), then runs until released."""
        await ctx.info("holding")
        up.started.set()
        try:
            await up.release.wait()
        except anyio.get_cancelled_exc_class():
            up.cancelled.set()
            raise
        return "released"

    return mcp


async def test_sse_answers_keep_their_connection_a_cancelled_call_does_not() -> None:
    up = Upstream("", anyio.Event(), anyio.Event(), anyio.Event())
    async with Served(streaming_upstream(up).http_app(path="/mcp")).serving() as served, \
            Relay(served.port).serving() as relay:
        url = f"http://127.0.0.1:{relay.port}/mcp"
        async with front(gateway(url, tap=True)) as fast:
            assert (await fast.post("alpha_add", {"a": 1, "b": 1})).status_code == 200
            tap = fast.tap
            assert tap is not None and not tap.lingers
            opened, accepted = tap.opened, relay.accepted
            for n in range(10):
                got = await fast.post("alpha_progress", {"steps": 2, "tag": str(n)},
                                      {"progressToken": n})
                events = [json.loads(e) for e in canonical(got.content)]
                assert [e.get("method") for e in events[:-1]] == [
                    "notifications/progress"] * 2, events
                assert events[-1]["result"]["content"][0]["text"] == f"{n} done"
                await settled(tap)  # (read off the calls' path: counted once ended)
                logged = await fast.post("alpha_chatty", {"text": str(n)},
                                         {types.LOG_LEVEL_META_KEY: "info"})
                log, result = (json.loads(e) for e in canonical(logged.content))
                assert log["params"]["data"]["msg"] == f"about {n}"
                assert result["result"]["structuredContent"]["echo"] == str(n)
                await settled(tap)  # (read off the calls' path: counted once ended)
            # Twenty streamed answers, each read to its end: no connection opened.
            assert tap.served == 21 and not tap.lingers
            assert (tap.opened, relay.accepted) == (opened, accepted)
            assert len(tap._idle) == 1 and not tap._busy

            # A call cancelled mid-stream (its host went away): its connection is closed
            # (the upstream's tool is cancelled), never pooled.
            outcomes = await host_leaves_mid_call(fast, up, "alpha_log_then_hold",
                                                  {types.LOG_LEVEL_META_KEY: "info"})
            assert [o.status for o in outcomes] == ["cancelled"]
            assert not tap._idle and not tap._busy
            assert (await fast.post("alpha_add", {"a": 2, "b": 2})).status_code == 200
            assert tap.opened == opened + 1 and relay.accepted == accepted + 1
            assert _port(url) == relay.port
