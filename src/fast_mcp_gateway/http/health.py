"""Health endpoints: liveness, readiness, and the servers' health for a token holder.

* ``GET /health``: liveness, no auth; 200 ``{"status": "ok", "version"}`` while the
  process serves HTTP at all.
* ``GET /ready``: readiness, no auth (probes send no token); 503 ``starting`` until every
  upstream made its first connect attempt (the app serves from the first moment: the
  lifespan does not wait for upstreams, see ``front/server.py: StartupGate``; 503
  ``not_running`` in an app that mounts it and never runs its lifespan), 503
  ``unavailable`` while no upstream server is ready, 200 ``ready`` otherwise; the body
  says which and why.  A gateway with no upstream
  server configured is ready (it is managed through the API until servers are added).
  While the store cannot be reached the body has ``"store": "unreachable"`` and a 200
  ``ready`` becomes 200 ``degraded``: calls are served (a balancer must not drop every
  instance because their shared database is away), what needs the store answers 503.
  The reason names no address (no token needed): the log and 503s name it.
  With ``gateway.auth`` its body names only the servers of the caller's token (none
  without one); without it, none to a request the Host/Origin guard refuses (a web page
  on a DNS name rebound to 127.0.0.1): the status and counts are the same for everyone.
* ``GET /health/servers`` and ``/health/servers/{name}``: scope ``tools``, filtered to
  the servers the caller may use (404 for any other name, whether it exists or not);
  the same ``HealthReport`` / ``ServerStatus`` models as the ``gateway_health`` tool,
  made by the same admin operation.

The group has no prefix: probes send any Host, so it is served without the Host/Origin
guard; the per-server detail needs a token when ``gateway.auth`` is set, and without
``auth`` (anyone on loopback may read it) it is behind the guard: a page on a DNS name
rebound to 127.0.0.1 must not read the servers' state.  The caller is
found by the app's ``Access`` (``request.app.access``), shared with every front.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.admin import servers
from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.invalid import invalid_of
from fast_mcp_gateway.admin.models import HealthReport
from fast_mcp_gateway.admin.status import own_sessions
from fast_mcp_gateway.front.server import StartupGate
from fast_mcp_gateway.http.access import NOBODY, Access, require
from fast_mcp_gateway.http.advertised import host_served, principal_told
from fast_mcp_gateway.http.app import RouteGroup
from fast_mcp_gateway.http.errors import ApiError, not_found
from fast_mcp_gateway.http.not_running import NOT_RUNNING
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.upstream.model import UpstreamState

STORE_DOWN = ("the store cannot be reached: calls are served and their records held until "
              "it is back; changes, call logs and statistics answer 503 store_unavailable "
              "meanwhile (the gateway's log says why)")


def readiness(wait: StartupGate, invalid: Collection[str] = (),
              shown: Callable[[str], bool] = lambda _name: True, *,
              store_down: bool = False) -> tuple[int, dict[str, Any]]:
    """The ``/ready`` answer: (HTTP status, body); ``invalid``: the servers not running
    because their config entries are invalid (``invalid_servers`` when there are any;
    not counted in ``total``); ``store_down``: the store cannot be reached.  The status
    and counts cover every server; the body names only the servers ``shown`` admits
    (the caller's, with ``gateway.auth``)."""
    status, body = _upstreams(wait, invalid, shown)
    if not store_down:
        return status, body
    return status, body | {"status": "degraded" if body["status"] == "ready"
                           else body["status"], "store": "unreachable",
                           "reason": f"{body['reason']}; {STORE_DOWN}"}


def _upstreams(wait: StartupGate, invalid: Collection[str],
               shown: Callable[[str], bool]) -> tuple[int, dict[str, Any]]:
    """``readiness`` as the upstream servers make it."""
    services = wait.manager.services
    total = len(services)
    ready = sorted(n for n, s in services.items() if s.state is UpstreamState.READY)
    body: dict[str, Any] = {"ready": len(ready), "total": total,
                            "ready_servers": [n for n in ready if shown(n)]}
    broken = sorted(n for n in invalid if n not in services)
    if named := [n for n in broken if shown(n)]:
        body["invalid_servers"] = named
    if not wait.over:
        pending = [u.label for u in wait.manager.replicas
                   if u.state is UpstreamState.STARTING and shown(u.name)]
        return 503, {"status": "starting", **body,
                     "reason": "waiting for the first connect attempt of "
                               f"{', '.join(pending) or 'the upstream servers'}"}
    if total and not ready:
        return 503, {"status": "unavailable", **body,
                     "reason": f"none of the {total} upstream servers is ready "
                               "(see /health/servers for each one's state and last error)"}
    why = (f"; {len(broken)} server(s) not started, their config entries are invalid "
           "(see /health/servers)" if broken else "")
    return 200, {"status": "ready", **body,
                 "reason": ("no upstream server is configured" if not total
                            else f"{len(ready)} of {total} upstream servers ready") + why}


def health_for(ctx: AdminContext, principal: Principal) -> HealthReport:
    """The ``gateway_health`` report, limited to the servers ``principal`` may use, each
    listing only its own per-client sessions unless it is an admin (``own_sessions``)."""
    report = servers.health(ctx)
    if principal.servers is None and principal.own_records is None:
        return report
    mine = [own_sessions(s, principal) for s in report.servers
            if principal.may_use(s.name)]
    return HealthReport(servers=mine, total=len(mine),
                        healthy=sum(s.health == "HEALTHY" for s in mine))


async def _shown(request: Request) -> Callable[[str], bool]:
    """Which servers ``/ready`` names to ``request``'s caller: every one without
    ``gateway.auth`` (anyone on loopback reads them, as ``/health/servers``); with it,
    those of a valid token with scope ``tools``, and none to a probe without one (a
    name, which begins its tools' names, is for whoever may use it)."""
    access: Access = request.app.access
    if access.verifier is None:  # names for anyone on loopback, not a rebound web page
        return (lambda _name: True) if await host_served(request) else NOBODY.may_use
    if request.headers.get("authorization") is None:
        return NOBODY.may_use
    try:
        principal = await access.principal_for(request)
    except ApiError:  # a probe is answered, whatever it sends; a bad token sees no name
        return NOBODY.may_use
    return principal.may_use if principal.has("tools") else NOBODY.may_use


def health_group(ctx: AdminContext, wait: StartupGate) -> tuple[RouteGroup, RouteGroup]:
    """``/health`` and ``/ready``; ``/health/servers[/{name}]``, Host-checked without
    ``auth`` (see the module docstring)."""

    async def live(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def ready(request: Request) -> Response:
        if not getattr(request.app, "entered", True):  # mounted, its lifespan never run
            return JSONResponse({"status": "not_running", "reason": NOT_RUNNING},
                                status_code=503)
        status, body = readiness(wait, invalid_of(ctx), await _shown(request),
                                 store_down=ctx.store_down)
        return JSONResponse(body, status_code=status)

    async def caller(request: Request) -> Principal:
        principal = await principal_told(request.app.access, request)  # any Host
        require(principal, "tools", "reading server health")
        return principal

    async def all_servers(request: Request) -> Response:
        try:
            report = health_for(ctx, await caller(request))
        except ApiError as exc:
            return exc.response()
        return JSONResponse(report.model_dump(mode="json"))

    async def one_server(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            report = health_for(ctx, await caller(request))
            found = next((s for s in report.servers if s.name == name), None)
            if found is None:  # the same answer for "absent" and "not yours"
                raise not_found(f"no server '{name}' (list yours at /health/servers)")
        except ApiError as exc:
            return exc.response()
        return JSONResponse(found.model_dump(mode="json"))

    return (RouteGroup("health", [Route("/health", live, methods=["GET"]),
                                  Route("/ready", ready, methods=["GET"])]),
            RouteGroup("health-servers", [
                Route("/health/servers", all_servers, methods=["GET"]),
                Route("/health/servers/{name}", one_server, methods=["GET"]),
            ], host_checked=ctx.options.auth is None))
