"""The MCP endpoint's answer while the app's lifespan is not running.

``gateway.http_app()`` mounted in an app of the library user's own (``Mount("/gw",
app=...)``) is served without its lifespan unless they run it: Starlette and FastAPI do
not run a mounted app's lifespan.  The gateway then never started (no upstream, no
session manager), and FastMCP's endpoint failed each request with a 500 and a traceback
naming an attribute the gateway's app does not have.  Now such a request gets a 503
with a JSON-RPC error (id null: the body is not read) saying what to pass.  Only the
MCP endpoint (its path, a profile's, SSE's messages): ``/health`` and ``/ready`` answer
as they do while an ASGI server serves before the lifespan (``ready`` says starting).

The REST API, ``/health/servers`` and the dashboard read the servers' state, which
nothing changes while the lifespan never began: every server was shown ``starting``
for ever.  Until it begins (``entered``) they answer a 503 ``not_running`` saying what
to pass (``not_running_report``: the API's JSON error, an HTML page to a browser).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import mcp_types as types
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

NOT_RUNNING = (
    "the gateway is not running: the lifespan of its app (gateway.http_app()) has not "
    "started (or has ended).  Mounted in an app of your own, run it from your app's "
    "lifespan: Starlette(routes=[Mount('/gw', app=gateway_app)], "
    "lifespan=gateway_app.lifespan), or FastAPI(lifespan=gateway_app.lifespan); Starlette "
    "and FastAPI do not run a mounted app's lifespan by themselves")

_BODY = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
    "code": types.INTERNAL_ERROR, "message": NOT_RUNNING}}, separators=(",", ":")).encode()


def on_endpoint(scope: Scope, paths: tuple[str, ...]) -> bool:
    """The request is for one of the MCP endpoint's ``paths`` (or below one: a
    profile's), under whatever prefix the app is mounted at."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):  # Starlette's Mount keeps the whole path
        path = path[len(root):]
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths)


async def not_running(scope: Scope, receive: Receive, send: Send) -> None:
    """503, the JSON-RPC error saying how to run the lifespan."""
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_BODY)).encode())]})
    await send({"type": "http.response.body", "body": _BODY})


_REPORT = json.dumps({"error": {"code": "not_running", "message": NOT_RUNNING,
                                 "details": None}}, separators=(",", ":")).encode()
_PAGE = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not "
         "running · Fast MCP Gateway</title></head><body><h1>The gateway is not running</h1>"
         f"<p>{html.escape(NOT_RUNNING)}</p></body></html>").encode()


async def not_running_report(scope: Scope, receive: Receive, send: Send) -> None:
    """503 for what shows the servers (the REST API, their health, the dashboard) while
    the lifespan never began: the gateway is not running, and how to run it."""
    accept = next((v for k, v in scope.get("headers", ()) if k == b"accept"), b"")
    page = b"text/html" in accept
    body, kind = (_PAGE, b"text/html; charset=utf-8") if page else (_REPORT, b"application/json")
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", kind), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


class LifespanOwner(Starlette):
    """An app whose lifespan must run for it to serve MCP (``GatewayApp``): ``running``
    while it does; ``endpoints``: the MCP endpoint's paths, refused (``not_running``)
    meanwhile.  ``entered``: its lifespan began (``/ready`` says ``starting`` from
    then, ``not_running`` before: a mounting app that never runs it)."""

    running = False
    entered = False
    endpoints: tuple[str, ...] = ()
    reports: tuple[str, ...] = ()  # refused (``not_running_report``) until ``entered``

    @property
    def lifespan(self) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
        """This app's lifespan, for an app that mounts it to run as its own
        (``Starlette(..., lifespan=gateway_app.lifespan)``), as FastMCP's apps offer."""
        return self.router.lifespan_context
