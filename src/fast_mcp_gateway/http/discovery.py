"""OAuth discovery the gateway does not serve, answered with how it authenticates.

An MCP client that meets a 401 -- or probes first -- looks for OAuth metadata: the
authorization server's (RFC 8414 ``/.well-known/oauth-authorization-server``, OIDC
``openid-configuration``, each also with the endpoint's path) and the protected
resource's (RFC 9728).  The gateway serves the last only with ``gateway.auth.jwt``
(``auth.mcp_auth``); every other probe was FastMCP's bare "Not Found", which a user
read as a broken OAuth setup.  ``discovery_refusal`` words the 404 (the status clients
take for "no metadata here") for the gateway's authentication as configured: none
(nothing to discover), bearer tokens (send the header; no OAuth sign-in), or JWTs
(the protected-resource metadata, which names the issuer).
"""

from __future__ import annotations

from fast_mcp_gateway.config.auth import AuthConfig
from fast_mcp_gateway.http.errors import ApiError

_PREFIXES = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration",
             "/.well-known/oauth-protected-resource")
_SUFFIXES = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


def is_discovery(path: str) -> bool:
    """Whether ``path`` is one an OAuth client probes for metadata."""
    return path.startswith(_PREFIXES) or path.endswith(_SUFFIXES)


def discovery_refusal(method: str, path: str, *, auth: AuthConfig | None,
                      metadata: str | None) -> ApiError | None:
    """The 404 for an OAuth discovery ``path`` the gateway does not serve, under
    ``auth`` (the running ``gateway.auth``) with ``metadata`` the URL of the RFC 9728
    document it serves (None: none); None for a path that is no discovery."""
    if not is_discovery(path):
        return None
    said = f"{method} {path}: "
    if auth is None:
        return ApiError(404, "not_found", said + (
            "this gateway has no OAuth discovery and needs none: without gateway.auth its "
            "MCP endpoint takes requests without a token (on loopback only); connect "
            "without signing in"), {"path": path, "auth": "none"})
    if metadata is None:
        jwt = (" or a JWT from the issuer in gateway.auth.jwt (restart the gateway to "
               "serve its metadata)") if auth.jwt is not None else ""
        return ApiError(404, "not_found", said + (
            "this gateway does not use OAuth, so there is nothing to discover: its MCP "
            f"endpoint takes a bearer token from gateway.auth.tokens{jwt}; give the MCP "
            "client the header 'Authorization: Bearer <token>' ('mcp-gateway token new' "
            "makes a token) instead of an OAuth sign-in"), {"path": path, "auth": "bearer"})
    issuer = auth.jwt.issuer if auth.jwt is not None else None
    return ApiError(404, "not_found", said + (
        "this gateway is not an OAuth authorization server: it takes JWTs from the "
        f"issuer in gateway.auth.jwt ({issuer}), named by its protected-resource "
        f"metadata at {metadata}: discover the authorization server from there"),
        {"path": path, "auth": "jwt", "resource_metadata": metadata,
         "authorization_server": issuer})
