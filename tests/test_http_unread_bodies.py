"""No body is read on the MCP endpoint before its token verifies, over real HTTP.

FastMCP's auth guard answers a request without a valid token 401 without reading its
body, and the route's wrappers read none either (``request_ids``: "a POST without a
verified token is passed to the guard untouched").  The HTTP express lane and the
``roots/list_changed`` note in front of FastMCP's app read a 2026-07-28 POST's body
first: a client without a token that sent a head declaring 4 MiB and most of the body,
then waited, held 4 MiB of the gateway's memory per connection for as long as it liked
(50 connections: 107 -> 310 MiB of RSS, not one answered).  Now each answers the 401
at once, whatever follows the head.
"""

from __future__ import annotations

import anyio
import pytest

from tests.fixtures import WITHIN
from tests.test_http_lane import FULL, MODERN, front

pytestmark = pytest.mark.anyio


async def _answer_to_a_partial_body(base: str, token: str | None, declared: int) -> bytes:
    """The head of the answer to a 2026-07-28 POST declaring ``declared`` bytes of body
    of which only 1 KiB is sent (the connection then waits)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    head = (f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"Mcp-Protocol-Version: {MODERN}\r\nContent-Length: {declared}\r\n"
            + (f"Authorization: Bearer {token}\r\n" if token is not None else "") + "\r\n")
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(head.encode() + b" " * 1024)
        received = b""
        with anyio.fail_after(WITHIN):  # a guard: the answer comes at once, or never
            while b"\r\n\r\n" not in received:
                received += await stream.receive()
        return received.partition(b"\r\n\r\n")[0]


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "lane off"])
async def test_a_post_without_a_valid_token_is_refused_before_its_body_is_read(
        lane: bool) -> None:
    # The lane reads up to the endpoint's limit (4 MiB); without it the roots note in
    # front of FastMCP reads up to 64 KiB: a body just under each.
    declared = 4 * 1024 * 1024 - 1 if lane else 60_000
    async with front(lane, guarded=True) as gateway:
        for token in (None, "mgw_not-a-token", FULL[:-1]):
            head = await _answer_to_a_partial_body(gateway.base, token, declared)
            assert head.startswith(b"HTTP/1.1 401 "), head
            assert b"www-authenticate: Bearer" in head
        assert gateway.served == 0
