"""A 2026-07-28 POST missing a routing header (``Mcp-Method``, ``Mcp-Name``) is told
which header is missing and what to send, on the express lane and the full path alike
(session 19: the SDK's "Mcp-Method header does not match the request body's method"
answered a request that had sent no such header at all)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp_types import HEADER_MISMATCH

from tests.test_http_lane import body_of, front, headers_of

pytestmark = pytest.mark.anyio


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


@pytest.mark.parametrize("lane", [True, False])
async def test_a_missing_routing_header_is_named_with_the_value_to_send(lane: bool) -> None:
    listing: dict[str, Any] = {**body_of("x", None), "method": "tools/list", "params": {
        "_meta": body_of("x", None)["params"]["_meta"]}}
    cases = [
        (body_of("alpha_add", {"a": 1, "b": 2}), _without(headers_of("alpha_add"), "mcp-method"),
         "the Mcp-Method header is missing: a 2026-07-28 request carries "
         "'Mcp-Method: tools/call'"),
        (listing, _without(headers_of("x"), "mcp-method"),
         "the Mcp-Method header is missing: a 2026-07-28 request carries "
         "'Mcp-Method: tools/list'"),
        (body_of("alpha_add", {"a": 1, "b": 2}), _without(headers_of("alpha_add"), "mcp-name"),
         "the Mcp-Name header is missing: a 2026-07-28 tools/call request carries "
         "'Mcp-Name: alpha_add'"),
    ]
    async with front(lane) as f:
        for body, headers, message in cases:
            got = await f.http.post("/mcp", content=json.dumps(body), headers=headers)
            assert got.status_code == 400, got.text
            error = got.json()["error"]
            assert error["code"] == HEADER_MISMATCH
            assert error["message"].startswith(message), error["message"]
            assert got.json()["id"] == body["id"]
        # A header sent with another value keeps the SDK's answer: it does not match.
        got = await f.http.post("/mcp", content=json.dumps(cases[0][0]),
                                headers=headers_of("alpha_add", **{"mcp-method": "tools/list"}))
        assert got.status_code == 400
        assert "does not match the request body's method" in got.json()["error"]["message"]


async def test_only_a_2026_post_missing_a_routing_header_is_watched() -> None:
    """Every other request reaches the app with the server's own ``send`` (nothing
    held or copied): a handshake-era session's, one with both headers, a GET."""
    from fast_mcp_gateway.http.routing_headers import RoutingHeaders

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(send)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    watched = RoutingHeaders(app)
    for method, headers in [
        ("POST", [(b"mcp-protocol-version", b"2025-11-25")]),
        ("POST", [(b"mcp-protocol-version", b"2026-07-28"), (b"mcp-method", b"tools/call"),
                  (b"mcp-name", b"x")]),
        ("GET", [(b"mcp-protocol-version", b"2026-07-28")]),
        ("POST", []),
    ]:
        await watched({"type": "http", "method": method, "headers": headers}, receive, send)
    assert seen == [send] * 4
    await watched({"type": "http", "method": "POST",
                   "headers": [(b"mcp-protocol-version", b"2026-07-28")]}, receive, send)
    assert seen[-1] is not send
