"""A host that POSTs a call and never reads its answer's stream, on both HTTP lanes.

The upstream (``tests/servers/flood.py``) logs 64 KiB warnings for as long as its call
runs.  uvicorn's ``send`` waits for a host that reads nothing once the connection's
write buffer is full, and the lanes awaited it from the upstream session's reader: that
reader stopped, and every other host's call on the upstream waited with it (30 s on a
real ``serve``, then the health probe marked the upstream UNHEALTHY).  Now the stream's
events go through ``http/sse_backlog.Backlog``: held up to ``MAX_HELD_BYTES``, then its
notifications dropped with one warning, the other hosts served meanwhile.

The full path (a POST the lanes leave to the SDK: here an unusual key) did not stop
the reader, but the SDK's dispatcher spawns a task per notification, each waiting in
the SDK's ``send`` with its log: every log was held (a real ``serve``: 96 -> 248 MB for
2,000 logs of 64 KiB).  ``upstream/held_logs`` bounds what a call's logs hold there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import SocketAttribute

from fast_mcp_gateway.front.wire import encode_body, progress_params
from fast_mcp_gateway.http import sse_backlog
from fast_mcp_gateway.http.session_reply import sse_event
from fast_mcp_gateway.http.slow_clients import protocol_with_timeout
from fast_mcp_gateway.http.sse_backlog import MAX_HELD_BYTES, Backlog
from fast_mcp_gateway.upstream import held_logs
from tests.fixtures import PY, SERVERS, WITHIN, make_gateway, serve_http, until
from tests.test_http_lane import body_of, headers_of
from tests.test_lane_non_finite import session_of
from tests.test_session_lane import headers

pytestmark = pytest.mark.anyio


async def _never_reading(base: str, head: dict[str, str], body: dict[str, Any]
                         ) -> anyio.abc.SocketStream:
    """A host connection that sends one POST and then reads nothing (a tiny receive
    buffer, so the gateway's writes back up at once)."""
    host, port = base.removeprefix("http://").split(":")
    stream = await anyio.connect_tcp(host, int(port))
    stream.extra(SocketAttribute.raw_socket).setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    data = json.dumps(body).encode()
    lines = ["POST /mcp HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(data)}",
             *(f"{k}: {v}" for k, v in head.items())]
    await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    return stream


@pytest.mark.parametrize("era", ["2026-07-28", "handshake", "full", "full-progress",
                                 "full-emoji"])
async def test_a_host_reading_nothing_holds_a_bounded_backlog_and_stops_no_one(
        era: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    backlogs: list[Backlog] = []
    most = {"bytes": 0, "items": 0}
    put = Backlog.put

    def counted(self: Backlog, message: dict[str, Any], *, droppable: bool = True) -> bool:
        if self not in backlogs:
            backlogs.append(self)
        kept = put(self, message, droppable=droppable)
        most["bytes"] = max(most["bytes"], self.held)
        most["items"] = max(most["items"], len(self.pending))
        return kept

    monkeypatch.setattr(Backlog, "put", counted)
    calls: list[Any] = []
    holding = held_logs.holding
    waiting = {"items": 0}  # the full path's notifications waiting for the host

    @contextlib.contextmanager
    def held(call: Any, data: Any) -> Iterator[bool]:
        if call not in calls:
            calls.append(call)
        with holding(call, data) as kept:
            most["bytes"] = max(most["bytes"], held_logs.held_bytes(call))
            waiting["items"] += kept
            most["items"] = max(most["items"], waiting["items"])
            try:
                yield kept
            finally:
                waiting["items"] -= kept

    monkeypatch.setattr(held_logs, "holding", held)

    def dropped() -> bool:
        return any(b.dropped for b in backlogs) or any(
            held_logs._held[c][1] for c in calls if c in held_logs._held)

    stop = tmp_path / "stop"
    gateway = make_gateway({"f": {"command": PY, "args": [str(SERVERS / "flood.py")],
                                  "env": {"FLOOD_STOP": str(stop)}}}, call_timeout=120)
    caplog.set_level(logging.WARNING, logger=sse_backlog.__name__)
    caplog.set_level(logging.WARNING, logger=held_logs.__name__)
    async with serve_http(gateway.http_app("http"), http=protocol_with_timeout(30.0)) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        if era != "2026-07-28":
            session = await session_of(http)
            # An unusual key: the session lane leaves it to the full path (the SDK).
            extra: dict[str, Any] = {} if era == "handshake" else {"x-full-path": 1}
            tool, arguments = "f_flood", {"char": "\U0001f600"} if era == "full-emoji" else {}
            if era == "full-progress":
                tool, extra["_meta"] = "f_tick", {"progressToken": "t"}
            slow = await _never_reading(base, headers(None, session), {
                "jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments, **extra}})
        else:
            slow = await _never_reading(base, headers_of("f_flood", None), body_of(
                "f_flood", {}, {"io.modelcontextprotocol/logLevel": "warning"}))
        try:
            await until(dropped)
            # The flood goes on (no stop yet): another host's call on the same upstream.
            with anyio.fail_after(WITHIN):
                other = await http.post("/mcp", headers=headers_of("f_ping", None),
                                        json=body_of("f_ping", {}))
            assert "pong" in other.text, other.text
            assert not stop.exists()
        finally:
            stop.touch()
            await slow.aclose()
    # What the stream held never passed the bound (64 KiB events: 16 of them).
    assert 0 < most["bytes"] <= MAX_HELD_BYTES == held_logs.MAX_HELD_BYTES, most
    assert era.startswith("full") == (not backlogs), backlogs  # the path the call took
    # The events queued (the full path's logs waiting), 64 KiB of UTF-8 each (an emoji's
    # counted as 1 byte, 64 of them were held); a 1 KB progress counts 4 KiB.
    each = held_logs.ITEM_BYTES if era == "full-progress" else 65536
    assert most["items"] <= MAX_HELD_BYTES // each + 1, most
    warned = [r.getMessage() for r in caplog.records if "not reading" in r.getMessage()]
    assert len(warned) == 1, warned  # once per stream, however many are dropped
    assert "further logs and progress" in warned[0] and "are dropped" in warned[0]


async def test_tiny_events_held_cost_about_the_bound() -> None:
    """A lane stream's events are counted with what each costs besides its body (its
    ASGI message): counted by their bodies alone, a host not reading a call's progress
    without a message (126-byte events) held 8,330 of them, 2.9 MB under a 1 MiB bound."""
    stuck = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        await stuck.wait()  # a host that reads nothing

    def event(n: int) -> bytes:
        return sse_event(encode_body({"jsonrpc": "2.0", "method": "notifications/progress",
                                      "params": progress_params("t", n, None, None)}))

    backlog, n = Backlog(send, "2026-07-28", "slowpoke"), 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        while backlog.put({"type": "http.response.body", "body": event(n), "more_body": True}):
            n += 1
        cost = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert n <= MAX_HELD_BYTES // (len(event(n)) + 200), n
    assert cost <= 1.25 * MAX_HELD_BYTES, cost
    stuck.set()
    await backlog.flushed()
    assert backlog.held == 0 and not backlog.pending


async def test_a_full_path_call_not_read_stops_no_reader_relaying_its_logs(
        tmp_path: Path) -> None:
    """A host with a full-path call (not read) and a lane call on one stdio upstream:
    the stdio tap relays a log it reads while the lane call waits itself, and by timing
    the log is the earlier call's (``flood.py``'s ``hold``, logging nothing).  Its send
    waited there for the host: once the host's buffers were full, the upstream's stdout
    reader stopped for good (its logs were never dropped: one waited at a time), and
    every host's calls on it with it.  Now that send goes on from a task of its own, as
    the SDK's reader does: the call's logs are dropped past the bound, others answered."""
    stop = tmp_path / "stop"
    gateway = make_gateway({"f": {"command": PY, "args": [str(SERVERS / "flood.py")],
                                  "env": {"FLOOD_STOP": str(stop)}}}, call_timeout=120)
    async with serve_http(gateway.http_app("http"), http=protocol_with_timeout(30.0)) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http, \
            contextlib.AsyncExitStack() as hosts:
        session = await session_of(http)

        async def post(request_id: int, tool: str, **extra: Any) -> None:  # never read
            stream = await _never_reading(base, headers(None, session), {
                "jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"name": tool, "arguments": {}, **extra}})
            hosts.push_async_callback(stream.aclose)

        try:
            await post(5, "f_hold", **{"x-full-path": 1})  # the full path (the SDK)
            await until((tmp_path / "stop.held").exists)
            await post(6, "f_flood")  # the session lane: a tap call, logging
            await until(lambda: any(dropped for _, dropped in held_logs._held.values()))
            with anyio.fail_after(WITHIN):
                other = await http.post("/mcp", headers=headers_of("f_ping", None),
                                        json=body_of("f_ping", {}))
            assert "pong" in other.text, other.text
        finally:
            stop.touch()


async def test_a_deleted_sessions_unread_stream_lets_go_of_its_backlog(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handshake-era session DELETE'd while its host reads nothing of a call's stream:
    the stream kept its backlog (up to ``MAX_HELD_BYTES``) until the host's socket
    closed.  Now the session's end drops it, the socket still open."""
    backlogs: list[Backlog] = []
    put = Backlog.put

    def seen(self: Backlog, message: dict[str, Any], *, droppable: bool = True) -> bool:
        if self not in backlogs:
            backlogs.append(self)
        return put(self, message, droppable=droppable)

    monkeypatch.setattr(Backlog, "put", seen)
    stop = tmp_path / "stop"
    gateway = make_gateway({"f": {"command": PY, "args": [str(SERVERS / "flood.py")],
                                  "env": {"FLOOD_STOP": str(stop)}}}, call_timeout=120)
    async with serve_http(gateway.http_app("http"), http=protocol_with_timeout(30.0)) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        session = await session_of(http)
        slow = await _never_reading(base, headers(None, session), {
            "jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "f_flood", "arguments": {}}})
        try:
            await until(lambda: any(b.dropped for b in backlogs))  # ~1 MiB held
            assert backlogs[0].held > MAX_HELD_BYTES // 2
            ended = await http.delete("/mcp", headers=headers(None, session))
            assert ended.status_code == 200, ended.text
            await until(lambda: backlogs[0].held == 0 and not backlogs[0].pending
                        and backlogs[0].writer is None)  # held until the socket closed
        finally:
            stop.touch()
            await slow.aclose()
