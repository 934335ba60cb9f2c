"""A 2026-07-28 POST missing a routing header is told which one, and what to send.

The SDK's inbound ladder (``classify_inbound_request``) compares ``Mcp-Method`` with the
body's method and, for ``tools/call``, ``prompts/get`` and ``resources/read``,
``Mcp-Name`` with the named parameter; a header that is not there at all is worded as
a mismatch ("mcp-method header does not match the request body's method"), which sends
a client's author looking for a wrong value rather than a missing header.

``RoutingHeaders`` wraps the MCP endpoint's route in FastMCP's app (behind the express
lane, which passes such requests on, and every profile path): for a 2026-07-28 POST
missing one of the two it keeps the body as the app reads it, and when the answer is
the SDK's rejection of that header it rewrites the message alone -- "the Mcp-Method
header is missing: a 2026-07-28 request carries 'Mcp-Method: tools/call' ...".  The
status (400), the JSON-RPC code (``HEADER_MISMATCH``), the id and every other answer
stay the SDK's; a request with both headers, or of a handshake-era session (its
``MCP-Protocol-Version`` a handshake one), is passed on untouched.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
)
from mcp_types import HEADER_MISMATCH
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Message, Receive, Scope, Send

from fast_mcp_gateway.http.reworded import PostsOnly, send_with_body

_STATUS = ERROR_CODE_HTTP_STATUS[HEADER_MISMATCH]
_METHOD, _NAME = MCP_METHOD_HEADER.lower().encode(), MCP_NAME_HEADER.lower().encode()
_VERSION = b"mcp-protocol-version"  # the modern entry's only door (the SDK's dispatch)
_HANDSHAKE = frozenset(v.encode() for v in HANDSHAKE_PROTOCOL_VERSIONS)
_SDK_METHOD = f"{MCP_METHOD_HEADER} header does not match the request body's method"
_SDK_NAME = f"{MCP_NAME_HEADER} header does not match the request body's "
_LONGEST = 200  # a body value longer than this is not echoed back


class RoutingHeaders(PostsOnly):
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        modern = has_method = has_name = False
        for key, value in scope["headers"]:
            if key == _VERSION:  # the SDK's dispatch: any version but a handshake one
                modern = value not in _HANDSHAKE
            elif key == _METHOD:
                has_method = True
            elif key == _NAME:
                has_name = True
        if not modern or (has_method and has_name):
            await self.app(scope, receive, send)
            return
        read: list[bytes] = []
        held: list[Message] = []

        async def keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                read.append(message.get("body", b""))
            return message

        async def reword(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == _STATUS:
                held.append(message)
                return
            if not held:
                await send(message)
                return
            held.append(message)
            if message.get("more_body", False):
                return
            start, *parts = held
            held.clear()
            answer = b"".join(part.get("body", b"") for part in parts)
            await send_with_body(start, _reworded(answer, b"".join(read),
                                                  method=not has_method, name=not has_name),
                                 send)

        await self.app(scope, keep, reword)


def _reworded(answer: bytes, request: bytes, *, method: bool, name: bool) -> bytes:
    """``answer`` with the SDK's mismatch message for an absent header (``method``:
    ``Mcp-Method`` is absent; ``name``: ``Mcp-Name``) replaced by one naming it."""
    try:
        reply, sent = json.loads(answer), json.loads(request)
    except (ValueError, RecursionError):
        return answer
    error = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(error, dict) or error.get("code") != HEADER_MISMATCH \
            or not isinstance(sent, dict):
        return answer
    said, asked = error.get("message"), sent.get("method")
    if not isinstance(asked, str) or len(asked) > _LONGEST:
        return answer
    if method and said == _SDK_METHOD:
        error["message"] = (
            f"the Mcp-Method header is missing: a 2026-07-28 request carries "
            f"'Mcp-Method: {asked}' (its body's method); add that header to the request")
    elif name and isinstance(said, str) and said.startswith(_SDK_NAME):
        key = NAME_BEARING_METHODS.get(asked)
        params: Any = sent.get("params")
        value = params.get(key) if key is not None and isinstance(params, dict) else None
        if not isinstance(value, str) or len(value) > _LONGEST:
            return answer
        error["message"] = (
            f"the Mcp-Name header is missing: a 2026-07-28 {asked} request carries "
            f"'Mcp-Name: {encode_header_value(value)}' (its body's '{key}'); add that "
            "header to the request")
    else:
        return answer
    return json.dumps(reply, separators=(",", ":")).encode()

