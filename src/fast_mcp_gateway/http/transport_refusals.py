"""The MCP SDK's transport refusals on the MCP endpoint, in words saying what to do, and
the endpoint's body limit.

The SDK refuses a POST before reading it as JSON-RPC in two ways, with plain text that
names neither the rule nor the fix: a body over its limit (``RequestBodyLimitMiddleware``)
is a 413 "Request body too large", and a ``Content-Type`` other than JSON
(``TransportSecurityMiddleware``, also SSE's ``/messages/``) a 400 "Invalid Content-Type
header".  ``TransportRefusals`` wraps the MCP endpoint's route in FastMCP's app (as
``batches.BatchRefusal`` does) and rewrites those two answers alone: the status stays
the SDK's, the body (plain text, as the SDK's) says the limit and the setting that sets
it, or the type sent and the one to send.

**The limit** is ``MCP_GATEWAY_HTTP_MAX_BODY_BYTES`` (``settings.http_max_body_bytes``,
default the SDK's 4 MiB).  FastMCP's ``http_app`` passes none to the SDK, but the SDK's
session manager keeps its limit in public attributes (``asgi_app``, a
``RequestBodyLimitMiddleware``, and its ``max_body_size``), and FastMCP's endpoint keeps
the manager it makes at each lifespan in ``session_manager``: ``body_limit_setter``
finds that endpoint once and sets the limit as the lifespan starts, so the SDK itself
enforces it, raised or lowered, declared or chunked.  SSE's transport keeps its limit in
a private attribute: it stays 4 MiB (the settings refuse another value with SSE).

A POST the SDK cannot refuse so -- a JSON ``Content-Type`` and a ``Content-Length``
within the limit: every client's POST -- goes to the app as it came, its ``send``
untouched; only a POST with another type, a declared length past the limit, or no
length (chunked) is watched.  The HTTP express lane (``lane.py``) reads a body up to
the same limit and passes a longer one on (``read_body``), so the SDK refuses it here
too: the lane does not take what the full path refuses, nor buffer a body without end
before the token is checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Literal

from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    RequestBodyLimitMiddleware,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fast_mcp_gateway.http.reworded import PostsOnly

MAX_MESSAGE = DEFAULT_MAX_REQUEST_BODY_SIZE
"""The SDK's own limit (bytes): the default of ``http_max_body_bytes``, SSE's always."""

_SDK_TOO_LARGE = b"Request body too large"
_SDK_CONTENT_TYPE = b"Invalid Content-Type header"
_LONGEST_TYPE = 100  # a Content-Type longer than this is not echoed whole


def too_large(limit: int = MAX_MESSAGE, *, settable: bool = True) -> str:
    """The refusal of a body over ``limit`` bytes (``settable``: streamable HTTP's, which
    ``MCP_GATEWAY_HTTP_MAX_BODY_BYTES`` sets; SSE's is the SDK's alone)."""
    size = (f"{limit >> 20} MiB" if not limit & ((1 << 20) - 1) else
            f"{limit >> 10} KiB" if not limit & ((1 << 10) - 1) else f"{limit} bytes")
    where = ("MCP_GATEWAY_HTTP_MAX_BODY_BYTES, which the gateway's operator may raise "
             "up to 64 MiB" if settable else
             "the MCP SDK's limit for SSE, which no setting changes; streamable HTTP's is "
             "MCP_GATEWAY_HTTP_MAX_BODY_BYTES")
    return (f"the request body is over {size} ({limit} bytes), the most the MCP endpoint "
            f"reads for one JSON-RPC message ({where}): send less in one message, and pass "
            "large data by reference (a resource URI or a URL) rather than inline")


def endpoint_manager(mcp_app: Any, path: str, unable: str) -> Callable[[], Any]:
    """How to reach the SDK's session manager behind FastMCP's streamable-HTTP endpoint
    ``path`` in ``mcp_app`` (made anew by each run of FastMCP's lifespan).  A FastMCP
    that keeps it elsewhere is a ``RuntimeError`` naming what changed and what then
    cannot be done (``unable``)."""
    endpoint = next((getattr(r, "app", None) for r in getattr(mcp_app, "routes", ())
                     if getattr(r, "path", None) == path), None)
    while endpoint is not None and not hasattr(endpoint, "session_manager"):
        endpoint = getattr(endpoint, "app", None)  # past FastMCP's auth guard
    if endpoint is None:
        raise RuntimeError(f"FastMCP's streamable-HTTP endpoint {path} has no "
                           f"session_manager here: {unable}")
    return lambda: endpoint.session_manager


def body_limit_setter(mcp_app: Any, path: str) -> Callable[[int], None]:
    """How to set the SDK's body limit of FastMCP's streamable-HTTP endpoint ``path`` in
    ``mcp_app`` (module doc): call it with the limit each time FastMCP's lifespan has
    made its session manager.  A FastMCP or SDK that keeps the limit elsewhere is a
    ``RuntimeError`` naming what changed, at build or as the lifespan starts."""
    manager_of = endpoint_manager(mcp_app, path,
                                  "this FastMCP cannot take MCP_GATEWAY_HTTP_MAX_BODY_BYTES")

    def set_limit(limit: int) -> None:
        manager = manager_of()
        guard = getattr(manager, "asgi_app", None)
        if not isinstance(guard, RequestBodyLimitMiddleware):
            raise RuntimeError("the MCP SDK's session manager keeps no RequestBodyLimitMiddleware "
                               "in asgi_app: this SDK cannot take MCP_GATEWAY_HTTP_MAX_BODY_BYTES")
        guard.max_body_size = manager.max_request_body_size = limit

    return set_limit


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

    def __init__(self, app: ASGIApp, limit: int = MAX_MESSAGE, *, settable: bool = True
                 ) -> None:
        super().__init__(app)
        self.limit = limit
        self.too_large = too_large(limit, settable=settable)

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = length = None
        for key, value in scope["headers"]:  # the first of each, as the SDK reads them
            if key == b"content-type" and content_type is None:
                content_type = value
            elif key == b"content-length" and length is None:
                length = value
        typed = content_type is not None and _json_type(content_type)
        if typed and length is not None and length.isdigit() and int(length) <= self.limit:
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
            words = self._reworded(start["status"], body, typed, sent)
            if words is None:
                await send(start)
                for part in parts:
                    await send(part)
                return
            await _send_text(start, words, send)

        await self.app(scope, receive, reword)

    def _reworded(self, status: int, body: bytes, typed: bool, sent: str | None
                  ) -> str | None:
        if status == 413 and body == _SDK_TOO_LARGE:
            return self.too_large
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
