"""The gateway's HTTP app (HTTP and SSE modes): the MCP endpoint plus route groups.

``build_app`` assembles one Starlette app:

* route groups, each mounted ahead of MCP: the REST API at ``/api/v1`` (``api.py``)
  today; health, metrics and the dashboard are further ``RouteGroup``s passed in;
* FastMCP's own app for the MCP endpoint (``/mcp`` or ``/sse`` + ``/messages``), mounted
  last, with FastMCP's Host/Origin (DNS-rebinding) guard as before;
* one lifespan: the MCP app's (which runs the gateway's), around the whole app.

The REST API is built by its first request (``LazyApp``; its models, handlers and
OpenAPI document are ~0.5 MB a gateway nobody manages over REST never pays), as the
dashboard is (``ui/app.py``).

The app owns the one ``GatewayVerifier`` (``None`` without ``gateway.auth``) and the
``Access`` policy built on it; both are attributes of the app, so the MCP side, health
and the dashboard use the same ones.  The REST API is Host/Origin-guarded like MCP:
without it, a web page could reach a loopback gateway through DNS rebinding.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import fastmcp
from fastmcp import FastMCP
from fastmcp.server.auth import AuthProvider, RemoteAuthProvider
from fastmcp.server.http import HostOriginGuardMiddleware
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway._compat import reword_auth_challenges
from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.config.origins import with_public_origin
from fast_mcp_gateway.config.schema import GatewayOptions
from fast_mcp_gateway.config.settings import (
    HOW_TO_ADD_A_TOKEN,
    SDK_MAX_BODY,
    SSE_BODY_LIMIT,
    GatewaySettings,
    Transport,
)
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.front.profiles import PROFILE_PREFIX
from fast_mcp_gateway.http.access import Access, bad_token, no_token
from fast_mcp_gateway.http.advertised import PASSED, Advertised, MetadataPerRequest
from fast_mcp_gateway.http.answered import AfterAnswer
from fast_mcp_gateway.http.auth import GatewayVerifier, auth_presence_veto, mcp_auth
from fast_mcp_gateway.http.batches import BatchRefusal
from fast_mcp_gateway.http.discovery import discovery_refusal
from fast_mcp_gateway.http.errors import API_PREFIX, ApiError, UnknownPaths, http_error
from fast_mcp_gateway.http.fetch_site import FetchSiteGuard
from fast_mcp_gateway.http.lazy_app import LazyApp
from fast_mcp_gateway.http.loopback import off_this_machine
from fast_mcp_gateway.http.not_running import (
    LifespanOwner,
    not_running,
    not_running_report,
    on_endpoint,
)
from fast_mcp_gateway.http.profile_paths import ProfilePaths, known_caller
from fast_mcp_gateway.http.public_prefix import Prefixed, PublicPrefix
from fast_mcp_gateway.http.request_ids import InFlightIds
from fast_mcp_gateway.http.revoked_streams import RevokedStreams
from fast_mcp_gateway.http.reworded import wrap_routes
from fast_mcp_gateway.http.routing_headers import RoutingHeaders
from fast_mcp_gateway.http.session_quota import SessionQuota, session_manager_of, several_callers
from fast_mcp_gateway.http.session_refusals import SessionRefusals
from fast_mcp_gateway.http.stream_quota import StreamQuota
from fast_mcp_gateway.http.transport_refusals import TransportRefusals, body_limit_setter


@dataclass(frozen=True)
class RouteGroup:
    """Routes served ahead of MCP.

    With a ``prefix`` (``/api/v1``, ``/dashboard``) the routes form a sub-app with its
    own ``middleware``, behind the Host/Origin guard when ``guarded`` (anything a web
    page must not reach by DNS rebinding), with errors in the API's JSON shape.
    Without one (``/health``, ``/ready``, ``/metrics``: probes and scrapers send any
    Host) the routes are served as they are, unguarded, unless ``host_checked``: routes
    that answer without a credential (a gateway without ``auth``) what a web page on a
    rebinding DNS name must not read (the servers' health, the metrics).
    """

    name: str
    routes: Sequence[BaseRoute]
    prefix: str = ""
    guarded: bool = True
    middleware: Sequence[Middleware] = field(default=())
    host_checked: bool = False


class GatewayApp(LifespanOwner):
    """The assembled app; ``verifier`` and ``access`` are shared by every front.

    A request for the MCP endpoint goes straight to FastMCP's app (which has its own
    error handling and routing): the outer router, its two middlewares and the mount
    would cost every MCP request some 50-100 us for nothing.

    Without ``gateway.auth`` (``verifier`` None) it answers only requests of this
    machine: ``serve`` and ``run_async`` refuse to listen elsewhere, and this holds the
    app mounted by a library in a server of its own, and a proxy forwarding for other
    machines, to the same rule (``loopback.off_this_machine``: a 403 naming the address
    or the client and the ways out).
    """

    verifier: GatewayVerifier | None
    access: Access
    mcp_app: Starlette
    mcp_entry: Any  # mcp_app, or the HTTP express lane in front of it, guarded (explained)
    groups: tuple[RouteGroup, ...]
    revoked_streams: RevokedStreams | None = None
    mcp_paths: tuple[str, ...] = ()
    hosts: tuple[list[str] | None, list[str] | None] = (None, None)  # the guard's lists

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.verifier is None \
                and (refused := off_this_machine(scope, self.hosts[0] or ())) is not None:
            await refused.response()(scope, receive, send)
            return
        if not self.running and scope["type"] == "http" and on_endpoint(scope, self.endpoints):
            return await not_running(scope, receive, send)  # mounted without its lifespan
        if not self.entered and scope["type"] == "http" and on_endpoint(scope, self.reports):
            return await not_running_report(scope, receive, send)  # every server "starting"
        if scope["type"] == "http" and scope["path"] in self.mcp_paths:
            scope["app"] = self
            await self.mcp_entry(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


_PASSED = "fast_mcp_gateway.guard_passed"  # a scope key: the guard let it through


class ExplainedGuard:
    """FastMCP's Host/Origin guard (strict) in front of ``app``, its refusals explained:
    its own answers say only "Misdirected Request" (421) or "Forbidden Origin" (403),
    leaving a user behind a proxy to guess at ``--allowed-host``.  A refusal becomes
    the REST error shape naming the header's value and the setting that allows it.
    A request a page of another site made is refused first (``fetch_site``)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str] | None,
                 allowed_origins: list[str] | None, navigable: bool = False,
                 tokenless: bool = False) -> None:
        self.app = app
        self.tokenless = tokenless  # no gateway.auth: a 421 says what a proxy needs first
        self.guard = HostOriginGuardMiddleware(self._passed, allowed_hosts=allowed_hosts,
                                               allowed_origins=allowed_origins, mode="strict")
        self.sites = FetchSiteGuard(allowed_origins, navigable=navigable)

    async def _passed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_PASSED] = True
        passed = PASSED.set(scope)  # its Host is one this gateway serves (advertised)
        try:
            await self.app(scope, receive, send)
        finally:
            PASSED.reset(passed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.guard(scope, receive, send)
            return
        if (other_site := self.sites.refusal(scope)) is not None:
            await other_site.response()(scope, receive, send)
            return
        status = 0

        async def explained(message: Any) -> None:
            nonlocal status
            if scope.get(_PASSED):
                await send(message)
            elif message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body"):
                await _refusal(scope, status, self.tokenless).response()(scope, receive, send)

        await self.guard(scope, receive, explained)


def _refusal(scope: Scope, status: int, tokenless: bool = False) -> ApiError:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
               if k in (b"host", b"origin")}
    if status == 421:
        host = headers.get("host", "")
        # Without auth, a proxy that names no client (nginx sends no X-Forwarded-For
        # unless told to) is this machine to the gateway: the allowed host alone would
        # serve whoever the proxy serves (http/loopback.py).
        proxied = (f"; if '{host}' is a reverse proxy's name that other machines reach, "
                   f"{HOW_TO_ADD_A_TOKEN} first: without gateway.auth this gateway answers "
                   "this machine only, and refuses a proxy's request only when the proxy "
                   "names its client (X-Forwarded-For, X-Real-IP or Forwarded)"
                   if tokenless else "")
        return ApiError(421, "misdirected_request", (
            f"this gateway does not answer to Host '{host}' (DNS-rebinding protection): "
            f"use the address it listens on, or start it with --allowed-host {host} "
            f"(MCP_GATEWAY_ALLOWED_HOSTS){proxied}"), {"host": host})
    origin = headers.get("origin", "")
    return ApiError(status, "forbidden_origin", (
        f"requests from a web page at Origin '{origin}' are refused (DNS-rebinding "
        f"protection); to allow that page, start the gateway with "
        f"MCP_GATEWAY_ALLOWED_ORIGINS={origin}"), {"origin": origin})


class RememberedGuard:
    """FastMCP's Host/Origin guard (strict) in front of ``app``, remembering what it let
    through.  Its verdict depends only on the scheme, the server address and the Host,
    Origin and Sec-Fetch-Site headers, and working it out (host patterns, origin URL parsing and
    normalising, IP address checks) cost ~30 us per request; a request whose four
    match one the guard passed before goes straight on.  Refusals are never remembered
    (the guard answers each one), and the memory is bounded (``MAX_REMEMBERED``: past
    it, it starts over)."""

    MAX_REMEMBERED = 256

    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str] | None,
                 allowed_origins: list[str] | None, tokenless: bool = False) -> None:
        self.app = app
        self.guard = ExplainedGuard(self._passed, allowed_hosts=allowed_hosts,
                                    allowed_origins=allowed_origins, tokenless=tokenless)
        self.passed: set[tuple[Any, ...]] = set()

    @staticmethod
    def _key(scope: Scope) -> tuple[Any, ...]:
        host = origin = site = None
        for name, value in scope["headers"]:  # the first copy of each, as the guard reads
            if name == b"host" and host is None:
                host = value
            elif name == b"origin" and origin is None:
                origin = value
            elif name == b"sec-fetch-site" and site is None:
                site = value
        return scope.get("scheme"), scope.get("server"), host, origin, site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._key(scope) in self.passed:
            passed = PASSED.set(scope)  # as the guard would (ExplainedGuard._passed)
            try:
                await self.app(scope, receive, send)
            finally:
                PASSED.reset(passed)
            return
        await self.guard(scope, receive, send)

    async def _passed(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if len(self.passed) >= self.MAX_REMEMBERED:
                self.passed.clear()
            self.passed.add(self._key(scope))
        await self.app(scope, receive, send)


def api_group(access: Access, ctx: AdminContext) -> RouteGroup:
    """The REST management API, with its OpenAPI document (served without a token: it
    describes the API and holds no data), built by its first request (``LazyApp``)."""

    def build() -> ASGIApp:
        from fast_mcp_gateway.http.api import ENDPOINTS
        from fast_mcp_gateway.http.endpoints import api_routes
        from fast_mcp_gateway.http.openapi import openapi_document

        # Made by its first request (it builds every REST model's schema), then served.
        document = functools.cache(lambda: openapi_document(
            ENDPOINTS, bearer=access.verifier is not None))

        async def openapi(request: Request) -> Response:
            # Its server URL under a proxy's path (MCP_GATEWAY_PUBLIC_URL's) for one there.
            under = PublicPrefix(ctx.settings.public_url).of(request.scope)
            return JSONResponse({**document(), "servers": [{"url": under + API_PREFIX}]})

        return Router(routes=[Route("/openapi.json", openapi, methods=["GET"]),
                              *api_routes(access, ctx)])

    return RouteGroup("api", [Mount("", app=LazyApp(build))], prefix=API_PREFIX)


GroupSource = RouteGroup | Callable[[Access], RouteGroup]
"""A route group, or a function making one for the app's ``Access`` (the dashboard)."""


def _root_metadata(auth: AuthProvider | None, mcp_app: Starlette,
                   guard: Middleware) -> list[BaseRoute]:
    """RFC 9728 metadata at the root form too (``/.well-known/oauth-protected-resource``):
    FastMCP serves only the path-inserted form (``.../oauth-protected-resource/mcp``),
    and some hosts probe the root first.  The same document, CORS and methods, behind
    the Host ``guard`` as that form is (the document may name the request's Host)."""
    if not isinstance(auth, RemoteAuthProvider):
        return []
    root = "/.well-known/oauth-protected-resource"
    return [Route(root, route.app, methods=list(route.methods or ["GET"]), middleware=[guard])
            for route in mcp_app.routes  # FastMCP's (a PUBLIC_URL's path is in it too)
            if isinstance(route, Route) and route.path.startswith(root + "/")]


def _whole(mount: Mount) -> Mount:
    """``mount`` taking every path under its prefix.  Starlette's mount pattern ends in
    ".*", which stops at a line feed: a path with an encoded one (/api/v1/servers/a%0Ab)
    fell through to the router's bare text 404."""
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount


_WHAT = {"api": f"the REST API: {API_PREFIX}/openapi.json lists its paths",
         "dashboard": "the dashboard", "health": "liveness and readiness",
         "health-servers": "the servers' health", "metrics": "Prometheus metrics",
         "favicon": "the icon"}


def _served(groups: Sequence[RouteGroup], mcp_path: str, transport: Transport,
            options: GatewayOptions) -> dict[str, str]:
    """What the app serves, path -> what (a prefix ends in "/"): the MCP endpoint
    first, then each route group's prefix or paths, as an unknown path lists them."""
    if transport == "sse":
        served = {mcp_path: "the MCP endpoint: its SSE stream",
                  fastmcp.settings.message_path: "the MCP endpoint: its SSE messages"}
    else:
        served = {mcp_path: "the MCP endpoint, streamable HTTP"}
    if options.profiles:
        served[f"{mcp_path.rstrip('/')}{PROFILE_PREFIX}<profile>"] = (
            "the MCP endpoint of a profile in gateway.profiles")
    for group in groups:
        what = _WHAT.get(group.name, group.name)
        if group.prefix:
            served[group.prefix + "/"] = what
        served |= {r.path: what for r in group.routes
                   if not group.prefix and isinstance(r, Route)}
    return served


def build_app(server: FastMCP[Any], ctx: AdminContext, settings: GatewaySettings,
              transport: Transport = "http", *, groups: Sequence[GroupSource] = (),
              lane: Callable[..., ASGIApp] | None = None,
              before_sessions_end: Callable[[], Awaitable[object]] | None = None) -> GatewayApp:
    """The gateway's Starlette app for ``transport`` (http or sse): ``groups`` (health,
    metrics, dashboard) and the REST API ahead of the MCP endpoint, one lifespan.
    ``lane`` (streamable HTTP only; called ``lane(app, access, max_body=..., manager=...,
    held=...)``: the SDK's session manager, and the request ids in flight on its
    sessions that ``request_ids.InFlightIds`` holds) wraps
    FastMCP's app for the MCP endpoint's exact path, behind the same Host/Origin guard
    (the HTTP express lane).  ``before_sessions_end`` is awaited as the lifespan
    begins to end, before the MCP sessions end (``Gateway._admin_ops_ended``)."""
    auth = ctx.options.auth
    # Follows reloads of gateway.auth (token rotation); one adding or removing it is refused.
    verifier = (GatewayVerifier(auth, current=lambda: ctx.options.auth)
                if auth is not None else None)
    if auth_presence_veto not in ctx.reload_vetoes:
        ctx.reload_vetoes.append(auth_presence_veto)
    allowed_hosts = list(settings.allowed_hosts) or None
    allowed_origins = with_public_origin(settings.allowed_origins, settings.public_url) or None
    mcp_path = settings.path if transport == "http" else "/sse"
    # The MCP endpoint (streamable HTTP, or /sse + /messages) takes the same verifier
    # as the REST API: FastMCP answers a missing or bad token with 401 and
    # WWW-Authenticate before the gateway sees the request.  FastMCP reads
    # ``server.auth`` when it builds the app, so it is set just before.
    advertised = Advertised(settings, mcp_path)  # per request on 0.0.0.0 (advertised.py)
    server.auth = (mcp_auth(verifier, auth, advertised.fixed)
                   if verifier is not None and auth is not None else None)
    metadata = advertised.metadata if isinstance(server.auth, RemoteAuthProvider) else None
    access = Access(verifier, allow_unauthenticated_admin=settings.allow_unauthenticated_admin,
                    resource_metadata=metadata)
    mcp_app = server.http_app(
        path=mcp_path,
        transport="sse" if transport == "sse" else "http",
        # Every answer a stream: the host gets progress and logs during a call, and the
        # SDK watches a 2026-07-28 request's connection itself (front/components.py).
        json_response=False,
        host_origin_protection=True,
        allowed_hosts=allowed_hosts,
        allowed_origins=allowed_origins,
        session_idle_timeout=settings.session_idle_timeout if transport == "http" else None,
    )
    def several() -> bool:  # callers held to a share only where there are others
        return verifier is not None and several_callers(verifier.config)

    max_body = settings.http_max_body_bytes  # the SDK's, set as the lifespan starts
    if transport == "sse" and max_body != SDK_MAX_BODY:
        raise ConfigError.single("MCP_GATEWAY_HTTP_MAX_BODY_BYTES", None, None, SSE_BODY_LIMIT)
    set_body_limit = body_limit_setter(mcp_app, mcp_path) if transport == "http" else None
    held: set[tuple[bytes, Any, Any]] = set()  # ids in flight on sessions (request_ids)
    if server.auth is not None:  # FastMCP's refusals speak of OAuth re-registration
        assert verifier is not None  # server.auth is made from it
        reword_auth_challenges(mcp_app, lambda q: no_token(verifier.takes_jwt, q),  # and a
                               lambda: bad_token(verifier.takes_jwt), metadata)  # reason
    if isinstance(server.auth, RemoteAuthProvider) and advertised.per_request:
        MetadataPerRequest(server.auth, advertised).install(mcp_app)  # the document too
    if transport == "http":  # one answer per POST (answered.py); the SDK words a
        wrap_routes(mcp_app, (mcp_path,), AfterAnswer)  # missing Mcp-Method as a mismatch,
        wrap_routes(mcp_app, (mcp_path,), RoutingHeaders)  # and a missing or unknown session
        wrap_routes(mcp_app, (mcp_path,), functools.partial(
            SessionRefusals, idle_timeout=settings.session_idle_timeout,
            tokens=verifier is not None,  # in words naming neither cause nor fix
            manager=session_manager_of(mcp_app, mcp_path)))
        if verifier is not None:  # one caller, not all (without auth all are one)
            wrap_routes(mcp_app, (mcp_path,), functools.partial(
                SessionQuota, manager=session_manager_of(mcp_app, mcp_path),
                several=several))
        # A request under an id in flight in its session overwrote the first's stream
        wrap_routes(mcp_app, (mcp_path,), functools.partial(
            InFlightIds, limit=max_body, tokens=verifier is not None, held=held))
    if verifier is not None:  # sessions' and listen streams, or SSE's, per caller
        wrap_routes(mcp_app, (mcp_path,), functools.partial(
            StreamQuota, sse=transport == "sse", max_body=max_body, several=several))
    revoked = RevokedStreams(verifier, ctx.reloads) if verifier is not None else None
    if revoked is not None:  # streams end once their credential no longer stands (a grace)
        sse_posts = (fastmcp.settings.message_path.rstrip("/"),) if transport == "sse" else ()
        wrap_routes(mcp_app, (mcp_path, *sse_posts),
                    functools.partial(revoked.wrap, sse=transport == "sse"))
    if transport == "sse":  # its endpoint event names the posts under a proxy's path
        wrap_routes(mcp_app, (mcp_path,), lambda a: Prefixed(a, PublicPrefix(settings.public_url)))
    # ... and a JSON-RPC batch as a pydantic dump (SSE: "Could not parse message"); a
    # body over its limit or not sent as JSON in a few words naming neither.
    posted = ((mcp_path,) if transport == "http"
              else (fastmcp.settings.message_path.rstrip("/"),))
    wrap_routes(mcp_app, posted, BatchRefusal)
    wrap_routes(mcp_app, posted, functools.partial(TransportRefusals, limit=max_body,
                                                   settable=transport == "http"))
    tokenless = verifier is None
    guard = Middleware(ExplainedGuard, allowed_hosts=allowed_hosts,
                       allowed_origins=allowed_origins, tokenless=tokenless)
    pages = Middleware(ExplainedGuard, allowed_hosts=allowed_hosts,  # links to them
                       allowed_origins=allowed_origins, navigable=True, tokenless=tokenless)
    all_groups = (*(g if isinstance(g, RouteGroup) else g(access) for g in groups),
                  api_group(access, ctx))
    mounts: list[BaseRoute] = list(_root_metadata(server.auth, mcp_app, guard))
    for group in all_groups:
        if not group.prefix:
            mounts += [Route(r.path, r.endpoint, methods=r.methods, middleware=[guard])
                       if group.host_checked and isinstance(r, Route) else r
                       for r in group.routes]
            continue
        middleware = [pages if group.name == "dashboard" else guard] if group.guarded else []
        sub = Starlette(routes=list(group.routes), middleware=[*middleware, *group.middleware],
                        exception_handlers={HTTPException: http_error})
        mounts.append(_whole(Mount(group.prefix, app=sub)))
    # FastMCP's app guards every route of its own (the same lists, strict); meeting the
    # explained guard first gives each refusal its reason (SSE's /sse and /messages/,
    # /mcp/ with a slash, its well-known paths), not FastMCP's bare text.
    guarded_mcp = RememberedGuard(mcp_app, allowed_hosts=allowed_hosts,
                                  allowed_origins=allowed_origins, tokenless=tokenless)
    # Any other path: FastMCP's answer where its router has one, else the gateway's.
    unknown = UnknownPaths(
        mcp_app, routes=tuple(mounts), may_see=functools.partial(known_caller, access),
        served=_served(all_groups, mcp_path, transport, ctx.options),  # /ui: to /ui/
        pages=[g.prefix + "/" for g in all_groups if g.name == "dashboard"],
        proxied=PublicPrefix(settings.public_url).path,  # a proxy that did not cut it
        discovery=lambda scope: discovery_refusal(scope["method"], scope["path"],
                                                  auth=ctx.options.auth,
                                                  metadata=metadata() if metadata else None))
    mounts.append(_whole(Mount("/", app=RememberedGuard(
        unknown, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins,
        tokenless=tokenless))))

    @asynccontextmanager
    async def lifespan(served: Starlette) -> AsyncIterator[None]:  # this app, or the one
        # mounting it.  The MCP app's lifespan starts its session manager and the gateway.
        app.entered = True
        async with mcp_app.router.lifespan_context(served):
            if set_body_limit is not None:  # on the session manager it made just now
                set_body_limit(max_body)
            try:
                app.running = True
                yield
            finally:
                app.running = False
                if before_sessions_end is not None:
                    await before_sessions_end()

    middleware = [Middleware(ProfilePaths, path=mcp_path, options=ctx.options, access=access,
                             messages=fastmcp.settings.message_path if transport == "sse"
                             else None)]
    app = GatewayApp(routes=mounts, lifespan=lifespan, middleware=middleware)
    app.verifier = verifier
    app.access = access
    app.revoked_streams = revoked
    app.mcp_app = mcp_app
    app.mcp_entry = guarded_mcp
    if lane is not None and transport == "http":
        app.mcp_entry = RememberedGuard(
            lane(mcp_app, access, max_body=max_body, held=held,
                 manager=session_manager_of(mcp_app, mcp_path)), allowed_hosts=allowed_hosts,
            allowed_origins=allowed_origins, tokenless=tokenless)
    app.groups = all_groups
    app.hosts = (allowed_hosts, allowed_origins)
    # Exact paths only: anything else (a trailing slash FastMCP redirects, well-known
    # metadata, /messages/ of SSE) takes the router as before.
    app.mcp_paths = (mcp_path,)
    app.endpoints = (mcp_path, *posted)
    app.reports = tuple(g.prefix or "/health/servers" for g in all_groups
                        if g.name in ("api", "dashboard", "health-servers"))
    return app
