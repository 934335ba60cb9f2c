"""How ``/api/v1`` endpoints are declared and served (the handlers are in ``api.py``).

``@endpoint(method, path, response, scope=..., query=..., body=...)`` adds an
``Endpoint`` to ``ENDPOINTS``; ``api_routes`` serves that table and ``openapi.py``
describes it.  ``_serve`` is the one request pipeline: authenticate (``Access``), check
the scope and ``gateway.admin``, validate the query and body (422 naming the fields),
run the handler, and map any error to the JSON shape (``errors.api_error``).  ``Call``
is what a handler gets: the admin context, the principal (its name is the audit
actor), and the validated inputs; ``Call.server`` hides servers the principal may not
use behind a 404 (``Call.recorded_server`` for history reads, which may name a removed
server), and every unknown-server error names only the principal's servers.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fast_mcp_gateway.admin.context import Actor, AdminContext, shieldable
from fast_mcp_gateway.admin.invalid import invalid_of, unread
from fast_mcp_gateway.admin.json_input import parse_json
from fast_mcp_gateway.admin.scope import turned_off
from fast_mcp_gateway.config.auth import Scope
from fast_mcp_gateway.config.checks import field_names
from fast_mcp_gateway.config.json_text import json_kind
from fast_mcp_gateway.config.schema import AdminKind
from fast_mcp_gateway.errors import GatewayError, UnknownServer
from fast_mcp_gateway.http import schemas as s
from fast_mcp_gateway.http.access import Access, require
from fast_mcp_gateway.http.errors import ApiError, api_error, validation_failed
from fast_mcp_gateway.principal import Principal

logger = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: a server config or tool arguments, never bulk data
_ROUTE_ID = TypeAdapter(s.RoutePath)


@dataclass(frozen=True)
class Call:
    """One API request, authenticated and validated, as a handler sees it."""

    ctx: AdminContext
    principal: Principal
    path: dict[str, str]
    query: Any = None
    body: Any = None

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.name, surface="rest", servers=self.principal.servers)

    def server(self, name: str) -> str:
        """``name`` if it exists (running, or not for its invalid config entry: the
        operation words that) and the principal may use it, else 404 (alike)."""
        if name in self.ctx.manager.services or name in invalid_of(self.ctx):
            return self.recorded_server(name)
        raise UnknownServer(name, self.ctx.manager.services)

    def recorded_server(self, name: str) -> str:
        """``name`` if the principal may use it (a history read: the store may keep a
        removed server's records; the read answers 404 if it keeps none), else 404."""
        if self.principal.may_use(name):
            return name
        raise UnknownServer(name, self.ctx.manager.services)

    def may_use(self, name: str) -> bool:
        return self.principal.may_use(name)

    def route_id(self) -> int:
        """The ``{id}`` of a route rule's path, or a 422 naming ``id`` and where ids are
        listed (it said "invalid path: must be a whole number", naming no parameter)."""
        try:
            return _ROUTE_ID.validate_python({"id": self.path["id"]}, strict=False).id
        except ValidationError as exc:
            error = validation_failed(exc, "path")
            error.message += "; GET /api/v1/routes lists the rules with their ids"
            raise error from None


Handler = Callable[[Call], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # under /api/v1, with {name} / {id} parameters
    response: type[BaseModel]
    handler: Handler
    scope: Scope
    tag: str
    summary: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = field(default=())

    @property
    def mutates(self) -> bool:
        """What ``gateway.admin: read_only`` refuses (inspector calls act, too)."""
        return self.method != "GET"


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, path: str, response: type[BaseModel], *, scope: Scope, tag: str,
             query: type[BaseModel] | None = None, body: type[BaseModel] | None = None,
             status: int = 200, errors: tuple[int, ...] = ()) -> Callable[[Handler], Handler]:
    """Declare an endpoint; the handler's docstring is its OpenAPI summary."""

    def declare(fn: Handler) -> Handler:
        ENDPOINTS.append(Endpoint(method, path, response, fn, scope, tag,
                                  (fn.__doc__ or "").strip(), query, body, status, errors))
        return fn

    return declare


# -- serving the table ----------------------------------------------------------------


def json_media_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` value is JSON (``application/json``, with parameters
    or not, or a ``+json`` type such as ``application/merge-patch+json``)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                             and media.endswith("+json"))


def _not_json(content_type: str | None, send: str) -> ApiError:
    """415: a body sent as another type (``text/plain``, a form) was read as JSON all the
    same; a web page can send those types cross-site without asking first."""
    sent = f"is sent as '{content_type}'" if content_type else "has no Content-Type"
    return ApiError(415, "unsupported_media_type", f"the request body {sent}, and this "
                    f"API reads JSON only: {send}, with 'Content-Type: application/json'",
                    {"content_type": content_type, "expected": "application/json"})


async def _body(model: type[BaseModel], request: Request) -> BaseModel:
    fields = ", ".join(field_names(model)) or "none"
    send = f"send a JSON object with this operation's fields ({fields})"
    content_type = request.headers.get("content-type")
    if content_type is not None and not json_media_type(content_type):
        raise _not_json(content_type, send)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, "body_too_large", f"the request body is over 1 MiB "
                           f"({MAX_BODY} bytes), which no operation needs: {send}, "
                           "without bulk data")
    if raw and content_type is None:
        raise _not_json(None, send)
    try:
        data = parse_json(raw) if raw else None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not JSON: {exc}; "
                       f"{send}") from None
    if not isinstance(data, dict):
        what = "is empty" if not raw else f"is {json_kind(data)}"
        raise ApiError(400, "invalid_json", f"the request body {what}; {send}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc, "body", model, data) from None


def _query(model: type[BaseModel], request: Request) -> BaseModel:
    given = Counter(name for name, _ in request.query_params.multi_items()
                    if not name.startswith("_"))
    fields: list[dict[str, str]] = []
    if "" in given:  # '?=1': said as ' is not accepted', naming nothing
        takes = ", ".join(field_names(model)) or "no query parameters"
        message = ("a query parameter has an empty name (a '=' with no name before it, "
                   f"as in '?=1'); remove it, or write the parameter's name before its '=' "
                   f"(this operation takes {takes})")
        raise ApiError(422, "validation_error", "invalid query: " + message, {
            "in": "query", "fields": [{"field": "", "message": message,
                                       "type": "empty_name"}]})
    if twice := sorted(name for name, times in given.items() if times > 1):
        # Starlette keeps the last value: '?server=a&server=b' read as b, unsaid.
        fields = [{"field": name, "message": f"is given {given[name]} times; give it "
                   "once (each parameter takes one value)", "type": "repeated"}
                  for name in twice]
    elif given and not model.model_fields:  # s.NoQuery: no name to offer as the one meant
        fields = [{"field": name, "message": "is not accepted: this operation takes no "
                   "query parameters", "type": "extra_forbidden"} for name in given]
    if fields:
        raise ApiError(422, "validation_error", "invalid query: " + "; ".join(
            f"{f['field']} {f['message']}" for f in fields), {"in": "query", "fields": fields})
    try:
        return model.model_validate({name: value for name, value in request.query_params.items()
                                     if not name.startswith("_")})
    except ValidationError as exc:
        raise validation_failed(exc, "query", model) from None


def refuse_other_pages(request: Request, what: str) -> None:
    """Refuse (403 ``forbidden_origin``) a change asked by a web page of another origin
    than this gateway's, on a gateway without ``gateway.auth``: nothing but the network
    vouches for the caller there, and the Host/Origin guard lets every loopback origin
    through (a page on any port of this machine).  Such a page could POST ``text/plain``
    without a CORS preflight, and register a command (``--allow-unauthenticated-admin``).
    A program sends no ``Origin``; with a token, a page cannot send it for you."""
    origin = request.headers.get("origin")
    if origin is None or origin.lower() == f"{request.url.scheme}://{request.url.netloc}".lower():
        return
    raise ApiError(403, "forbidden_origin", (
        f"{what} from a web page at Origin '{origin}' is refused: this gateway has no "
        "authentication, so a change may come only from a program (no Origin) or from "
        "the gateway's own pages; add a token under gateway.auth.tokens and send it as "
        "'Authorization: Bearer <token>'"), {"origin": origin})


def _serve(ep: Endpoint, access: Access, ctx: AdminContext
           ) -> Callable[[Request], Awaitable[Response]]:
    what = f"{ep.method} /api/v1{ep.path}"
    kind: AdminKind = "mutate" if ep.mutates else "read"

    async def serve(request: Request) -> Response:
        principal: Principal | None = None
        try:
            principal = await access.principal_for(request)
            require(principal, ep.scope, what)
            if ep.mutates and principal.kind == "anonymous":
                refuse_other_pages(request, what)
            off = turned_off(ctx.options, kind, what) if ep.scope == "admin" else None
            if off is not None:
                raise ApiError(403, "admin_disabled", off, {"admin": ctx.options.admin})
            call = Call(ctx, principal, dict(request.path_params),
                        _query(ep.query or s.NoQuery, request),
                        await _body(ep.body, request) if ep.body else None)
            # A change ends what it stored even when uvicorn cancels the request's task
            # at a stop (``shieldable``); a read needs no child task.
            result = await (shieldable(functools.partial(ep.handler, call)) if ep.mutates
                            else ep.handler(call))
        except ApiError as exc:
            return exc.response()
        except UnknownServer as exc:  # a restricted caller is told of its servers only
            seen = exc.seen_by(principal.may_use if principal is not None
                               else lambda _: True,
                               principal.no_server if principal is not None else None,
                               unread(ctx))
            return api_error(seen).response()
        except GatewayError as exc:
            return api_error(exc).response()
        except Exception:  # a bug: logged in full here, never detailed to the caller
            logger.exception("%s failed", what)
            return ApiError(500, "internal_error", "internal error; the gateway's log has "
                                                   "the details").response()
        return JSONResponse(result.model_dump(mode="json"), status_code=ep.status)

    return serve


def api_routes(access: Access, ctx: AdminContext) -> list[Route]:
    """Every endpoint of ``ENDPOINTS`` as Starlette routes (one per path, by method)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for ep in ENDPOINTS:
        by_path.setdefault(ep.path, {})[ep.method] = ep
    out = []
    for path, methods in by_path.items():
        handlers = {m: _serve(ep, access, ctx) for m, ep in methods.items()}

        async def dispatch(request: Request, handlers: dict[str, Callable[
                [Request], Awaitable[Response]]] = handlers) -> Response:
            # Starlette adds HEAD to every GET route: answer it as the GET.
            return await (handlers.get(request.method) or handlers["GET"])(request)

        out.append(Route(path, dispatch, methods=list(methods)))
    return out
