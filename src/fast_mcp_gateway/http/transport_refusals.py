"""The MCP SDK's transport refusals on the MCP endpoint, in words saying what to do.

The SDK refuses a POST before reading it as JSON-RPC in two ways, with plain text that
names neither the rule nor the fix: a body over its limit (``RequestBodyLimitMiddleware``,
4 MiB) is a 413 "Request body too large", and a ``Content-Type`` other than JSON
(``TransportSecurityMiddleware``, also SSE's ``/messages/``) a 400 "Invalid Content-Type
header".  ``TransportRefusals`` wraps the MCP endpoint's route in FastMCP's app (as
``batches.BatchRefusal`` does) and rewrites those two answers alone: the status stays
the SDK's, the body (plain text, as the SDK's) says the limit and that no setting
changes it, or the type sent and the one to send.

A POST the SDK cannot refuse so -- a JSON ``Content-Type`` and a ``Content-Length``
within the limit: every client's POST -- goes to the app as it came, its ``send``
untouched; only a POST with another type, a declared length past the limit, or no
length (chunked) is watched.  The HTTP express lane (``lane.py``) reads a body up to
``MAX_MESSAGE`` and passes a longer one on (``read_body``), so the SDK refuses it here
too: the lane does not take what the full path refuses, nor buffer a body without end
before the token is checked.
"""

from __future__ import annotations

import contextlib
from typing import Literal

from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from starlette.types import Message, Receive, Scope, Send

from fast_mcp_gateway.http.reworded import PostsOnly

MAX_MESSAGE = DEFAULT_MAX_REQUEST_BODY_SIZE
"""The most the MCP endpoint reads for one message (bytes): the SDK's limit, which
FastMCP's app does not expose (so neither can the gateway)."""

_SDK_TOO_LARGE = b"Request body too large"
_SDK_CONTENT_TYPE = b"Invalid Content-Type header"
_LONGEST_TYPE = 100  # a Content-Type longer than this is not echoed whole

TOO_LARGE = (
    f"the request body is over {MAX_MESSAGE // (1 << 20)} MiB ({MAX_MESSAGE} bytes), the "
    "most the MCP endpoint reads for one JSON-RPC message (the MCP SDK's limit; no "
    "gateway setting changes it): send less in one message, and pass large data by "
    "reference (a resource URI or a URL) rather than inline")


def wrong_content_type(sent: str | None) -> str:
    """The refusal of a POST sent with ``Content-Type`` ``sent`` (None: none)."""
    if sent is None:
        what = "has no Content-Type"
    else:
        shown = "".join(c if c.isprintable() else "?" for c in sent[:_LONGEST_TYPE])
        what = f"is sent as '{shown}{'...' if len(sent) > _LONGEST_TYPE else ''}'"
    return (f"the request body {what}: the MCP endpoint reads JSON-RPC messages sent with "
            "'Content-Type: application/json'; send the request with that header")


def _json_type(value: bytes) -> bool:
    # The SDK's own test (transport_security._validate_content_type).
    return value.lower().startswith(b"application/json")


class TransportRefusals(PostsOnly):
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = length = None
        for key, value in scope["headers"]:  # the first of each, as the SDK reads them
            if key == b"content-type" and content_type is None:
                content_type = value
            elif key == b"content-length" and length is None:
                length = value
        typed = content_type is not None and _json_type(content_type)
        if typed and length is not None and length.isdigit() and int(length) <= MAX_MESSAGE:
            await self.app(scope, receive, send)
            return
        sent = None if content_type is None else content_type.decode("latin-1")
        held: list[Message] = []

        async def reword(message: Message) -> None:
            if not held and not (message["type"] == "http.response.start"
                                 and message["status"] in (400, 413)):
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.start" or message.get("more_body", False):
                return
            start, *parts = held
            held.clear()
            body = b"".join(part.get("body", b"") for part in parts)
            words = _reworded(start["status"], body, typed, sent)
            if words is None:
                await send(start)
                for part in parts:
                    await send(part)
                return
            await _send_text(start, words, send)

        await self.app(scope, receive, reword)


def _reworded(status: int, body: bytes, typed: bool, sent: str | None) -> str | None:
    if status == 413 and body == _SDK_TOO_LARGE:
        return TOO_LARGE
    if status == 400 and body == _SDK_CONTENT_TYPE and not typed:
        return wrong_content_type(sent)
    return None


async def _send_text(start: Message, text: str, send: Send) -> None:
    body = text.encode()
    headers = [(k, v) for k, v in start["headers"]
               if k not in (b"content-length", b"content-type")]
    headers += [(b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode())]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})


BodyEnd = Literal["whole", "over", "gone"]


async def read_body(receive: Receive, limit: int = MAX_MESSAGE) -> tuple[bytes, BodyEnd]:
    """The request body as far as read, and how reading ended: ``whole`` (it may still
    be past ``limit`` when it came in one message: the caller checks its length);
    ``over``, past ``limit`` bytes with more to come (left unread); ``gone``, cut by a
    disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), "gone"
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), "whole"
        if size > limit:
            return b"".join(chunks), "over"


def replay(body: bytes, end: BodyEnd, receive: Receive) -> Receive:
    """``receive`` with what ``read_body`` read handed out again first: the body
    (whole, or its start, the rest still to come from ``receive``), or the disconnect."""
    pending: list[Message] = [{"type": "http.disconnect"} if end == "gone" else
                              {"type": "http.request", "body": body,
                               "more_body": end == "over"}]

    async def replayed() -> Message:
        with contextlib.suppress(IndexError):
            return pending.pop()
        return await receive()

    return replayed
