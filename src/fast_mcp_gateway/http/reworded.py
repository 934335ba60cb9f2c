"""What the MCP endpoint's wrappers share when they put the SDK's answers in words of
their own (``batches.BatchRefusal``, ``routing_headers.RoutingHeaders``,
``transport_refusals.TransportRefusals``): wrapping the routes of FastMCP's app, looking
at POSTs only (``PostsOnly``), and sending a held answer's status and headers with a new
body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def wrap_routes(app: Any, paths: tuple[str, ...], wrapper: Callable[[ASGIApp], ASGIApp]
                ) -> int:
    """Wrap the routes of ``paths`` in FastMCP's ``app`` with ``wrapper``; how many."""
    found = 0
    for route in getattr(app, "routes", ()):
        if getattr(route, "path", None) in paths and hasattr(route, "app"):
            route.app = wrapper(route.app)
            found += 1
    return found


class PostsOnly:
    """An ASGI app in front of the MCP endpoint's own that looks at POSTs only (``post``);
    any other request goes to ``app`` as it came."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        await self.post(scope, receive, send)

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


async def send_with_body(start: Message, body: bytes, send: Send) -> None:
    """The answer ``start`` (an ``http.response.start`` held back) began, with ``body``
    as its whole body (its ``content-length`` made to match)."""
    headers = [(k, str(len(body)).encode() if k == b"content-length" else v)
               for k, v in start["headers"]]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
