"""The session lane (http/session_lane.py) and a session's credentials over time: a
host whose JWT was refreshed mid-call cancels and answers that call's questions with
the new one, on the session the old one opened, as the full path lets it (the SDK
checks the session's owner -- issuer, subject, client -- not the token's bytes)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from tests.fixtures import WITHIN
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_http_service import ISSUER, signed
from tests.test_session_lane import call, front, headers, open_session

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("lane", [True, False])
async def test_a_refreshed_jwt_cancels_and_answers_a_call_the_old_one_made(
        jwks: tuple[RSAKeyPair, str], lane: bool) -> None:  # noqa: F811
    pair, uri = jwks
    options = {"auth": {"jwt": {"jwks_uri": uri, "issuer": ISSUER, "audience": "mcp-gateway"}}}
    first = signed(pair, "ann", expires_in_seconds=600)
    refreshed = signed(pair, "ann", expires_in_seconds=900)
    assert refreshed != first
    async with front(lane, options=options) as f:
        session = await open_session(f, first, capabilities={"elicitation": {}})
        streams: list[bytes] = []
        with anyio.fail_after(WITHIN):  # a bound only: the call ends on the cancel
            async with anyio.create_task_group() as tg:
                async def post() -> None:
                    got = await f.http.post("/mcp", json=call("inter_wait_for_cancel", {}, 5),
                                            headers=headers(first, session))
                    streams.append(got.content)

                tg.start_soon(post)
                await f.events["started"].wait()
                ack = await f.http.post("/mcp", headers=headers(refreshed, session), json={
                    "jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": 5}})
                assert ack.status_code == 202
        assert streams == [b'event: message\r\ndata: {"jsonrpc":"2.0","id":5,"error":'
                           b'{"code":-32800,"message":"Request cancelled"}}\r\n\r\n']
        answered: list[Any] = []
        with anyio.fail_after(WITHIN):  # a bound only: the call ends on the answer
            async with f.http.stream("POST", "/mcp", json=call("inter_ask", {}, 6),
                                     headers=headers(first, session)) as got:
                async for line in got.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    message = json.loads(line[6:])
                    if message.get("method") == "elicitation/create":
                        ack = await f.http.post("/mcp", headers=headers(refreshed, session),
                                                json={"jsonrpc": "2.0", "id": message["id"],
                                                      "result": {"action": "accept",
                                                                 "content": {"value": "Ann"}}})
                        assert ack.status_code == 202
                    elif message.get("id") == 6:
                        answered.append(message["result"]["content"][0]["text"])
        assert answered == ["accept:Ann"]
        assert f.served == (2 if lane else 0)
