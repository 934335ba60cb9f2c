"""Who an HTTP request is, and what it may do: the one decision every HTTP front shares.

``Access.principal_for(request)`` is used by the REST API and is meant for the MCP side
and the dashboard as well, so that a token means the same everywhere:

* ``gateway.auth`` configured: a request needs ``Authorization: Bearer <token>``,
  verified by the one ``GatewayVerifier``; no token or a bad one is a 401.
* no ``auth`` (secure by default): the caller is ``ANONYMOUS`` with scope ``tools``
  only, so admin operations are refused with a 403 that says how to add a token;
  ``allow_unauthenticated_admin`` (``--allow-unauthenticated-admin``, loopback only)
  makes the anonymous caller an admin.

``require(principal, scope)`` is the scope check (403 naming the missing scope).

``Access.current()`` is the same decision for the MCP endpoint, where FastMCP has
already verified the token (401 otherwise): the call pipeline and the ``gateway_*``
tools get it injected as their principal resolver.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from fastmcp.server.dependencies import get_access_token, get_http_request
from starlette.requests import HTTPConnection
from starlette.types import Scope as ASGIScope

from fast_mcp_gateway._compat import current_transport
from fast_mcp_gateway.config.auth import SCOPES, Scope
from fast_mcp_gateway.http import jwt_refusals
from fast_mcp_gateway.http.auth import GatewayVerifier, principal_of
from fast_mcp_gateway.http.errors import ApiError, forbidden, unauthorized
from fast_mcp_gateway.http.query_tokens import in_query
from fast_mcp_gateway.principal import LOCAL, Principal, Standing

ANONYMOUS = Principal(name="anonymous", scopes=frozenset({"tools"}), kind="anonymous")
"""A caller of an HTTP gateway without ``gateway.auth``: may read and call, not manage."""

lane_principal: ContextVar[Principal | None] = ContextVar("lane_principal", default=None)
"""The caller of a call the HTTP express lane serves (``http/lane.py``), which verified
its token with ``Access.principal_for`` before FastMCP's auth middleware would have."""

ANONYMOUS_ADMIN = Principal(name="anonymous", scopes=frozenset(SCOPES), kind="anonymous")
"""The same caller under ``allow_unauthenticated_admin``."""

NOBODY = Principal(name="unauthenticated", scopes=frozenset(), servers=frozenset(),
                   kind="anonymous")
"""An HTTP request without a verified token on a gateway with ``auth`` (FastMCP answers
401 before the gateway sees one; this is the fail-closed answer if it ever did)."""

_ANONYMOUS, _ANONYMOUS_ADMIN = (ANONYMOUS, None), (ANONYMOUS_ADMIN, None)  # no token: no binding

HOW_TO_ADD_A_TOKEN = (
    "add a token under gateway.auth.tokens in servers.yaml (make one with "
    "'mcp-gateway token new --name NAME --scopes admin') and send it as "
    "'Authorization: Bearer <token>'; or, on loopback only, start the gateway with "
    "--allow-unauthenticated-admin")


# The refusals of every HTTP surface (REST, the MCP endpoint: http/app.py), one wording;
# a JWT is named only where gateway.auth.jwt takes one.
_JWT = " or a JWT from the issuer in gateway.auth.jwt"


def no_token(jwt: bool, query: str | bytes = "") -> str:
    """The words of a 401 for a request without a bearer token; ``query``: its URL's
    query string, where a client may have put the token instead (``in_query``)."""
    return ("this gateway requires a bearer token: send 'Authorization: Bearer <token>' "
            "with one of its tokens ('mcp-gateway token new' makes one)" + (_JWT if jwt else "")
            + in_query(query))


def bad_token(jwt: bool) -> str:
    """The words of a 401 for a token that did not verify: why, for a JWT the verifier
    could explain (``jwt_refusals``, read from the request's context) or a static token
    a reload removed (``auth.REMOVED``), else the causes."""
    reason = jwt_refusals.refusal.get()
    if reason is not None:
        # A quoted-string in WWW-Authenticate: no double quote, backslash or control.
        reason = "".join(c for c in reason if " " <= c <= "~" and c not in '"\\')
        return f"the bearer token is not valid: {reason}"
    return ("the bearer token is not valid (unknown, expired or not for this gateway): "
            "send one of its tokens ('mcp-gateway token new' makes one, gateway.auth.tokens "
            "lists them by digest)" + (_JWT if jwt else ""))


NO_TOKEN, BAD_TOKEN = no_token(False), bad_token(False)  # a gateway of static tokens


@dataclass(frozen=True)
class Access:
    """The access policy of one HTTP app: its verifier (``None`` without ``auth``)."""

    verifier: GatewayVerifier | None
    allow_unauthenticated_admin: bool = False
    # The RFC 9728 document's URL for the current request, when served (``advertised``)
    resource_metadata: Callable[[], str] | None = None

    def _metadata(self) -> str | None:
        return None if self.resource_metadata is None else self.resource_metadata()

    async def principal_for(self, request: HTTPConnection) -> Principal:
        """The caller of ``request``, or an ``ApiError`` 401 (no token, bad token)."""
        return (await self.caller_of(request.headers.get("authorization"),
                                     request.url.query))[0]

    async def principal_of(self, header: str | None) -> Principal:
        """``principal_for`` a request whose ``Authorization`` header is ``header``."""
        return (await self.caller_of(header))[0]

    async def caller_of(self, header: str | None, query: str | bytes = ""
                        ) -> tuple[Principal, str | None]:
        """``principal_of``, and the caller binding the full path seals into the
        ``requestState`` of the request's asking rounds (``GatewayVerifier.caller``;
        ``None`` without ``auth``, as FastMCP sees no token then): the HTTP express
        lane, which has the headers decoded already, seals and opens them with it.
        ``query``: the request's query string, which a 401 for want of a token reads
        (``in_query``)."""
        if self.verifier is None:
            return _ANONYMOUS_ADMIN if self.allow_unauthenticated_admin else _ANONYMOUS
        if header is None:
            raise unauthorized(no_token(self.verifier.takes_jwt, query), bad_token=False,
                               resource_metadata=self._metadata())
        # Read as FastMCP's guard reads it (the SDK's BearerAuthBackend: "bearer " in any
        # case, the rest the token as it is), so that the express lane, the roots note
        # and the REST API never take a header the MCP endpoint refuses.
        token = header[7:] if header[:7].lower() == "bearer " else ""
        if not token or token != token.strip():
            raise unauthorized("the Authorization header must be 'Bearer <token>', one "
                               "space between them and none around the token",
                               bad_token=True, resource_metadata=self._metadata())
        found = await self.verifier.caller(token)
        if found is None:  # the token itself never goes into the message
            raise unauthorized(bad_token(self.verifier.takes_jwt),
                               bad_token=True, resource_metadata=self._metadata())
        return found

    async def verified(self, scope: ASGIScope) -> tuple[Principal, str | None] | None:
        """``caller_of`` the ASGI request ``scope`` (its first ``Authorization`` header,
        as starlette reads it), or None when its token does not verify: what must be
        known before anything reads a request's body ahead of FastMCP's auth guard,
        whose 401 never reads it (an unverified client could otherwise make the gateway
        hold a body of up to the endpoint's limit for as long as it takes to send).
        A token that did not verify is not verified again by that guard."""
        header = next((value.decode("latin-1") for key, value in scope["headers"]
                       if key == b"authorization"), None)
        try:
            return await self.caller_of(header)
        except ApiError:
            token = header[7:] if header and header[:7].lower() == "bearer " else ""
            if self.verifier is not None and token and token == token.strip():
                # Refused by the verifier (not for its form): FastMCP's guard, which
                # answers next, refuses it as this did, unverified.
                self.verifier.refused_for_request(token)
            return None

    def current(self) -> Principal:
        """The caller of the MCP request being served: its verified token's principal,
        the anonymous policy without ``auth``; ``LOCAL`` only off HTTP (an in-process
        ``fastmcp.Client``, the library's own calls)."""
        if (principal := lane_principal.get()) is not None:
            return principal
        token = get_access_token()
        if token is not None:
            return principal_of(token)
        try:
            get_http_request()
        except RuntimeError:
            # The transport contextvar (fastmcp 4.x) is set for every HTTP/SSE request,
            # including a legacy session's task, which may lack the request itself.
            if current_transport() in (None, "stdio"):
                return LOCAL
        if self.verifier is None:
            return ANONYMOUS_ADMIN if self.allow_unauthenticated_admin else ANONYMOUS
        return NOBODY

    def standing(self) -> Standing:
        """``current`` as a lookup for later, looked up again whenever it is called: a
        static token's principal as the running ``gateway.auth`` has it then (None once
        a reload removed the token: ``GatewayVerifier.standing``); a JWT's (its claims
        name its servers, not the config) until it expires (``jwt_standing``), the
        anonymous caller and ``LOCAL`` as now."""
        principal = self.current()
        token = get_access_token() if lane_principal.get() is None else None
        if self.verifier is None or token is None or principal.kind not in ("token", "jwt"):
            return Standing(lambda: principal)
        if principal.kind == "jwt":
            return self.verifier.jwt_standing(principal, token.expires_at)
        return self.verifier.standing(token.token)


def require(principal: Principal, scope: Scope, what: str) -> None:
    """Refuse (403) unless ``principal`` has ``scope``; ``what`` names the operation."""
    if principal.has(scope):
        return
    if principal.kind == "anonymous":
        raise forbidden(scope, f"{what} needs scope '{scope}', and this gateway has no "
                               f"authentication configured: {HOW_TO_ADD_A_TOKEN}")
    raise forbidden(scope, f"{what} needs scope '{scope}'; {principal.holds}")


__all__ = ["ANONYMOUS", "ANONYMOUS_ADMIN", "NOBODY", "Access", "ApiError", "lane_principal",
           "require"]


def outside_servers(principal: Principal, owner: str, server: str) -> bool:
    """Whether ``principal`` may not call a tool of ``owner`` routed to ``server`` (a
    token's ``servers``, a JWT's claim): the express lanes leave such a call to the full
    path, which words it ("Unknown tool"); one test for both lanes."""
    servers = principal.servers
    return servers is not None and not (owner in servers and server in servers)
