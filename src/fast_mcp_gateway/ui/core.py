"""What every dashboard page shares: templates, the viewer check, CSRF, error pages.

``Ui`` holds the gateway's ``AdminContext`` (every page reads the same admin
operations and store queries as the REST API, in-process), the ``DashboardAuth``, the
event bus and the Jinja environment (autoescaping on: anything an upstream or a user
wrote -- a server name, a tool description, an error text -- is shown as text).

``Ui.page(handler, scope=..., mutate=...)`` wraps a handler into a Starlette endpoint:
no viewer -> the login page (303) or 401; a missing scope -> 403 (the action is also
hidden in the page: hiding is for people, the 403 is the rule); ``gateway.admin``
modes apply as on REST; a mutation must be a POST carrying the viewer's CSRF token;
``GatewayError`` becomes an error page with the REST API's status for it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Message, Receive, Send
from starlette.types import Scope as ASGIScope

from fast_mcp_gateway.admin.context import Actor, AdminContext, shieldable
from fast_mcp_gateway.admin.invalid import unread
from fast_mcp_gateway.config.auth import Scope
from fast_mcp_gateway.errors import GatewayError, UnknownServer
from fast_mcp_gateway.http.errors import api_error
from fast_mcp_gateway.telemetry.events import EventBus, Subscription
from fast_mcp_gateway.ui import views
from fast_mcp_gateway.ui.session import CSRF_FIELD, DashboardAuth, Viewer, csrf_ok
from fast_mcp_gateway.upstream.failures import reword_remedies

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
NONE = "\N{EN DASH}"  # shown for a value not known (yet)
Handler = Callable[["Page"], Awaitable[Response]]
MAX_FORM = 1 << 20  # a server config or tool arguments, never bulk data


@dataclass
class Page:
    """One authenticated dashboard request, as a handler sees it."""

    ui: Ui
    request: Request
    viewer: Viewer
    form: FormData | None = None

    @property
    def ctx(self) -> AdminContext:
        return self.ui.ctx

    @property
    def actor(self) -> Actor:
        return Actor(f"dashboard:{self.viewer.principal.name}",
                     servers=self.viewer.principal.servers)

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else default

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return self.ui.render(self.request, template, self.viewer, status_code, **context)

    def servers(self) -> list[str]:
        """The server names this viewer may see, in the gateway's order."""
        return [n for n in self.ctx.manager.services if self.viewer.may_use(n)]


@dataclass(eq=False)
class Held:
    """One open live stream of a caller (``ui/live.py``): its subscription;
    ``displaced``: ended by a newer stream of the caller."""

    sub: Subscription
    displaced: bool = False


class Ui:
    """The dashboard's shared state (one per served dashboard)."""

    def __init__(self, ctx: AdminContext, auth: DashboardAuth, bus: EventBus, *,
                 mode: str = "http") -> None:
        self.ctx, self.auth, self.bus, self.mode = ctx, auth, bus, mode
        # Live streams open per caller, oldest first (``ui/live.py`` bounds them).
        self.live_streams: dict[tuple[str, str], list[Held]] = {}
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(ms=_ms, pct=_pct, ago=_ago, secs=_secs, when=_when,
                                tojson_pretty=_pretty,
                                with_param=_with_param, for_dashboard=self._for_dashboard)
        self.env.globals.update(urlencode=urlencode, views=views)

    def sessions_changed(self, since: int) -> None:
        """Sessions may have ended since ``auth.generation`` was ``since`` (a log out, a
        login pushing out an older session): every live stream checks its own at once,
        as it would at its next event or heartbeat (up to 15 s later: the other tabs
        of a browser that logged out stayed "live", and their stream open)."""
        if self.auth.generation != since:
            for held in [h for streams in self.live_streams.values() for h in streams]:
                held.sub.wake()

    def for_dashboard(self, text: str, base: str, viewer: Viewer | None) -> str:
        """``text`` (a server's last error, a refusal) with its remedies -- the admin
        tool and REST call that enable or restart a server -- pointing at the button
        on the server's page instead; a viewer without the button is told who has it,
        and under ``gateway.admin: read_only`` that changes are off."""
        read_only = not self.ctx.options.allows_admin("mutate")

        def words(action: str, server: str) -> str:
            button = _BUTTONS[action]
            at = f"{base}/servers/{quote(server, safe='')}"
            if read_only:
                return (f"the {button} button on its page ({at}), once 'gateway.admin' in "
                        "the config file allows changes")
            if viewer is not None and viewer.admin:
                return f"the {button} button under Actions on its page ({at})"
            return f"ask an admin (the {button} button on its page, {at})"

        text = reword_remedies(text, words)
        if viewer is None or not viewer.admin or read_only:
            return text  # no Sign in button for them: the tool and the CLI
        return _SIGN_IN.sub(lambda found: f"press the Sign in button on its page ({base}"
                            f"/servers/{quote(found[1], safe='')}), or {found[0]}", text)

    @pass_context
    def _for_dashboard(self, context: Context, text: str | None) -> str | None:
        return None if text is None else self.for_dashboard(text, context.get("base", ""),
                                                            context.get("viewer"))

    def render(self, request: Request, template: str, viewer: Viewer | None,
               status_code: int = 200, **context: Any) -> HTMLResponse:
        base = str(request.scope.get("root_path", ""))
        firing = 0
        if viewer is not None and self.ctx.alerts is not None:  # a snapshot: no await
            firing = sum(a.state == "firing" and viewer.may_use(a.server)
                         for a in self.ctx.alerts.alerts.snapshot())
        html = self.env.get_template(template).render(
            base=base, viewer=viewer, request=request, mode=self.mode, firing_alerts=firing,
            read_only=not self.ctx.options.allows_admin("mutate"),
            needs_login=self.auth.needs_login, now=time.time(), **context)
        return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)

    def page(self, handler: Handler, *, scope: Scope = "tools", mutate: bool = False
             ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            viewer = await self.auth.viewer(request)
            if viewer is None:
                if request.method == "GET":
                    base = str(request.scope.get("root_path", ""))
                    target = request.url.path + (f"?{request.url.query}"
                                                 if request.url.query else "")
                    return RedirectResponse(f"{base}/login?{urlencode({'next': target})}", 303)
                return self.error(request, None, 401, "Log in first: your session ended or "
                                  "the token is no longer valid.")
            form: FormData | None = None
            if request.method == "POST":
                form = await bounded_form(request, MAX_FORM)
                if form is None:
                    return self.error(request, viewer, 413, "The form is too large.")
                token = form.get(CSRF_FIELD)
                if not csrf_ok(viewer.csrf, request, token if isinstance(token, str) else None):
                    return self.error(request, viewer, 403, "The form's security token is "
                                      "missing or stale (CSRF check): reload the page and "
                                      "try again.")
            if not viewer.principal.has(scope):
                principal = viewer.principal
                held = (f"{principal.holds}." if principal.kind == "jwt" else
                        f"you are '{principal.name}' with "
                        f"{', '.join(sorted(principal.scopes)) or 'no scopes'}.")
                return self.error(request, viewer, 403, f"This needs scope '{scope}'; {held}")
            if scope == "admin" and not self.ctx.options.allows_admin(
                    "mutate" if mutate else "read"):
                return self.error(request, viewer, 403, "This is turned off by 'gateway.admin: "
                                  f"{self.ctx.options.admin}' in the config file.")
            page = Page(self, request, viewer, form)
            try:  # a change ends what it stored even when uvicorn cancels the request
                return await (shieldable(functools.partial(handler, page)) if mutate
                              else handler(page))
            except GatewayError as exc:
                if isinstance(exc, UnknownServer):  # the viewer is told of its servers only
                    exc = exc.seen_by(viewer.may_use, viewer.principal.no_server,
                                      unread(self.ctx))
                err = api_error(exc)
                return self.error(request, viewer, err.status, err.message)
            except Exception:  # a bug: logged in full here, never detailed on the page
                logger.exception("dashboard %s %s failed", request.method, request.url.path)
                return self.error(request, viewer, 500, "Internal error; the gateway's log "
                                  "has the details.")

        return endpoint

    def error(self, request: Request, viewer: Viewer | None, status: int, message: str
              ) -> HTMLResponse:
        return self.render(request, "error.html", viewer, status, status=status,
                           message=message)

    async def unknown_page(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        """What the dashboard's router answers a path none of its pages serves: to a
        browser (``Accept: text/html``) the dashboard's own 404 page, with the viewer's
        navigation if logged in; to anything else the route group's JSON 404."""
        request = Request(scope, receive)
        if "text/html" not in request.headers.get("accept", ""):
            raise HTTPException(404)
        viewer = await self.auth.viewer(request)
        await self.error(request, viewer, 404, f"There is no dashboard page at "
                         f"{request.url.path}: check the address, or start from the "
                         "overview.")(scope, receive, send)


async def bounded_form(request: Request, limit: int) -> FormData | None:
    """``request``'s form, or None when its body is over ``limit`` bytes, as declared or
    as it arrives (a chunked body declares no length).  starlette's parser holds a
    urlencoded form whole, up to 1000 fields of ``max_part_size`` each: the login form,
    which anyone may post, let eight requests without a token take 430 MB."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, replay).form(max_part_size=limit)


_SECURITY_HEADERS = {
    # Everything is served by the gateway itself: no inline script, no other origin.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it Chromium sends "Origin: null" with form posts, which
    # the Host/Origin guard (rightly) refuses.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


_BUTTONS = {"enable": "Enable", "restart": "Restart / reconnect"}  # server.html's labels
_SIGN_IN = re.compile(r"call the gateway_sign_in tool(?: with server '[^']+',)? or run "
                      r"'mcp-gateway login ([^'\s]+)'")  # ``SignInRequired``'s remedies


def _ms(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f}%"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _secs(seconds: float | None) -> str:
    """A duration setting (an alert window, an evaluation period) as written by people."""
    if seconds is not None and 0 < seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds is not None and seconds < 60:
        return f"{seconds:g} s"
    return _ago(seconds)


def _when(at: float | None) -> str:
    return NONE if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _with_param(params: Mapping[str, str], key: str, value: str) -> dict[str, str]:
    return {**{k: v for k, v in params.items() if k != key}, key: value}


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=isinstance(value, Mapping))
