"""The dashboard's assembly: its routes as one group of the HTTP app, or its own app.

``dashboard_group`` is what ``Gateway.http_app`` mounts at ``/ui`` (Host/Origin
guarded, like the REST API); ``dashboard_app`` is the same routes as a standalone
Starlette app, which a stdio gateway serves on loopback beside stdio
(``ui/standalone.py``).  Static files (CSS, the page script, vendored htmx, the icon)
come from ``ui/static``: no CDN, no build step.  The icon is also ``/favicon.ico``
(``favicon_group``), which browsers ask for on every page: served without a token or a
Host check (it is public, like ``/health``), and without building the dashboard.

In the HTTP app the dashboard is built on its first request (``LazyDashboard``): its
pages, Jinja2 and the templates' environment cost an HTTP gateway ~3 MB of resident
memory, which a gateway whose dashboard nobody opens never pays.  This module imports
none of it until then.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.http.access import Access
from fast_mcp_gateway.http.app import RouteGroup
from fast_mcp_gateway.http.lazy_app import LazyApp
from fast_mcp_gateway.http.public_prefix import Prefixed, PublicPrefix
from fast_mcp_gateway.telemetry.events import EventBus

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    from fast_mcp_gateway.ui.core import Ui
    from fast_mcp_gateway.ui.session import DashboardAuth

PREFIX = "/ui"
FAVICON = Path(__file__).parent / "static" / "favicon.ico"


@functools.cache
def _icon() -> bytes:
    return FAVICON.read_bytes()  # 332 bytes, read once


async def favicon(_request: Request) -> Response:
    """The gateway's icon (an ICO), cached by browsers for a day."""
    return Response(_icon(), media_type="image/x-icon",
                    headers={"Cache-Control": "public, max-age=86400"})


def favicon_group() -> RouteGroup:
    """``/favicon.ico`` at the root of the HTTP app (no prefix: no guard, no token)."""
    return RouteGroup("favicon", [Route("/favicon.ico", favicon, methods=["GET"])])


def dashboard_routes(ui: Ui) -> list[BaseRoute]:
    from starlette.staticfiles import StaticFiles

    from fast_mcp_gateway.ui import actions, alerts, inspector, live, logs, pages, sign_in
    from fast_mcp_gateway.ui.core import HERE

    return [*pages.routes(ui), *actions.routes(ui), *live.routes(ui), *logs.routes(ui),
            *inspector.routes(ui), *alerts.routes(ui), *sign_in.routes(ui),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static")]


LazyDashboard = LazyApp
"""The dashboard's ``LazyApp``: built on its first request, once."""


def dashboard_group(ctx: AdminContext, bus: EventBus, *, secure_cookies: bool = False
                    ) -> Callable[[Access], RouteGroup]:
    """The dashboard as a route group of the gateway's HTTP app, at ``/ui``, for the
    app's ``Access`` (the same tokens and anonymous policy as the REST API), built on
    its first request (``LazyDashboard``)."""

    def group(access: Access) -> RouteGroup:
        def build() -> ASGIApp:
            from fast_mcp_gateway.ui.core import Ui
            from fast_mcp_gateway.ui.session import DashboardAuth

            auth = DashboardAuth.of(access, secure_cookies=secure_cookies,
                                    public_url=ctx.settings.public_url,
                                    instance=ctx.settings.instance_id)
            ui = Ui(ctx, auth, bus)
            # Under a proxy's path (MCP_GATEWAY_PUBLIC_URL's), its links and cookie are too.
            return Prefixed(Router(routes=dashboard_routes(ui), default=ui.unknown_page),
                            PublicPrefix(ctx.settings.public_url))

        return RouteGroup("dashboard", [Mount("", app=LazyDashboard(build))], prefix=PREFIX)

    return group


def dashboard_app(ctx: AdminContext, auth: DashboardAuth, bus: EventBus,
                  middleware: list[Middleware]) -> Starlette:
    """The dashboard alone (stdio mode), mounted at ``/ui`` with ``middleware``."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException

    from fast_mcp_gateway.http.errors import http_error
    from fast_mcp_gateway.ui.core import Ui

    ui = Ui(ctx, auth, bus, mode="stdio")
    app = Starlette(routes=[Route("/favicon.ico", favicon, methods=["GET"]),
                            Mount(PREFIX, app=Router(routes=dashboard_routes(ui),
                                                     default=ui.unknown_page))],
                    middleware=middleware, exception_handlers={HTTPException: http_error})
    app.router.default = _outside  # was http_error's "start from /": nothing is there
    return app


async def _outside(scope: Scope, receive: Receive, send: Send) -> None:
    """A path outside ``/ui`` on the stdio dashboard's address, which serves nothing
    else: a 404 saying where the dashboard is."""
    from fast_mcp_gateway.http.errors import ApiError

    method, path = scope.get("method", "GET"), scope["path"]
    await ApiError(404, "not_found", f"{method} {path}: no such path; the dashboard is at "
                   f"{PREFIX}/", {"path": path}).response()(scope, receive, send)
