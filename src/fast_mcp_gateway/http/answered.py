"""A POST the SDK answered before handing its message on, whose session ended between.

The SDK answers a notification's (or a response's) POST 202 first, then hands the
message to the session (``mcp.server.streamable_http``).  A host that sends one and ends
its session at once -- a cancellation, then its DELETE, as a client leaving mid-call
does -- can have the DELETE close the session's stream in between: the hand-over raises
``ClosedResourceError``, the SDK logs it and sends a 500 after the 202 (uvicorn refuses
it: "Unexpected ASGI message 'http.response.start' sent, after response already
completed"), then raises again, and the server closes the connection: the host's next
request on that keep-alive connection fails (``ReadError``).  Found by the soak run;
300 notification + DELETE pairs from one client broke its connection 84 times (uvloop),
72 (asyncio), each with two ERROR tracebacks in the log.

``AfterAnswer`` (the innermost wrapper of the endpoint's POSTs) holds the SDK to one
answer: once one was sent whole, later messages of the request are dropped, and the
closed stream's error is logged at DEBUG and goes no further (the host has its answer;
the session the message was for is gone, and nothing it would have done is lost).  The
SDK's own ERROR line ("Error handling POST request") is its logger's, left as it is.
"""

from __future__ import annotations

import logging

import anyio
from starlette.types import Message, Receive, Scope, Send

from fast_mcp_gateway.http.reworded import PostsOnly

logger = logging.getLogger(__name__)


class AfterAnswer(PostsOnly):
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False

        async def once(message: Message) -> None:
            nonlocal answered
            if answered:
                return
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True
            await send(message)

        try:
            await self.app(scope, receive, once)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            if not answered:
                raise
            logger.debug("a POST answered before its session ended under it: %r", exc)
