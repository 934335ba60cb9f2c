"""The gateway's URL as OAuth clients are told it: the RFC 9728 resource, and its
metadata document's URL in every 401's ``WWW-Authenticate`` (MCP, the lanes, REST) and
in the discovery 404s.

``MCP_GATEWAY_PUBLIC_URL`` names it when set; else ``http://<host>:<port>`` of the bind
address -- except on a wildcard bind (``0.0.0.0``, ``::``), an address no client
reaches: there each request is told the URL it came in at, its ``Host`` and scheme.
The Host is one the Host guard passed (``app.ExplainedGuard``: a Host the gateway does
not serve got 421 before anything names the URL); the guard marks the request it
passes (``PASSED``); the routes no guard is in front of (``/metrics``,
``/health/servers``) ask it (``principal_told``), and a request it would refuse is told
the bind address's URL, as before.  The scheme is uvicorn's, which follows
``X-Forwarded-Proto`` only from the addresses it trusts (``FORWARDED_ALLOW_IPS``,
loopback by default): a TLS proxy on this machine makes it https, a client elsewhere
cannot.
"""

from __future__ import annotations

import ipaddress
import re
from contextvars import ContextVar
from urllib.parse import urlsplit

from fastmcp.server.auth import RemoteAuthProvider
from fastmcp.server.http import HostOriginGuardMiddleware
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from pydantic import AnyHttpUrl, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.http.access import Access
from fast_mcp_gateway.principal import Principal

PASSED: ContextVar[Scope | None] = ContextVar("fast_mcp_gateway.guard_passed", default=None)
"""The request the Host guard passed, for what runs under it (set by ``app``'s guards)."""

_HOST = re.compile(rb"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
"""A Host to name in a URL: a name or address and a port (the challenge quotes it)."""


def every_address(host: str) -> bool:
    """Whether ``host`` is the unspecified address (``0.0.0.0``, ``::``): every one."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def public_base_url(settings: GatewaySettings) -> str:
    """The gateway's URL as configured (``public_url``, else from host and port)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


class Advertised:
    """The URLs OAuth clients are told for the MCP endpoint at ``mcp_path`` (module
    docstring): fixed, or per request (``per_request``) on a wildcard bind without a
    public URL, where each is worked out only when a request is told it."""

    def __init__(self, settings: GatewaySettings, mcp_path: str) -> None:
        self.fixed = public_base_url(settings)
        self.per_request = settings.public_url is None and every_address(settings.host)
        self.path = "/" + mcp_path.lstrip("/")

    def resource(self) -> str:
        """The protected resource's URL (the MCP endpoint) for the current request."""
        scope = PASSED.get() if self.per_request else None
        if scope is not None:
            host = next((v for k, v in scope["headers"] if k == b"host"), b"")
            scheme = "https" if scope.get("scheme") == "https" else "http"
            # A Host only a wildcard --allowed-host let through may be no host at all.
            if _HOST.fullmatch(host):
                try:
                    return str(AnyHttpUrl(f"{scheme}://{host.decode()}{self.path}"))
                except ValidationError:
                    pass
        return self.fixed + self.path

    def metadata(self) -> str:
        """The RFC 9728 document's URL for the current request, in RFC 9728's form as
        FastMCP makes it (a ``PUBLIC_URL`` path goes after the well-known part)."""
        return str(build_resource_metadata_url(AnyHttpUrl(self.resource())))


async def host_served(request: Request) -> bool:
    """Whether ``request`` passes the Host/Origin guard (``request.app.hosts``: its
    lists), asked on a route no guard is in front of (probes send any Host)."""
    passed = False

    async def through(_scope: Scope, _receive: Receive, _send: Send) -> None:
        nonlocal passed
        passed = True

    async def refusal(_message: object) -> None:
        return None  # the guard's answer is not sent: the route answers

    hosts, origins = request.app.hosts
    await HostOriginGuardMiddleware(through, allowed_hosts=hosts, allowed_origins=origins,
                                    mode="strict")(request.scope, request.receive, refusal)
    return passed


async def principal_told(access: Access, request: Request) -> Principal:
    """``access.principal_for(request)`` on a route no guard is in front of (``/metrics``,
    ``/health/servers``: scrapers send any Host): its 401 names the URL the request
    came in at only when the guard would have passed its Host (``host_served``), else
    the bind address's."""
    if access.resource_metadata is None or PASSED.get() is not None \
            or not await host_served(request):
        return await access.principal_for(request)
    passed = PASSED.set(request.scope)
    try:
        return await access.principal_for(request)
    finally:
        PASSED.reset(passed)


class MetadataPerRequest:
    """FastMCP's RFC 9728 document (its path-inserted route: FastMCP makes it once,
    naming ``advertised.fixed``) naming the resource each request came in at
    (``Advertised.resource``), made as FastMCP makes its own
    (``create_protected_resource_routes``: the same CORS and methods).  An ASGI app
    object, not a function: a ``Route`` takes it as it is (the root form's too)."""

    MADE = 64
    """Documents kept made, one per URL requests came in at; past it, made again."""

    def __init__(self, auth: RemoteAuthProvider, advertised: Advertised) -> None:
        self.auth = auth
        self.advertised = advertised
        self.made: dict[str, ASGIApp] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resource = self.advertised.resource()
        served = self.made.get(resource)
        if served is None:
            if len(self.made) >= self.MADE:
                self.made.clear()
            auth = self.auth
            served = self.made[resource] = create_protected_resource_routes(
                AnyHttpUrl(resource), auth.authorization_servers, auth.scopes_supported,
                auth.resource_name, auth.resource_documentation)[0].app
        await served(scope, receive, send)

    def install(self, app: Starlette) -> int:
        """Serve it in place of FastMCP's document on ``app``; how many routes it found."""
        fixed = AnyHttpUrl(self.advertised.fixed + self.advertised.path)
        path = urlsplit(str(build_resource_metadata_url(fixed))).path
        found = 0
        for route in app.routes:
            if isinstance(route, Route) and route.path == path:
                route.app = self
                found += 1
        return found
