"""What a session's requests prove for its event stream (``http/revoked_streams.py``).

A JWT session's stream is judged by the credential its session proved last, whichever
expires first.  Found by review27: the stream waited for the expiry of the JWT it was judged by when
the wait began; a request of its session bringing another JWT (the stream's from then
on) that expires sooner woke nothing, so the stream outlived it until the first one's
expiry (or a reload): with a JWT of an hour proved by one of two seconds, an hour.
Real HTTP on 127.0.0.1, real RS256 JWTs; the short JWT's own expiry (two seconds) is
waited for as a condition, the grace by an event.

A request bringing the token its session's stream is judged by already proves nothing:
each one built a standing and looked it up (~7 us per request, on every SSE post).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from tests.fixtures import WITHIN, make_gateway, until
from tests.fixtures import serve_http as serve
from tests.test_http_stream_quota import HANDSHAKE, _get_stream, _headers, _session
from tests.test_revoked_streams import BOB, Held, Stream, _streams, _write

pytestmark = pytest.mark.anyio
ISSUER = "https://idp.review27.test/"


def _jwt(pair: RSAKeyPair, seconds: int) -> str:
    return pair.create_token(subject="dana", issuer=ISSUER, audience="mcp-gateway",
                             scopes=["tools"], expires_in_seconds=seconds)


async def test_a_stream_ends_at_the_expiry_of_the_jwt_its_session_proved_last(
        tmp_path: Path) -> None:
    pair = RSAKeyPair.generate()
    gateway = make_gateway({}, options={"auth": {"jwt": {
        "public_key": pair.public_key, "issuer": ISSUER, "audience": "mcp-gateway"}}})
    app = gateway.http_app()
    assert app.revoked_streams is not None
    held = Held(app.revoked_streams)
    long, short = _jwt(pair, 3600), _jwt(pair, 2)
    async with serve(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            anyio.create_task_group() as tg:
        session = await _session(http, base, long)
        heads = {"Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}
        async with _get_stream(http, f"{base}/mcp", _headers(long, **heads)) as opened:
            assert opened.status_code == 200
            stream = Stream(opened)
            tg.start_soon(stream.pump)
            await until(lambda: app.revoked_streams.open)
            answered = await http.post(f"{base}/mcp", headers=_headers(short, **heads),
                                       json={"jsonrpc": "2.0", "id": 7, "method": "ping"})
            assert answered.status_code < 400, answered.text
            # The short JWT's expiry: its grace begins (it waited for the long one's).
            await until(lambda: app.revoked_streams.in_grace == 1)
            held.release()
            with anyio.fail_after(WITHIN):
                await stream.done.wait()
            assert b"stream ended: the credential of 'dana' no longer stands (its JWT " \
                   b"expired)" in stream.read
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_a_request_with_its_streams_own_token_proves_nothing(
        tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "servers.yaml"
    gateway = make_gateway({}, options={"auth": _write(config, BOB)}, config=config)
    app = gateway.http_app(transport)
    assert app.revoked_streams is not None and app.verifier is not None
    built: list[str] = []
    standing = app.verifier.standing

    def counted(token: str) -> Any:
        built.append(token)
        return standing(token)

    async with serve(app) as base, httpx2.AsyncClient(timeout=30) as http, \
            _streams(http, base, transport) as (bob, _ops, post):
        assert app.revoked_streams.open
        monkeypatch.setattr(app.verifier, "standing", counted)
        assert (await post(BOB)).status_code < 400
        assert built == []
        assert not bob.done.is_set()
