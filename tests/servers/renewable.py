"""A stateful streamable-HTTP upstream that can be restarted on the same port
(tests/test_session_renewal.py): ``python renewable.py PORT_FILE [PORT]`` serves
``/mcp`` on 127.0.0.1 (``PORT``, else a free one, written to ``PORT_FILE`` once it
listens).  A restart forgets every session, as any server restarted does.

``add`` is read-only, ``bump`` is not (it counts its runs in this process);
``runs`` answers the tools/call and resources/subscribe requests this process ran
(``bump``, ``subscribe <uri>``); ``forget`` makes it forget every session without a
restart (as an expiry does: no downtime, so the next request on one is answered 404),
and with ``refuse=True`` also refuse every new one (503 "Too many open sessions").
"""

import socket
import sys
from typing import Any

import mcp_types as types
from fastmcp import FastMCP

mcp = FastMCP("renewable")
ran: list[str] = []
subscribers: list[Any] = []


@mcp.tool(annotations={"readOnlyHint": True})
def add(a: int, b: int) -> int:
    return a + b


@mcp.tool
def bump() -> int:
    ran.append("bump")
    return ran.count("bump")


@mcp.tool
def runs() -> list[str]:
    return ran


@mcp.tool
def forget(refuse: bool = False) -> str:
    for route in app.routes:  # the session manager, behind the /mcp route
        for part in (getattr(route, "app", None), getattr(route, "endpoint", None)):
            manager = getattr(part, "session_manager", None)
            if manager is not None:
                manager._server_instances.clear()  # (this call's answer is on its way)
                if refuse:
                    manager.max_sessions = 0
                return "forgotten"
    return "no session manager found"


@mcp.resource("watch://counter")
def counter() -> str:
    return str(ran.count("bump"))


async def on_subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    ran.append(f"subscribe {params.uri}")
    subscribers.append(ctx.session._connection)
    return types.EmptyResult()


async def on_unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    subscribers.clear()
    return types.EmptyResult()


low = mcp._mcp_server
low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)
app = mcp.http_app(path="/mcp")


def main() -> None:
    import anyio
    import uvicorn

    port_file, port = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    with open(port_file, "w") as out:
        out.write(str(sock.getsockname()[1]))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    anyio.run(server.serve, [sock])


if __name__ == "__main__":
    main()
