"""The dashboard's reading pages: login, overview, server detail.

Every page reads snapshots (``admin.servers``) and the store (``admin.history``,
``ui.views``); a viewer restricted to some servers sees only those (others answer
404, as on REST).  Parts of a page that refresh live (``/partials/...``) are the same
templates rendered alone; htmx fetches them when the live stream reports a change.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fast_mcp_gateway.admin import history, servers
from fast_mcp_gateway.admin.invalid import invalid_of
from fast_mcp_gateway.admin.status import own_sessions
from fast_mcp_gateway.errors import UnknownServer
from fast_mcp_gateway.http.auth import quotable
from fast_mcp_gateway.store import StorageError
from fast_mcp_gateway.ui import views
from fast_mcp_gateway.ui.alerts import active_alerts
from fast_mcp_gateway.ui.core import Page, Ui, bounded_form
from fast_mcp_gateway.ui.session import CSRF_FIELD, CSRF_HEADER, NO_ACCESS, csrf_ok

STATUSES = ("success", "error", "timeout", "rejected", "cancelled")
PAGE_SIZES = (20, 50, 100)


def status_problem(status: str) -> str | None:
    """What REST answers (422) a ``status`` filter that is none of ``STATUSES``, in its
    words; ``None`` for a known one or none.  The pages listed every call for it, as if
    unfiltered."""
    if not status or status in STATUSES:
        return None
    named = ", ".join(f"'{s}'" for s in STATUSES[:-1]) + f" or '{STATUSES[-1]}'"
    return f"invalid query: status must be {named}"


def visible(page: Page) -> set[str] | None:
    servers_ = page.viewer.principal.servers
    return None if servers_ is None else set(servers_)


def server_name(page: Page, name: str) -> str:
    """``name`` if it exists (running, or not for its invalid config entry) and the
    viewer may see it, else 404 (alike), naming the servers the viewer may see, as REST
    and the admin tools do."""
    known = name in page.ctx.manager.services or name in invalid_of(page.ctx)
    if known and page.viewer.may_use(name):
        return name
    raise UnknownServer(name, page.ctx.manager.services).seen_by(page.viewer.may_use,
                                                               page.viewer.principal.no_server)


def limit_of(page: Page) -> int:
    try:
        value = int(page.query("limit", "20"))
    except ValueError:
        value = 20
    return value if value in PAGE_SIZES else 20


# -- login -------------------------------------------------------------------------


def _safe_next(base: str, target: str) -> str:
    # Only a path of this dashboard: never an open redirect to another site.
    if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + "/"


async def login(ui: Ui, request: Request) -> Response:
    base = str(request.scope.get("root_path", ""))
    if not ui.auth.needs_login:
        return RedirectResponse(base + "/", 303)
    next_ = _safe_next(base, request.query_params.get("next", ""))

    def form(status: int = 200, error: str | None = None) -> Response:
        return ui.render(request, "login.html", None, status, next=next_,
                         csrf=ui.auth.login_csrf, error=error,
                         one_time=ui.auth.links is not None,
                         link_minutes=round(ui.auth.links.ttl / 60) if ui.auth.links else 0)

    if request.method == "GET":
        # A one-time link (stdio) carries its token in the query: spend it, set the
        # cookie and go on to an address without it, so history keeps no live token.
        token = request.query_params.get("token")
        if not token:
            held = request.cookies.get(ui.auth.cookie_name(request), "")
            ended = ui.auth.ended_because(held)
            return form(error=ui.auth.elsewhere(held) if ended is None
                        else f"Your session ended: {ended}. Log in again.")
        if ui.auth.links is None:
            # A gateway token in the address: a link on any page would log a browser in
            # as the token's owner (no CSRF check on a GET), and the bearer token would
            # stay in its history.  Only a one-time link's token is taken from there.
            return form(400, "A token in the address is not taken: paste it into this "
                             "form instead.")
        token = token.strip()
    else:
        data = await bounded_form(request, 1 << 16)  # three short fields; anyone may post
        if data is None:
            return form(413, "The form is too large.")
        given = str(data.get(CSRF_FIELD) or "")
        if not csrf_ok(ui.auth.login_csrf, request, given):
            return form(403, ui.auth.login_refused(request.headers.get(CSRF_HEADER)
                                                   or given))
        token = _token_of(str(data.get("token") or ""))
        next_ = _safe_next(base, str(data.get("next") or next_))
    generation = ui.auth.generation
    cookie, problem = await ui.auth.redeem(token)
    ui.sessions_changed(generation)  # a login may push out an older session
    if cookie is None:
        # A valid token granting no scope is a 403 (RFC 6750's insufficient_scope).
        scopeless = (problem or "").startswith(NO_ACCESS)
        refused = form(403 if scopeless else 401, problem)
        if ui.auth.links is None and token:  # a bearer token was refused: RFC 6750's words
            error = "insufficient_scope" if scopeless else "invalid_token"
            refused.headers["www-authenticate"] = (
                f'Bearer error="{error}", error_description="{quotable(problem or "")}"')
        return refused
    response = RedirectResponse(next_, 303)
    ui.auth.login(response, request, cookie)
    return response


def _token_of(text: str) -> str:
    # A whole one-time link pasted into the form is as good as its token.
    text = text.strip()
    if text.startswith(("http://", "https://")) and "token=" in text:
        return parse_qs(urlsplit(text).query).get("token", [""])[0]
    return text


async def logout(page: Page) -> Response:
    base = str(page.request.scope.get("root_path", ""))
    response = RedirectResponse(base + "/login", 303)
    generation = page.ui.auth.generation
    page.ui.auth.logout(response, page.request)
    page.ui.sessions_changed(generation)  # the other tabs' streams end now
    return response


# -- overview ----------------------------------------------------------------------


def window_of(page: Page) -> str:
    """The charts' window asked for: one of ``views.TRENDS`` (default and otherwise: the
    hour, which is also what the page then says it shows)."""
    window = page.query("window", "hour")
    return window if window in views.TRENDS else "hour"


async def overview(page: Page) -> Response:
    window = window_of(page)
    data = await views.overview(page.ctx, visible(page), window)
    return page.render("overview.html", data=data, window=window, views=views,
                       active=await active_alerts(page),
                       q=page.query("q"), state=page.query("state"),
                       health=page.query("health"))


async def cards(page: Page) -> Response:
    window = window_of(page)
    data = await views.overview(page.ctx, visible(page), window)
    return page.render("_cards.html", data=data, window=window, views=views,
                       q=page.query("q"), state=page.query("state"),
                       health=page.query("health"))


# -- server detail -----------------------------------------------------------------


async def detail_context(page: Page, name: str) -> dict[str, Any]:
    name = server_name(page, name)
    caller = page.viewer.principal
    detail = own_sessions(servers.server_detail(
        page.ctx, name, stderr_lines=40, may_use=page.viewer.may_use,
        servers=caller.servers), caller)
    window = window_of(page)
    status = page.query("status")
    cursor = page.query("cursor") or None
    calls = None
    health_log = None
    trend = None
    store_problem = None
    status_error = status_problem(status)
    if page.ctx.store is not None and status_error is None:
        try:  # an unreachable store costs the history, not the server's state and actions
            calls = await history.calls(page.ctx, server=name,
                                        status=status if status in STATUSES else None,  # type: ignore[arg-type]
                                        limit=limit_of(page), cursor=cursor,
                                        client=page.viewer.principal.own_records)
            health_log = await history.health_history(page.ctx, server=name, limit=20)
            trend = await views.trend(page.ctx, window, server=name)
        except StorageError as exc:
            store_problem = str(exc)
    return {"d": detail, "components": views.components(page.ctx, name, caller.servers),
            "calls": calls,
            "health_log": health_log, "trend": trend, "window": window, "status": status,
            "statuses": STATUSES, "views": views, "cursor": cursor,
            "store_problem": store_problem, "status_error": status_error,
            # An invalid entry's enabled flag can be recorded (``admin/invalid.py``).
            "keeps_flags": page.ctx.store is not None}


async def detail(page: Page) -> Response:
    name = page.request.path_params["name"]
    context = await detail_context(page, name)
    return page.render("server.html", 422 if context["status_error"] else 200, **context)


async def status_partial(page: Page) -> Response:
    name = server_name(page, page.request.path_params["name"])
    detail = servers.server_detail(page.ctx, name, 40, may_use=page.viewer.may_use,
                                   servers=page.viewer.principal.servers)
    return page.render("_status.html", d=own_sessions(detail, page.viewer.principal),
                       keeps_flags=page.ctx.store is not None)


def routes(ui: Ui) -> list[Route]:
    async def login_endpoint(request: Request) -> Response:
        return await login(ui, request)

    return [
        Route("/login", login_endpoint, methods=["GET", "POST"]),
        Route("/logout", ui.page(logout, mutate=True), methods=["POST"]),
        Route("/", ui.page(overview), methods=["GET"]),
        Route("/partials/cards", ui.page(cards), methods=["GET"]),
        Route("/servers/{name}", ui.page(detail), methods=["GET"]),
        Route("/partials/servers/{name}/status", ui.page(status_partial), methods=["GET"]),
    ]


__all__ = ["routes", "urlencode"]
