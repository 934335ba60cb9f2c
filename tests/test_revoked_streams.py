"""A session's event stream ends when a reload removes the token it was opened with,
unless its session proves a standing token within a grace (``http/revoked_streams.py``).
Found revoking a token as an operator: its requests were refused (401) from the reload
on, but its open handshake-era event stream (and in SSE mode its ``/sse`` stream)
stayed open, pinged, for as long as the host kept it.  Ending it at the reload broke
rotation (``test_restricted_names``: a client sending the new token after the reload
lost its updates).  Real HTTP on 127.0.0.1, the config reloaded from a real file; the
grace is held by an event (``RevokedStreams.wait``), never waited out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from fast_mcp_gateway.http.revoked_streams import RevokedStreams
from tests.fixtures import WITHIN, make_gateway, until
from tests.fixtures import serve_http as serve
from tests.test_http_stream_quota import HANDSHAKE, _get_stream, _headers, _session

pytestmark = pytest.mark.anyio
OPS = "mgw_revoked-ops-6b2d9e1f4a"
BOB = "mgw_revoked-bob-3c7a0e5d8f"
BOB2 = "mgw_revoked-bob-rotated-9e4f1a"   # what a rotation puts in place of BOB


def _write(config: Path, bob: str | None) -> dict[str, Any]:
    tokens = [{"name": "ops", "token": OPS, "scopes": ["admin"]}]
    if bob is not None:   # the same name: a rotation keeps who the caller is
        tokens.append({"name": "bob", "token": bob, "scopes": ["tools"]})
    auth = {"tokens": tokens}
    config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": {}}))
    return auth


class Held:
    """The grace, held until ``release``d (``RevokedStreams.wait``)."""

    def __init__(self, streams: RevokedStreams) -> None:
        self.over = anyio.Event()
        streams.wait = self._wait

    async def _wait(self, _seconds: float) -> None:
        await self.over.wait()

    def release(self) -> None:
        self.over.set()


class Stream:
    """An open stream of one caller: what it read, and how to post in its session."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.read = b""
        self.session = ""
        self.done = anyio.Event()

    async def pump(self) -> None:
        async for chunk in self.response.aiter_bytes():
            self.read += chunk
        self.done.set()


@asynccontextmanager
async def _streams(http: httpx2.AsyncClient, base: str, transport: str
                   ) -> AsyncIterator[tuple[Stream, Stream, Any]]:
    """Bob's and ops's streams open, read in the background; and ``post(token)``, a
    request of bob's session with ``token`` (its response)."""
    async with anyio.create_task_group() as tg:
        if transport == "http":
            url = f"{base}/mcp"
            sessions = {t: await _session(http, base, t) for t in (BOB, OPS)}
            heads = {t: _headers(t, **{"Mcp-Session-Id": s, "MCP-Protocol-Version": HANDSHAKE})
                     for t, s in sessions.items()}
        else:
            url = f"{base}/sse"
            heads = {t: {"Accept": "text/event-stream", "Authorization": f"Bearer {t}"}
                     for t in (BOB, OPS)}
        async with _get_stream(http, url, heads[BOB]) as bob, \
                _get_stream(http, url, heads[OPS]) as ops:
            assert bob.status_code == ops.status_code == 200
            streams = Stream(bob), Stream(ops)
            for stream in streams:
                tg.start_soon(stream.pump)
            if transport == "sse":   # the endpoint event names the session's posts
                await until(lambda: b"session_id=" in streams[0].read)
                streams[0].session = streams[0].read.split(b"data: ")[1].split(
                    b"\r\n")[0].strip().decode()

            async def post(token: str) -> httpx2.Response:
                ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
                if transport == "http":
                    return await http.post(url, json=ping, headers={
                        **heads[BOB], "Authorization": f"Bearer {token}"})
                return await http.post(f"{base}{streams[0].session}", json=ping,
                                       headers={"Authorization": f"Bearer {token}"})

            yield streams[0], streams[1], post
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_a_revoked_tokens_event_stream_ends_after_its_grace(
        tmp_path: Path, transport: str) -> None:
    config = tmp_path / "servers.yaml"
    gateway = make_gateway({}, options={"auth": _write(config, BOB)}, config=config)
    app = gateway.http_app(transport)
    assert app.revoked_streams is not None
    held = Held(app.revoked_streams)
    async with serve(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            _streams(http, base, transport) as (bob, ops, _post):
        _write(config, None)   # bob's token revoked
        assert (await gateway.reload_config()).error is None
        await until(lambda: app.revoked_streams.in_grace == 1)   # bob's, in its grace
        assert not bob.done.is_set()
        held.release()
        with anyio.fail_after(WITHIN):
            await bob.done.wait()
        assert b"stream ended: the credential of 'bob' no longer stands (a config " \
               b"reload removed its token from gateway.auth.tokens)" in bob.read
        assert b"reconnect with a token gateway.auth lists now" in bob.read
        assert not ops.done.is_set()   # a token the reload kept keeps its stream
        again = await http.get(f"{base}/mcp" if transport == "http" else f"{base}/sse",
                               headers={"Accept": "text/event-stream",
                                        "Authorization": f"Bearer {BOB}"})
        assert again.status_code == 401, again.text


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_a_stream_whose_session_proves_a_standing_token_in_its_grace_stays(
        tmp_path: Path, transport: str) -> None:
    """A rotation: the session's next request brings the new token within the grace,
    and the stream is judged by it from then on (a later reload removing it ends it)."""
    config = tmp_path / "servers.yaml"
    gateway = make_gateway({}, options={"auth": _write(config, BOB)}, config=config)
    app = gateway.http_app(transport)
    assert app.revoked_streams is not None
    held = Held(app.revoked_streams)
    async with serve(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            _streams(http, base, transport) as (bob, _ops, post):
        _write(config, BOB2)   # rotated: BOB out, BOB2 in
        assert (await gateway.reload_config()).error is None
        await until(lambda: app.revoked_streams.in_grace == 1)
        refused = await post(BOB)   # the old token proves nothing
        assert refused.status_code == 401
        assert app.revoked_streams.in_grace == 1
        answered = await post(BOB2)
        assert answered.status_code < 400, answered.text
        await until(lambda: app.revoked_streams.in_grace == 0)
        held.release()   # the grace would be over now: nothing left in it
        assert app.revoked_streams.ended == 0 and not bob.done.is_set()
        held.over = anyio.Event()
        _write(config, None)   # now BOB2, the stream's token since the post, goes too
        assert (await gateway.reload_config()).error is None
        await until(lambda: app.revoked_streams.in_grace == 1)
        held.release()
        with anyio.fail_after(WITHIN):
            await bob.done.wait()
        assert app.revoked_streams.ended == 1
