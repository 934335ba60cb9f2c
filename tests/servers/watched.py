"""A handshake-era upstream that records the resource subscriptions it is asked for
(tests/test_subscription_lifetimes.py).

``watch://counter`` is updated by ``bump`` for its subscribers; ``seen(count)`` answers
the ``resources/subscribe`` and ``resources/unsubscribe`` requests it got, in order
(``subscribe <uri>``, ``unsubscribe <uri>``), once there are at least ``count``: it
waits on an event, never on time.  Run with the gateway's ``protocol: legacy``;
``--refuse-unsubscribe``: each unsubscribe is recorded, then refused with an error;
``--hold-second-subscribe``: the second subscribe is recorded, then answered only once
the tool ``let_subscribe`` is called (``--hold-first-subscribe``: the first);
``--refuse-second-subscribe``: the second
subscribe is recorded, then refused with an error.  ``WATCHED_URI`` (environment):
the resource's URI, if not ``watch://counter``; ``WATCHED_TEMPLATE``: a resource
template it serves too (``file:///notes/{name}``), whose resources ``bump(uri=...)``
updates; ``WATCHED_RELEASE``: a file it waits for before it serves (a server slow to
start until the test creates it: no timing).
"""

import os
import sys
import time
from pathlib import Path
from typing import Any

if release := os.environ.get("WATCHED_RELEASE"):
    while not Path(release).exists():
        time.sleep(0.05)

import anyio  # after the wait for the release file, as a slow import
import mcp_types as types
from fastmcp import FastMCP
from mcp.shared.exceptions import MCPError

mcp = FastMCP("watched")
seen: list[str] = []
more = {"event": anyio.Event()}
subscribers: list[Any] = []
URI = os.environ.get("WATCHED_URI", "watch://counter")


@mcp.resource(URI)
def counter() -> str:
    return str(len(seen))


if TEMPLATE := os.environ.get("WATCHED_TEMPLATE"):
    @mcp.resource(TEMPLATE)
    def templated(name: str) -> str:
        return f"note {name}"


@mcp.tool
async def bump(uri: str = URI) -> str:
    for connection in subscribers:
        await connection.send_resource_updated(uri)
    return "bumped"


@mcp.tool(name="seen")
async def seen_requests(count: int = 0) -> list[str]:
    with anyio.fail_after(60):
        while len(seen) < count:
            await more["event"].wait()
    return list(seen)


def _saw(what: str) -> None:
    seen.append(what)
    more["event"].set()
    more["event"] = anyio.Event()


held = anyio.Event()
HELD = 1 if "--hold-first-subscribe" in sys.argv else \
    2 if "--hold-second-subscribe" in sys.argv else 0   # the subscribe held, by number


async def _on_subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    subscribers.append(ctx.session._connection)
    _saw(f"subscribe {params.uri}")
    if len(seen) == HELD:
        await held.wait()
    if "--refuse-second-subscribe" in sys.argv and len(seen) == 2:
        raise MCPError(code=types.INTERNAL_ERROR, message="subscribe refused on purpose")
    return types.EmptyResult()


if HELD:
    @mcp.tool
    def let_subscribe() -> str:
        held.set()
        return "answered"


async def _on_unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    _saw(f"unsubscribe {params.uri}")
    if "--refuse-unsubscribe" in sys.argv:
        raise MCPError(code=types.INTERNAL_ERROR, message="unsubscribe refused on purpose")
    subscribers.clear()
    return types.EmptyResult()


low = mcp._mcp_server
low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, _on_subscribe)
low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams,
                        _on_unsubscribe)


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    mcp.run(show_banner=False, log_level="WARNING")
