"""Live updates: the gateway's event bus as Server-Sent Events, and the Live page.

``GET /events`` subscribes to ``telemetry.events.EventBus`` for as long as the browser
listens and writes each event as ``event: <kind>`` / ``data: <json>``; a viewer
restricted to some servers gets only events about those (and events naming no server).
A slow browser loses its oldest events (the bus's bounded queue) and is told how many
(``event: dropped``).  The page script (``static/app.js``) appends events to the Live
page and fires ``gw-live`` on the page so htmx parts (server cards, a server's status)
refresh themselves.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from fast_mcp_gateway.telemetry.events import Event
from fast_mcp_gateway.ui.core import Page, Ui

HEARTBEAT = 15.0  # seconds: keeps proxies from closing an idle stream


def frame(event: Event) -> str:
    data = json.dumps({"seq": event.seq, "at": event.at, "kind": event.kind,
                       **event.payload}, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"


async def events(page: Page) -> Response:
    viewer = page.viewer

    def shown(event: Event) -> bool:
        server = event.payload.get("server")
        return server is None or viewer.may_use(str(server))

    async def stream() -> AsyncIterator[str]:
        with page.ui.bus.subscribe() as sub:
            yield ": connected\nretry: 2000\n\n"
            seen_drops = 0
            while True:
                event = None
                with anyio.move_on_after(HEARTBEAT):
                    event = await sub.get()
                    if event is None:  # the bus closed: the gateway is stopping
                        return
                if sub.dropped > seen_drops:
                    yield f"event: dropped\ndata: {sub.dropped - seen_drops}\n\n"
                    seen_drops = sub.dropped
                if event is None:
                    yield ": heartbeat\n\n"
                elif shown(event):
                    yield frame(event)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def live_page(page: Page) -> Response:
    return page.render("live.html")


def routes(ui: Ui) -> list[Route]:
    return [Route("/events", ui.page(events), methods=["GET"]),
            Route("/live", ui.page(live_page), methods=["GET"])]
