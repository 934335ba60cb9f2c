"""Live updates: the gateway's event bus as Server-Sent Events, and the Live page.

``GET /events`` subscribes to ``telemetry.events.EventBus`` for as long as the browser
listens and writes each event as ``event: <kind>`` / ``data: <json>``; a viewer
restricted to some servers gets only events about those (and events naming no server),
and a viewer without scope admin only its own calls' events (``Principal.own_records``).
The stream follows the session: an event is sent only under a check of it made since
the last thing that could end or narrow a session (``DashboardAuth.generation``: a log
out, a session pushed out by the per-caller cap, a token refused, a reload changing
``gateway.auth``) and at most ``RECHECK`` seconds ago (for what time ends: a JWT's
expiry, the session's lifetime); every heartbeat checks it too.  A log out, or a login
pushing out an older session, wakes every stream to check at once
(``Ui.sessions_changed``): the other tabs of a browser that logged out go to the login
page then, not at the next heartbeat.  A token a reload removed ends the stream at the
next event, which is not sent
(``event: ended``: the page reloads, and the login page says why), an expired JWT
within ``RECHECK``, and a reload narrowing the token's servers narrows what it is sent
from the next event on.  A state change's detail (a server's last error) points at the
dashboard's buttons (``Ui.for_dashboard``), as the pages do.
One caller may keep ``MAX_STREAMS`` streams open: each one costs every published event a
queue append and a wake-up on the event loop.  A browser opens one for all its tabs
(``static/live-worker.js``, a SharedWorker: a stream per tab took the 6 connections a
browser opens to a host, and its 7th tab never loaded), so the bound is met by programs
only.  Past it a caller's newest stream ends its oldest (``event: displaced``, saying
why; the page stops, and reconnects only when it is used again -- shown, focused,
clicked -- never by itself, which would have two pages end each other's stream for
ever), as its 33rd login ends its oldest
session: refused instead (a 429), a program holding 32 streams -- without ``auth``, any
local one: every viewer is the one anonymous caller -- kept the operator's dashboard
from live updates, and reloading the page, which the page advised, changed nothing.
A slow browser loses its oldest events (the bus's bounded queue) and is told how many
(``event: dropped``).  The page script (``static/app.js``) appends events to the Live
page and fires ``gw-live`` on the page so htmx parts (server cards, a server's status)
refresh themselves.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from fast_mcp_gateway.telemetry.events import Event, Subscription
from fast_mcp_gateway.ui.core import Held, Page, Ui
from fast_mcp_gateway.ui.session import Viewer

HEARTBEAT = 15.0  # seconds: keeps proxies from closing an idle stream
RECHECK = 1.0  # seconds: how old the session check an event is sent under may be, for
# what time alone ends (a JWT's expiry); whatever ends a session at once (a log out, a
# reload) moves ``DashboardAuth.generation``, compared before every event
# Streams one caller may have open (one per dashboard tab).  Each is fed every event on
# the event loop, in the call path's own observer: a token that opened thousands made
# every call of every caller pay for each of them.
MAX_STREAMS = 32


def frame(event: Event, reword: Callable[[str], str] | None = None) -> str:
    """``event`` as an SSE frame; ``reword`` (``Ui.for_dashboard``) words the remedies
    in a transition's detail (a server's last error) for the dashboard."""
    payload = event.payload
    if reword is not None and isinstance(detail := payload.get("detail"), str):
        payload = {**payload, "detail": reword(detail)}
    data = json.dumps({"seq": event.seq, "at": event.at, "kind": event.kind,
                       **payload}, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"


async def events(page: Page) -> Response:
    viewer: Viewer | None = page.viewer
    checked = time.monotonic()
    base = str(page.request.scope.get("root_path", ""))
    open_streams = page.ui.live_streams
    who = (page.viewer.principal.kind, page.viewer.principal.name)

    def shown(event: Event) -> bool:
        server = event.payload.get("server")
        if event.kind == "call" and viewer is not None \
                and not viewer.principal.sees_records_of(
                    event.payload.get("client"), event.payload.get("client_kind")):
            return False
        return viewer is not None and (server is None or viewer.may_use(str(server)))

    async def stream() -> AsyncIterator[str]:
        nonlocal viewer, checked
        auth = page.ui.auth
        # The generation the last check was made at; None: the page's own check, made
        # before this was read (a reload during it would go unseen), so the first event
        # checks again.
        seen: int | None = None
        with page.ui.bus.subscribe() as sub, _held(open_streams, who, sub) as mine:
            yield ": connected\nretry: 2000\n\n"
            seen_drops = 0
            while True:
                event = None
                with anyio.move_on_after(HEARTBEAT):
                    event = await sub.get()  # None: closed, or woken (a session ended)
                    if sub.closed and event is None and not mine.displaced:  # the bus
                        return  # closed: the gateway is stopping
                if mine.displaced:  # before any event still queued for it
                    said = json.dumps({"message": displaced(who[1])})
                    yield f"event: displaced\ndata: {said}\n\n"
                    return
                generation = auth.generation  # an int compare per event, no verify
                if generation != seen or time.monotonic() - checked >= RECHECK \
                        or event is None:
                    # The session as it is now: logged out, pushed out, its JWT expired or
                    # its token removed by a reload ends the stream before this event is
                    # sent; narrowed servers narrow it.
                    viewer, checked = await auth.viewer(page.request), time.monotonic()
                    seen = generation  # read before the check: a change during it recurs
                    if viewer is None:
                        yield "event: ended\ndata: {}\n\n"
                        return
                if sub.dropped > seen_drops:
                    yield f"event: dropped\ndata: {sub.dropped - seen_drops}\n\n"
                    seen_drops = sub.dropped
                if event is None:
                    yield ": heartbeat\n\n"
                elif shown(event):
                    yield frame(event, functools.partial(page.ui.for_dashboard, base=base,
                                                         viewer=viewer))

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def displaced(name: str) -> str:
    """Why a stream of ``name`` was ended by a newer one (``event: displaced``)."""
    return (f"live updates stopped: {MAX_STREAMS} newer live streams of '{name}' were "
            "opened (by other browsers, or programs), the most one caller may hold; "
            "they resume when this page is used again (or click here), ending the "
            "oldest of those")


@contextlib.contextmanager
def _held(streams: dict[tuple[str, str], list[Held]], who: tuple[str, str],
          sub: Subscription) -> Iterator[Held]:
    """``sub`` held by ``who``, oldest first; past ``MAX_STREAMS`` the oldest is ended."""
    mine = Held(sub)
    held = streams.setdefault(who, [])
    held.append(mine)
    while len(held) > max(1, MAX_STREAMS):
        oldest = held.pop(0)
        oldest.displaced = True
        oldest.sub.close()  # its ``get`` returns None: it says why and ends
    try:
        yield mine
    finally:
        if mine in held:
            held.remove(mine)
        if not held and streams.get(who) is held:
            del streams[who]


async def live_page(page: Page) -> Response:
    return page.render("live.html")


def routes(ui: Ui) -> list[Route]:
    return [Route("/events", ui.page(events), methods=["GET"]),
            Route("/live", ui.page(live_page), methods=["GET"])]
