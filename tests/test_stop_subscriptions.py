"""A subscribed host still connected when an HTTP gateway stops: the upstream is let go.

The SDK unwinds a closing connection's exit stack within 5 s, where the hub lets go of
what its host held (``FrontHub._left``: the upstream unsubscribed within
``LET_GO_BUDGET``, 4 s).  At a stop the gateway closes its hosts' sessions before it
stops its servers (the session manager's task group ends inside the server's
lifespan, whose providers stop the upstreams after): a remote upstream, which outlives
the gateway, gets the unsubscribe of a host that was still subscribed, not a
subscription nobody holds.  The gateway's own uvicorn server (``http/serving.py``),
real HTTP on 127.0.0.1 both sides.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client, FastMCP

from fast_mcp_gateway.http.serving import uvicorn_server
from tests.fixtures import WITHIN, make_gateway, serve_http, until

pytestmark = pytest.mark.anyio


def recording_server(seen: list[str]) -> FastMCP[Any]:
    """A handshake-era upstream recording the subscribe and unsubscribe it gets."""
    mcp = FastMCP("kept")

    @mcp.resource("kept://counter")
    def counter() -> str:
        return "0"

    async def on_subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        seen.append(f"subscribe {params.uri}")
        return types.EmptyResult()

    async def on_unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams
                             ) -> types.EmptyResult:
        seen.append(f"unsubscribe {params.uri}")
        return types.EmptyResult()

    low = mcp._mcp_server
    low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
    low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams,
                            on_unsubscribe)
    return mcp


async def test_a_host_subscribed_at_a_stop_is_unsubscribed_upstream(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    # No SSE (answers as JSON, no stream of its own): sse-starlette ends every SSE
    # stream of the process once a uvicorn server in it exits -- the gateway's, here.
    app = recording_server(seen).http_app(json_response=True, stateless_http=True)
    async with serve_http(app) as upstream:
        gateway = make_gateway({"kept": {"url": f"{upstream}/mcp", "protocol": "legacy"}})
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        server = uvicorn_server(gateway.http_app("http"), gateway.settings)
        stopped = anyio.Event()

        async def serve() -> None:
            await server.serve([sock])
            stopped.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await until(lambda: server.started)
            await gateway.startup.attempted.wait()
            host = Client(f"http://127.0.0.1:{port}/mcp", mode="legacy")
            async with host:
                await host.session.subscribe_resource("kept://kept/counter")
                assert seen == ["subscribe kept://counter"]
                server.should_exit = True  # the gateway stops, the host still subscribed
                with anyio.fail_after(WITHIN):
                    await stopped.wait()
        sock.close()
    assert seen == ["subscribe kept://counter", "unsubscribe kept://counter"]
    # Answered, within the SDK's bound on the closing connection's cleanup; and the
    # host's stream, ended by the stop, was completed (no "ASGI callable returned
    # without completing response" at ERROR).
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert not [m for m in said if m[0] == "ERROR" or "could not unsubscribe" in m[1]], said
