"""A handshake-era host whose GET stream is never read holds up no other host.

The hub (``front/hub.FrontHub``) pushes an upstream's logs outside any call (idle logs),
``list_changed`` notices and resource updates to each handshake-era host; over HTTP they
go on the host's GET stream.  uvicorn's ``send`` waits once 64 KiB are unread, and the
hub sent to each host in turn: one host that opened its GET stream and read nothing held
up every host's notifications, and the hub kept up to 1,000 idle logs of any size
meanwhile.  Now each host has a ``front/outbox.Outbox`` written by its own task: held up
to ``MAX_HELD_BYTES``, then that host's logs dropped with one warning naming its
credential, the other hosts served meanwhile.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import SocketAttribute

from fast_mcp_gateway.front import outbox
from fast_mcp_gateway.front.outbox import ITEM_BYTES, MAX_HELD_BYTES, Outbox, Send
from fast_mcp_gateway.http.slow_clients import protocol_with_timeout
from tests.fixtures import PY, SERVERS, make_gateway, serve_http, until
from tests.test_session_lane import ERA, headers

pytestmark = pytest.mark.anyio

SLOW, READER = "mgw_slow-get-stream-7c1d", "mgw_reading-host-3e9a"


async def _session(http: httpx2.AsyncClient, token: str) -> str:
    """A handshake-era session of ``token`` that asked for every log."""
    got = await http.post("/mcp", headers=headers(token), json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": ERA, "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}})
    session = got.headers["mcp-session-id"]
    done = await http.post("/mcp", headers=headers(token, session),
                           json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202
    level = await http.post("/mcp", headers=headers(token, session), json={
        "jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "debug"}})
    assert level.status_code == 200, level.text
    return session


async def _never_reading_get(base: str, token: str, session: str) -> anyio.abc.SocketStream:
    """A GET stream (the standalone SSE stream) that is opened and never read (a tiny
    receive buffer, so the gateway's writes back up at once)."""
    host, port = base.removeprefix("http://").split(":")
    stream = await anyio.connect_tcp(host, int(port))
    stream.extra(SocketAttribute.raw_socket).setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lines = ["GET /mcp HTTP/1.1", f"host: {host}:{port}", "accept: text/event-stream",
             f"authorization: Bearer {token}", f"mcp-session-id: {session}",
             f"mcp-protocol-version: {ERA}"]
    await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    return stream


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # logging/setLevel, SEP-2577
@pytest.mark.parametrize("char", ["x", "\U0001f600"])  # 1 and 4 bytes of UTF-8
async def test_a_get_stream_never_read_holds_a_bounded_outbox_and_delays_no_one(
        char: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    boxes: list[Outbox] = []
    most = {"bytes": 0, "items": 0}
    put = Outbox.put

    def counted(self: Outbox, send: Send, *, size: int = 0, key: Any = None) -> bool:
        if self not in boxes:
            boxes.append(self)
        kept = put(self, send, size=size, key=key)
        most["bytes"] = max(most["bytes"], self.held)
        most["items"] = max(most["items"], len(self.pending))
        return kept

    monkeypatch.setattr(Outbox, "put", counted)
    stop = tmp_path / "stop"
    auth = {"tokens": [{"name": "slowpoke", "token": SLOW, "scopes": ["tools"]},
                       {"name": "reader", "token": READER, "scopes": ["tools"]}]}
    gateway = make_gateway({"f": {"command": PY, "args": [str(SERVERS / "flood.py")],
                                  "env": {"FLOOD_STOP": str(stop)}}}, options={"auth": auth})
    caplog.set_level(logging.WARNING, logger=outbox.__name__)
    logs: list[int] = []  # the reading host's idle logs, by number
    async with serve_http(gateway.http_app("http"), http=protocol_with_timeout(30.0)) as base, \
            httpx2.AsyncClient(base_url=base, timeout=60) as http:
        # Three sessions of one host that never reads: said once, not once per session.
        slows = [await _never_reading_get(base, SLOW, await _session(http, SLOW))
                 for _ in range(3)]
        session = await _session(http, READER)
        listening = anyio.Event()

        async def read() -> None:
            async with http.stream("GET", "/mcp", headers=headers(READER, session)) as got:
                assert got.status_code == 200
                listening.set()
                async for line in got.aiter_lines():
                    if line.startswith("data:") and "notifications/message" in line:
                        message = json.loads(line.removeprefix("data:"))
                        logs.append(int(message["params"]["data"].split()[0]))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await listening.wait()
                started = await http.post("/mcp", headers=headers(READER, session), json={
                    "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "f_idle_flood", "arguments": {"char": char}}})
                assert "flooding" in started.text, started.text
                # The slow host's outbox is full: its logs are being dropped.
                await until(lambda: sum(b.who == "slowpoke" and b.dropped > 0
                                        for b in boxes) == 3)
                # The flood goes on (no stop yet); the reading host still gets its logs.
                seen = len(logs)
                await until(lambda: len(logs) >= seen + 20)
                assert not stop.exists()
                tg.cancel_scope.cancel()
        finally:
            stop.touch()
            for slow in slows:
                await slow.aclose()
    # What one host's outbox held never passed the bound (logs of 64 KiB of UTF-8: 16 of
    # them; an emoji's counted as 1 byte, 64 were held).
    assert 0 < most["bytes"] <= MAX_HELD_BYTES, most
    assert most["items"] <= MAX_HELD_BYTES // 65536 + 1 < MAX_HELD_BYTES // ITEM_BYTES, most
    warned = [r.getMessage() for r in caplog.records if r.name == outbox.__name__
              and "'slowpoke'" in r.getMessage()]
    assert len(warned) == 1, warned  # once per host, however many are dropped (3 before)
    assert "not reading its GET stream" in warned[0] and "are dropped" in warned[0]


async def test_the_not_reading_warning_is_said_once_a_while_per_credential_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    """500 short sessions of a host that never reads made 500 warnings; now one per
    credential per ``UNREAD_SAID_EVERY``, the next one counting those not said."""

    class Connection:  # held weakly, as the SDK's are
        pass

    now = [0.0]
    boxes, held = outbox.Outboxes(lambda: now[0]), []
    never = anyio.Event()

    async def send() -> None:
        await never.wait()

    def unread_session(who: str) -> Outbox:
        held.append(connection := Connection())
        box = boxes.of(connection, who)
        assert box.put(send, size=MAX_HELD_BYTES) and not box.put(send, size=1)
        return box

    caplog.set_level(logging.WARNING, logger=outbox.__name__)
    made = [unread_session("slowpoke") for _ in range(500)] + [unread_session("other")]
    now[0] = outbox.UNREAD_SAID_EVERY
    made.append(unread_session("slowpoke"))
    warned = [r.getMessage() for r in caplog.records if r.name == outbox.__name__]
    assert [("'slowpoke'" in w, "'other'" in w) for w in warned] == [
        (True, False), (False, True), (True, False)], warned
    assert warned[2].endswith("(499 more of its sessions since the last such line)")
    assert "more of its sessions" not in warned[0] + warned[1]
    for box in made:
        assert box.writer is not None
        box.writer.cancel()
    await anyio.wait_all_tasks_blocked()
