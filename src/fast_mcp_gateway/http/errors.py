"""The HTTP app's errors: one JSON shape, and the one map from gateway errors to statuses.

Every error response is ``{"error": {"code", "message", "details"}}``: ``code`` is a
stable machine-readable word, ``message`` says what is wrong and what to do, ``details``
is structured (the failing fields of a validation error, the config issues, the
missing scope) or ``null``.  ``api_error`` is the only place a gateway exception becomes
a status; messages come from the gateway's own errors, which never carry a secret
value (tokens are never put in an error: the verifier returns ``None``, not the token).

The shape is every HTTP surface's but the MCP endpoint's own (FastMCP's): ``http_error``
words Starlette's 404 and 405 in each route group (``/api/v1``, ``/ui``), and
``UnknownPaths`` answers any path outside them that FastMCP's router does not serve.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from fast_mcp_gateway.admin.arguments import invalid_fields, summary
from fast_mcp_gateway.errors import (
    AdminError,
    ConfigError,
    Conflict,
    Forbidden,
    GatewayError,
    NotFound,
    RateLimited,
    UnknownComponent,
    UpstreamError,
    UpstreamRequestFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from fast_mcp_gateway.http.auth import quotable
from fast_mcp_gateway.http.query_tokens import in_query
from fast_mcp_gateway.store.base import StorageError

API_PREFIX = "/api/v1"


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. not_found, forbidden")
    message: str = Field(description="what is wrong and how to fix it")
    details: Any = Field(default=None, description="structured context (fields, scope, ...)")


class ErrorBody(BaseModel):
    """The body of every REST error response."""

    error: ErrorDetail


@dataclass
class ApiError(Exception):
    """An error answer: raise it from a handler, or get one from ``api_error``."""

    status: int
    code: str
    message: str
    details: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def response(self) -> JSONResponse:
        body = ErrorBody(error=ErrorDetail(code=self.code, message=self.message,
                                           details=self.details))
        return JSONResponse(body.model_dump(mode="json"), status_code=self.status,
                            headers=self.headers)


def unauthorized(message: str, *, bad_token: bool, resource_metadata: str | None = None
                 ) -> ApiError:
    """401 with the RFC 6750 challenge (``invalid_token`` when one was sent, with
    ``message`` as its ``error_description``), naming the RFC 9728 metadata when it is
    served, as the MCP endpoint's challenge does."""
    params = (['error="invalid_token"', f'error_description="{quotable(message)}"']
              if bad_token else [])
    if resource_metadata is not None:
        params.append(f'resource_metadata="{resource_metadata}"')
    challenge = "Bearer " + ", ".join(params) if params else "Bearer"
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def forbidden(scope: str, message: str) -> ApiError:
    return ApiError(403, "forbidden", message, {"required_scope": scope}, headers={
        "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def validation_failed(exc: ValidationError, where: str, model: type[BaseModel] = BaseModel,
                      given: Mapping[str, Any] | None = None) -> ApiError:
    """422 naming every failing field (``where``: body, query or path; ``model``: the
    model validated, to match an unknown field to the one meant; ``given``: the body, to
    show it corrected when its fields belong inside its ``config``)."""
    # Worded as the gateway_* tools word it (admin/arguments.py), never echoing values.
    plain = invalid_fields(exc, model)
    fields = [{"field": name or where, "message": message, "type": e["type"]}
              for (name, message), e in zip(plain, exc.errors(include_url=False), strict=True)]
    # Said once (unknown fields together; fields of 'config' beside it said so); a problem
    # of the whole body (a model's own check) names its field itself.
    named = summary(exc, model, given=given, quote=lambda name: name)
    return ApiError(422, "validation_error", f"invalid {where}: {named}",
                    {"in": where, "fields": fields})


def api_error(exc: GatewayError) -> ApiError:
    """The one map from the gateway's error tree to HTTP (most specific class first)."""
    message = str(exc)
    if isinstance(exc, ConfigError):
        issues = [{"source": i.source, "server": i.server, "field": i.field,
                   "message": i.message} for i in exc.issues]
        return ApiError(422, "invalid_config", message, {"issues": issues})
    if isinstance(exc, NotFound | UnknownComponent):
        return ApiError(404, "not_found", message)
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", message)
    if isinstance(exc, Forbidden):
        return forbidden("admin", message)
    if isinstance(exc, AdminError):
        return ApiError(400, "bad_request", message)
    if isinstance(exc, RateLimited):
        retry = max(1, math.ceil(exc.retry_after))
        return ApiError(429, "rate_limited", message, {"retry_after_seconds": exc.retry_after},
                        headers={"Retry-After": str(retry)})
    if isinstance(exc, UpstreamUnavailable):
        return ApiError(503, "upstream_unavailable", message, {"server": exc.server},
                        headers={"Retry-After": "5"})
    if isinstance(exc, UpstreamTimeout):
        return ApiError(504, "upstream_timeout", message, {"server": exc.server})
    if isinstance(exc, UpstreamRequestFailed):
        return ApiError(502, "upstream_failed", message, {"server": exc.server})
    if isinstance(exc, UpstreamError):  # the base class: a replica index that does not exist
        return ApiError(404, "not_found", message, {"server": exc.server})
    if isinstance(exc, StorageError):
        return ApiError(503, "store_unavailable", message)
    return ApiError(500, "internal_error", message)


def _wrong_method(method: str, path: str, allow: str) -> ApiError:
    takes = ", ".join(sorted(m.strip() for m in allow.split(",")))
    return ApiError(405, "method_not_allowed", f"{method} {path}: this path does not take "
                    f"{method}; it takes {takes}", headers={"Allow": allow})


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such path) and 405 (wrong method), in the API's shape:
    the error handler of every prefixed route group."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    path = request.url.path
    if exc.status_code == 405 and headers.get("Allow"):
        return _wrong_method(request.method, path, headers["Allow"]).response()
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    what = str(exc.detail)
    if exc.status_code == 404:
        root = str(request.scope.get("root_path") or "")
        where = (f"{API_PREFIX}/openapi.json lists the API's paths" if root == API_PREFIX
                 else f"start from {root}/")
        what = f"no such path; {where}"
    return ApiError(exc.status_code, code, f"{request.method} {path}: {what}",
                    headers=headers).response()


class UnknownPaths:
    """FastMCP's app (``app``) for every path its router answers -- the MCP endpoint
    and its slash redirect, SSE's stream and messages, the ``/.well-known/`` documents
    it serves: those answers stay FastMCP's, exactly -- and the gateway's JSON shape for
    any other path: a 405 naming the methods where one of the app's own ``routes``
    (``/health``, ``/metrics``...) takes the path; the 404 ``discovery`` words for an
    OAuth discovery path (``discovery.py``: how this gateway authenticates); else a 404
    naming the path and, to a caller ``may_see`` lets in (a valid token; anyone on a
    gateway without ``auth``), what the gateway ``served`` (path -> what).  Without a
    token, the answer names only the path asked for: FastMCP's bare 404 told nothing,
    and the MCP path may be a custom one.  A GET (or HEAD) of one of ``pages`` (a
    prefix such as ``/ui/``) without its final slash, as a person types it, is redirected
    to it (307, a relative ``Location``, so that a proxy's path prefix is kept).  A path
    under ``proxied`` (``MCP_GATEWAY_PUBLIC_URL``'s path) came from a reverse proxy that
    did not cut it (nginx's ``proxy_pass`` without its final slash): the 404 says so."""

    def __init__(self, app: Starlette, *, routes: Sequence[BaseRoute],
                 served: Mapping[str, str], may_see: Callable[[Scope], Awaitable[bool]],
                 discovery: Callable[[Scope], ApiError | None] = lambda _scope: None,
                 pages: Sequence[str] = (), proxied: str = "") -> None:
        self.app, self.routes, self.served, self.may_see = app, routes, served, may_see
        self.discovery = discovery
        self.pages = frozenset(pages)
        self.proxied = unquote(proxied)  # as the request's path is (/工具, not /%E5...)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._fastmcps(scope):
            await self.app(scope, receive, send)
            return
        path, root = str(scope["path"]), str(scope.get("root_path") or "")
        # Mounted under a prefix (root_path), the path holds it: the pages do not.
        if scope["method"] in ("GET", "HEAD") and path.removeprefix(root) + "/" in self.pages:
            query = scope.get("query_string", b"").decode("latin-1")
            query = "" if in_query(query) else query  # a token in it is not sent back
            there = path.rpartition("/")[2] + "/" + (f"?{query}" if query else "")
            await Response(status_code=307, headers={"location": there})(scope, receive, send)
            return
        await (await self.refusal(scope)).response()(scope, receive, send)

    def _fastmcps(self, scope: Scope) -> bool:
        """Whether FastMCP's router answers ``scope`` (a route, or its slash redirect)."""
        path, root = scope["path"], str(scope.get("root_path", ""))
        router = self.app.router
        if any(r.matches(scope)[0] is not Match.NONE for r in router.routes):
            return True
        if not router.redirect_slashes or path.removeprefix(root) in ("", "/"):
            return False
        toggled = {**scope, "path": path.rstrip("/") if path.endswith("/") else path + "/"}
        return any(r.matches(toggled)[0] is not Match.NONE for r in router.routes)

    async def refusal(self, scope: Scope) -> ApiError:
        """The answer to ``scope``, a path FastMCP does not serve."""
        method, path = scope["method"], scope["path"]
        for route in self.routes:
            if isinstance(route, Route) and route.methods and \
                    route.matches(scope)[0] is Match.PARTIAL:
                return _wrong_method(method, path, ", ".join(sorted(route.methods)))
        if (discovery := self.discovery(scope)) is not None:
            return discovery
        if self.proxied and path.removeprefix(str(scope.get("root_path") or "")).startswith(
                self.proxied + "/"):  # not the root_path a server was told (--root-path)
            return ApiError(404, "not_found", f"{method} {path}: no such path; the proxy in "
                            f"front must cut {self.proxied} (MCP_GATEWAY_PUBLIC_URL's path), "
                            f"sending {path.removeprefix(self.proxied)} here: nginx's "
                            f"'location {self.proxied}/ {{ proxy_pass http://<gateway "
                            "address>/; }', with the final '/'",
                            {"path": path, "proxied": self.proxied})
        if not await self.may_see(scope):
            # A browser cannot send a token: it is told where the dashboard is (its path
            # is no secret: /ui redirects to its login page for anyone).
            page = dashboard_hint(scope, sorted(self.pages))
            return ApiError(404, "not_found", f"{method} {path}: no such path on this "
                            f"gateway{page}; send 'Authorization: Bearer <token>' with one "
                            "of its tokens to be told what it serves", {"path": path})
        listing = ", ".join(f"{at} ({what})" for at, what in self.served.items())
        return ApiError(404, "not_found", f"{method} {path}: no such path; this gateway "
                        f"serves {listing}", {"path": path, "served": dict(self.served)})


def dashboard_hint(scope: Scope, pages: Sequence[str]) -> str:
    """"; the dashboard is at /ui/" (under the request's ``root_path``) for a browser's
    request (``Accept: text/html``) where the app serves a dashboard (``pages``), else ""."""
    accept = next((v for k, v in scope.get("headers", ()) if k == b"accept"), b"")
    if not pages or b"text/html" not in accept:
        return ""
    return f"; the dashboard is at {scope.get('root_path') or ''}{pages[0]}"
