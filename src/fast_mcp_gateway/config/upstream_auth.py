"""How the gateway signs in to a server it reaches by ``url:`` (the ``auth:`` block), and
the checks across a server's fields that say who chooses its credentials.

Two kinds (``type``):

* ``client_credentials``: a machine account (``client_id`` + ``client_secret``); the
  gateway asks the authorization server for a token (RFC 6749 4.4) at its ``token_url``,
  or at the token endpoint its ``issuer``'s metadata names (RFC 8414), and asks again
  before the token expires (``upstream/bearer.py``).  No person is involved.
* ``oauth``: a person signs in once (authorization code + PKCE, ``upstream/sign_in.py``:
  the admin tool ``gateway_sign_in`` or ``mcp-gateway login``); the tokens are kept sealed
  in the store and refreshed (``upstream/oauth_grant.py``).  ``client_id`` (and
  ``client_secret``, only with ``issuer``) name a client registered beforehand; without
  them the gateway registers itself (RFC 7591).

The ``client_secret`` is a secret like an ``Authorization`` header: registered with the
redaction registry, masked in every listing (``ServerConfig.redacted``), taken from the
environment as ``${VAR}``.  Every refusal names the field and the fix
(docs/design/upstream-oauth.md, section 2).
"""

from __future__ import annotations

import ipaddress
from typing import Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fast_mcp_gateway.telemetry.redaction import MASK

AuthType = Literal["client_credentials", "oauth"]
ClientAuthMethod = Literal["client_secret_basic", "client_secret_post"]
_LOOPBACK_NAMES = frozenset({"localhost"})


class UpstreamAuth(BaseModel):
    """A server's ``auth:`` block (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type: AuthType = Field(description="client_credentials (a machine account) or oauth (a "
                                       "person signs in once)")
    client_id: str | None = Field(default=None, min_length=1, max_length=1024)
    client_secret: str | None = Field(default=None, min_length=1, max_length=4096,
                                      description="write it as ${VAR}")
    issuer: str | None = Field(
        default=None, max_length=2048,
        description="the authorization server; its RFC 8414 metadata names the token "
                    "endpoint")
    token_url: str | None = Field(default=None, max_length=2048,
                                  description="the token endpoint (instead of issuer)")
    scopes: tuple[str, ...] = Field(default=(), max_length=64)
    per: Literal["gateway"] = Field(
        default="gateway", description="oauth: one sign-in for every caller (per caller: "
                                       "not in this version)")
    token_endpoint_auth_method: ClientAuthMethod = Field(
        default="client_secret_basic",
        description="how the client authenticates at the token endpoint")

    @field_validator("scopes")
    @classmethod
    def _valid_scopes(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        for i, scope in enumerate(scopes):
            if not scope or any(c.isspace() for c in scope) or '"' in scope \
                    or "\\" in scope or not scope.isprintable():
                raise ValueError(f"scopes[{i}]: a scope is a non-empty word without spaces, "
                                 "quotes or backslashes; write a list: scopes: [read, write]")
        return scopes

    @field_validator("issuer", "token_url")
    @classmethod
    def _valid_endpoint(cls, url: str | None) -> str | None:
        if url is not None and (problem := endpoint_problem(url)) is not None:
            raise ValueError(problem)
        return url

    @model_validator(mode="after")
    def _complete(self) -> UpstreamAuth:
        if self.client_secret == MASK:  # an edit sending back what a listing shows
            raise ValueError("client_secret: '***' is how a listing shows the secret, not "
                             "the secret; give it again (as ${VAR})")
        if self.client_secret is not None and self.client_id is None:
            raise ValueError("client_secret needs client_id (the client it belongs to)")
        if self.type == "oauth":
            if self.token_url is not None or "token_endpoint_auth_method" in \
                    self.model_fields_set:
                raise ValueError("token_url and token_endpoint_auth_method are for type "
                                 "client_credentials; a sign-in finds the authorization "
                                 "server from the server itself (or give issuer)")
            if self.client_secret is not None and self.issuer is None:
                raise ValueError("issuer is required with client_secret, so the secret is "
                                 "only ever sent to that authorization server")
            return self
        if self.client_id is None or self.client_secret is None:
            raise ValueError("type client_credentials needs client_id and client_secret "
                             "(the machine account's; write the secret as ${VAR})")
        if self.issuer is None and self.token_url is None:
            raise ValueError("give issuer (its metadata names the token endpoint) or "
                             "token_url (the token endpoint itself)")
        return self


def endpoint_problem(url: str) -> str | None:
    """Why ``url`` may not receive a client secret, or None: it must be ``https://``
    (``http://`` only on the loopback interface, where nothing crosses a network)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return f"{url!r} is not a valid URL; write e.g. https://login.example.com/realms/ops"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return None
    return (f"{url!r} must be https:// (http:// only for 127.0.0.1, ::1 or localhost): the "
            "client secret and the tokens travel to it")


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(Protocol):
    """What the cross-field checks read of a ``ServerConfig`` (schema.py imports this
    module: no import back)."""

    @property
    def auth(self) -> UpstreamAuth | None: ...
    @property
    def command(self) -> str | None: ...
    @property
    def transport(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def isolation(self) -> str: ...
    @property
    def replicas(self) -> int: ...
    @property
    def instances(self) -> tuple[_Target, ...]: ...
    @property
    def model_fields_set(self) -> set[str]: ...
    @property
    def uses_caller_credentials(self) -> bool: ...
    @property
    def per_client(self) -> bool: ...


class _Target(Protocol):
    @property
    def command(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, str]: ...


def credential_problem(server: _Server) -> str | None:
    """The first conflict between ``auth:``, caller credentials and ``isolation``, or
    None (``ServerConfig``'s validator raises it)."""
    if server.auth is not None:
        targets = [server, *server.instances]
        if any(t.command is not None for t in targets) or server.transport == "stdio":
            return ("auth: applies to servers reached by url:; a stdio server takes its "
                    "credentials from env:")
        if any(k.lower() == "authorization" for t in targets for k in t.headers):
            return ("both auth: and headers.Authorization set the upstream's "
                    "Authorization header; remove one")
        if server.uses_caller_credentials:
            return ("auth: and ${caller.token} / ${caller.claims.<name>} both choose the "
                    "upstream credential; keep one")
    if server.uses_caller_credentials:
        if server.command is not None or server.transport == "stdio":
            return ("${caller.token} / ${caller.claims.<name>} can only be used in the "
                    "headers of an HTTP upstream (url:), not for a stdio server")
        if "isolation" in server.model_fields_set and server.isolation == "shared":
            return ("a server whose headers use ${caller.token} or ${caller.claims.<name>} "
                    "is per_client (one upstream session per caller); remove "
                    "'isolation: shared'")
    if server.per_client and (server.replicas > 1 or server.instances):
        return ("isolation: per_client gives each host its own upstream session, so "
                "'replicas' and 'instances' do not apply; remove them or use "
                "isolation: shared")
    return None
