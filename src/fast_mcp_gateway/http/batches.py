"""A JSON-RPC batch POSTed to the MCP endpoint is told that batches are not supported.

MCP removed batching in protocol 2025-06-18 and the SDK takes one message per POST; a
JSON array was answered with the SDK's words for a message it cannot validate: over
streamable HTTP a pydantic dump of four union members' errors (``Validation error: 4
validation errors for union[JSONRPCRequest, ...]``, with links to pydantic's site), over
SSE's ``/messages/`` "Could not parse message".  The stdio front says what is wrong
(``front/stdio.py``); these words are the same.

``BatchRefusal`` wraps the MCP endpoint's route in FastMCP's app (streamable HTTP's
path, SSE's ``/messages/`` mount): it notes whether a POST's body begins with ``[`` as
the app reads it, and when the app answers such a body with 400 it rewrites the answer
alone: a JSON-RPC error (-32600, id null) where the SDK answered JSON, plain text where
it answered text.  Anything else (a single message, a refusal of the token or session,
an answer to a body that is no array) is passed on untouched.
"""

from __future__ import annotations

import json

import mcp_types as types
from starlette.types import Message, Receive, Scope, Send

from fast_mcp_gateway.http.reworded import PostsOnly, send_with_body

BATCH = ("JSON-RPC batches are not supported (MCP removed them in protocol 2025-06-18): "
         "send each message in a POST of its own")
_JSON_WHITESPACE = b" \t\r\n"


class BatchRefusal(PostsOnly):
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        first: list[bytes] = []  # the body's first byte that is not whitespace, once read
        held: list[Message] = []

        async def watch() -> Message:
            message = await receive()
            if not first and message["type"] == "http.request":
                body = message.get("body", b"").lstrip(_JSON_WHITESPACE)
                if body:
                    first.append(body[:1])
            return message

        async def reword(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400 \
                    and first == [b"["]:
                held.append(message)
                return
            if not held:
                await send(message)
                return
            if message.get("more_body", False):
                return  # the SDK's own words, replaced below
            start = held.pop()
            await _refuse(start, send)

        await self.app(scope, watch, reword)


async def _refuse(start: Message, send: Send) -> None:
    """The answer ``start`` began, with the batch refusal as its body."""
    content_type = next((v for k, v in start["headers"] if k == b"content-type"), b"")
    if content_type.split(b";")[0].strip().lower() == b"application/json":
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
            "code": types.INVALID_REQUEST, "message": f"Invalid request: {BATCH}"}},
            separators=(",", ":")).encode()
    else:
        body = BATCH.encode()
    await send_with_body(start, body, send)
