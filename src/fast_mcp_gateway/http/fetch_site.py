"""Requests a browser makes for a page of another site: refused ahead of the Origin guard.

The Host/Origin guard (``app.ExplainedGuard``) judges the ``Origin`` header, and a
browser sends none with a plain GET (an ``<img>``, a script tag, a link): any website
could make a visitor's browser run a REST read of a gateway without ``auth`` (under
``--allow-unauthenticated-admin``, ``GET /api/v1/debug/get-resource``: the read runs
and is recorded) although it cannot read the answer.  Browsers say where every request
comes from, GET included, in ``Sec-Fetch-Site`` (Fetch Metadata):

* no header (a program), ``same-origin``, ``none`` (typed, a bookmark): as before;
* ``cross-site`` and ``same-site`` (another port or subdomain of the same site): only
  with an ``Origin`` that ``MCP_GATEWAY_ALLOWED_ORIGINS`` lists (a web app allowed to
  use the gateway), never for the loopback origins the Origin guard lets through by
  default.  A page of another local web app (``http://127.0.0.1:3000``) is same-site
  with a gateway on ``127.0.0.1:8765``, and its ``fetch`` carries an ``Origin``: it
  went on to the Origin guard, which lets every loopback origin through.  It could not
  read the answer (the gateway sends no CORS headers), but the request ran: a REST read
  of a gateway without ``auth`` (``debug/get-resource``: an upstream's read, recorded),
  a dashboard page with the viewer's login cookie (``SameSite=Strict`` goes with
  same-site requests).  No page of another origin can use the gateway without CORS
  anyway (a bearer token or a JSON body needs a preflight it never answers), so
  refusing it unless listed stops no working use.

A refusal is the Origin guard's: 403 ``forbidden_origin``, worded alike.  The
dashboard (``navigable``) also takes a top-level navigation to one of its pages (a
link to it on another site): a GET that shows a page and changes nothing, and its login
cookie (``SameSite=Strict``) is not sent with it, so the viewer is not logged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway.config.origins import origin_forms
from fast_mcp_gateway.http.errors import ApiError

_OTHER_SITES = ("cross-site", "same-site")


class FetchSiteGuard:
    """The check above for one route group (``navigable``: the dashboard's pages)."""

    def __init__(self, allowed_origins: Sequence[str] | None, *,
                 navigable: bool = False) -> None:
        # Settings hold them in one form already (``config/origins.py``); a list given
        # in code is brought to it here, as far as it goes.
        self.allowed = tuple(origin_forms(o)[0] for o in allowed_origins or ())
        self.navigable = navigable

    def listed(self, origin: str) -> bool:
        """Whether ``MCP_GATEWAY_ALLOWED_ORIGINS`` names ``origin`` (patterns as the
        Origin guard's: ``*`` wildcards; a default port written or not, either side)."""
        forms = origin_forms(origin)
        return any(pattern == "*" or fnmatchcase(form, pattern)
                   for pattern in self.allowed for form in forms)

    def refusal(self, scope: Scope) -> ApiError | None:
        """Why the HTTP request ``scope`` is refused (None: it goes on to the Origin
        guard)."""
        site = origin = mode = None
        for name, value in scope["headers"]:  # the first copy of each, as the guard reads
            if name == b"sec-fetch-site" and site is None:
                site = value.decode("latin-1").strip().lower()
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-mode" and mode is None:
                mode = value.decode("latin-1").strip().lower()
        if site not in _OTHER_SITES:
            return None
        if origin is not None and origin.strip().lower() != "null":
            if self.listed(origin):
                return None
        elif self.navigable and mode == "navigate" and scope.get("method") in ("GET", "HEAD"):
            return None
        return refused(site, origin)


def refused(site: str, origin: str | None) -> ApiError:
    """The Origin guard's refusal, for a request a page of another site made."""
    details = {"origin": origin, "sec_fetch_site": site}
    if origin is None or origin.strip().lower() == "null":
        return ApiError(403, "forbidden_origin", (
            f"requests from a web page of another site (Sec-Fetch-Site: {site}, no Origin) "
            "are refused (cross-site request protection): open the gateway's own address "
            "in the browser, or call it from a program"), details)
    near = (": another port or subdomain of this site is another origin"
            if site == "same-site" else "")
    return ApiError(403, "forbidden_origin", (
        f"requests from a web page at Origin '{origin}' are refused (cross-site request "
        f"protection, Sec-Fetch-Site: {site}{near}); to allow that page, start the gateway "
        f"with MCP_GATEWAY_ALLOWED_ORIGINS={origin}"), details)


class FetchSiteMiddleware:
    """``FetchSiteGuard`` as ASGI middleware (the stdio gateway's own dashboard server)."""

    def __init__(self, app: ASGIApp, *, allowed_origins: Sequence[str] | None = None,
                 navigable: bool = False) -> None:
        self.app = app
        self.sites = FetchSiteGuard(allowed_origins, navigable=navigable)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (other_site := self.sites.refusal(scope)) is not None:
            await other_site.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
