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
SDK logs it first, at ERROR with a ten-line traceback ("Error handling POST request"):
``_AnsweredAlready`` on its logger drops that record when the request it was logged in
(a ``ContextVar``: the SDK logs from the request's own task) had its answer sent whole
and the error is a closed or broken stream; any other error of the SDK's stays.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fast_mcp_gateway.http.reworded import PostsOnly

logger = logging.getLogger(__name__)

_ANSWERED: ContextVar[bool] = ContextVar("fast_mcp_gateway_post_answered", default=False)
_SDK_LOGGER = "mcp.server.streamable_http"


class _AnsweredAlready(logging.Filter):
    """Drops the SDK's "Error handling POST request" for a closed or broken stream met
    after the request's answer was sent whole (module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (_ANSWERED.get() and record.msg == "Error handling POST request"
                    and isinstance(error, anyio.ClosedResourceError | anyio.BrokenResourceError))


class AfterAnswer(PostsOnly):
    """ASGI app in front of the MCP endpoint's own (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        sdk = logging.getLogger(_SDK_LOGGER)
        if not any(isinstance(f, _AnsweredAlready) for f in sdk.filters):
            sdk.addFilter(_AnsweredAlready())

    async def post(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False

        async def once(message: Message) -> None:
            nonlocal answered
            if answered:
                return
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True
                _ANSWERED.set(True)  # this request's task: the SDK logs from it
            await send(message)

        token = _ANSWERED.set(False)  # a server running requests in one task (a test's)
        try:
            await self.app(scope, receive, once)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            if not answered:
                raise
            logger.debug("a POST answered before its session ended under it: %r", exc)
        finally:
            _ANSWERED.reset(token)
