"""Getting a token from an authorization server: the ``client_credentials`` grant
(RFC 6749 4.4) and finding the token endpoint from the ``issuer``'s metadata (RFC 8414,
then OpenID Connect discovery).

Imported only for a server with ``auth:`` (``upstream/bearer.py``, on its first
connect): a gateway without one loads none of this.  The SDK's ``mcp.client.auth`` is not
used: its client-credentials extension brings PyJWT and ``cryptography`` (~2.3 MB), and
its models require what a machine-account authorization server may not publish (an
``authorization_endpoint``).

Every failure is a ``SignInFailed`` whose words name the endpoint, the HTTP status or the
OAuth ``error`` code (a short word, checked: never the server's ``error_description``,
which may echo what was sent) and the setting to fix.  No secret is ever in them.  A 400
or 401 with no OAuth ``error`` code (a proxy's page, an empty body) is no refusal of the
client: transient (``retryable``), quoting the status and the answer's first characters,
masked -- as a refresh's (``oauth_grant.py``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from fast_mcp_gateway.config.upstream_auth import UpstreamAuth, endpoint_problem
from fast_mcp_gateway.errors import SignInFailed
from fast_mcp_gateway.telemetry.redaction import CALLERS

logger = logging.getLogger(__name__)

MIN_MARGIN = 60.0
TOKEN_TIMEOUT = 15.0
"""Seconds one request to an authorization server may take (metadata or token)."""
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")
_CLIENT_REFUSED = frozenset({"invalid_client", "unauthorized_client"})
_SHOWN = 60  # characters of an answer that is no token, quoted (masked) in the error


@dataclass(frozen=True, kw_only=True)
class Token:
    """An access token as an authorization server granted it (never shown anywhere)."""

    access: str
    expires_at: float | None  # wall clock; None: the server said nothing
    lifetime: float | None  # seconds it was granted for
    refresh: str | None = None

    def __repr__(self) -> str:  # a token in a traceback's locals is a token in a log
        return f"Token(expires_at={self.expires_at!r})"

    @property
    def renew_at(self) -> float | None:
        """When to renew it: 10 % of its lifetime before it ends, at least 60 s before,
        at most half of its lifetime (None: it does not say when it ends)."""
        if self.expires_at is None or self.lifetime is None:
            return None
        return self.expires_at - min(max(MIN_MARGIN, self.lifetime / 10), self.lifetime / 2)


def token_of(data: dict[str, Any], now: float) -> Token | None:
    """The token of a token endpoint's JSON answer (RFC 6749 5.1), registered with the
    redaction registry; None when it holds no Bearer ``access_token``."""
    access, expires_in = data.get("access_token"), data.get("expires_in")
    kind, refresh = data.get("token_type", "Bearer"), data.get("refresh_token")
    if not isinstance(access, str) or not access or not isinstance(kind, str) \
            or kind.lower() != "bearer":
        return None
    refresh = refresh if isinstance(refresh, str) and refresh else None
    CALLERS.add([access, *([refresh] if refresh else [])])
    lifetime = float(expires_in) if isinstance(expires_in, int | float) \
        and not isinstance(expires_in, bool) and expires_in > 0 else None
    return Token(access=access, lifetime=lifetime, refresh=refresh,
                 expires_at=None if lifetime is None else now + lifetime)


def error_code(data: Any) -> str | None:
    """An OAuth error answer's ``error`` when it is a plain code (never its description)."""
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def quoted_answer(response: httpx2.Response) -> str:
    """The first characters of an answer that is no token (secrets masked)."""
    from fast_mcp_gateway.telemetry.redaction import mask_text

    text = " ".join(response.content[:_SHOWN * 4].decode(errors="replace").split())
    if not text:
        return "an empty body"
    kind = response.headers.get("content-type", "").partition(";")[0].strip() or "no type"
    text = mask_text(text)  # before the cut: a secret cut short would not match
    return f"{kind}: {text[:_SHOWN]!r}{'...' if len(text) > _SHOWN else ''}"


def origin_client(server: str, url: str | None, tls: Any, **options: Any
                  ) -> httpx2.AsyncClient:
    """An httpx client for a server's OAuth requests: its ``tls:`` (a private CA, a
    client certificate: ``config/upstream_tls.py``) for requests to its own host -- the
    sign-in's probe of its URL, an authorization server on the same host -- the default
    trust elsewhere (another host's authorization server is not that CA's).
    ``SignInFailed`` when a ``tls:`` file cannot be used."""
    from fast_mcp_gateway.config.upstream_tls import TlsFileProblem

    host = urlsplit(url).hostname if tls is not None and url else None
    if host:
        try:
            context = tls.context(httpx2.create_ssl_context)
        except TlsFileProblem as exc:
            raise SignInFailed(server, f"its tls: {exc}") from None
        pattern = f"https://[{host}]" if ":" in host else f"https://{host}"
        options["mounts"] = {pattern: httpx2.AsyncHTTPTransport(verify=context)}
    return httpx2.AsyncClient(**options)


def discovery_urls(issuer: str) -> list[str]:
    """Where ``issuer``'s metadata may be (RFC 8414 3.1, then OpenID Connect's two)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(p: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, p, "", ""))

    urls = [at(f"/.well-known/oauth-authorization-server{path}"),
            at(f"/.well-known/openid-configuration{path}")]
    if path:
        urls.append(at(f"{path}/.well-known/openid-configuration"))
    return urls


def same_issuer(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class ClientCredentialsGrant:
    """Tokens for one server's machine account (``auth: {type: client_credentials}``).

    ``fetch`` asks for a new token each time (a client-credentials grant has no refresh
    token); the token endpoint found from ``issuer`` is kept for the process's life.
    ``resource`` is the server's URL (RFC 8707: the token is for that server only)."""

    def __init__(self, server: str, auth: UpstreamAuth, resource: str,
                 clock: Callable[[], float] = time.time, tls: Any = None) -> None:
        assert auth.client_id is not None and auth.client_secret is not None
        self.server, self.auth, self.resource, self.tls = server, auth, resource, tls
        self._clock = clock
        self._endpoint = auth.token_url
        CALLERS.add([auth.client_secret])

    def _fail(self, message: str, retryable: bool = False) -> SignInFailed:
        return SignInFailed(self.server, message, retryable=retryable)

    async def fetch(self, current: Token | None = None) -> Token:
        """A new token, or ``SignInFailed`` saying why not and what to fix."""
        async with origin_client(self.server, self.resource, self.tls, timeout=TOKEN_TIMEOUT,
                                 follow_redirects=False) as client:
            endpoint = self._endpoint or await self._discover(client)
            self._endpoint = endpoint
            form = {"grant_type": "client_credentials", "resource": self.resource}
            if self.auth.scopes:
                form["scope"] = " ".join(self.auth.scopes)
            basic: Any = None
            assert self.auth.client_id is not None and self.auth.client_secret is not None
            if self.auth.token_endpoint_auth_method == "client_secret_post":
                form.update(client_id=self.auth.client_id, client_secret=self.auth.client_secret)
            else:
                basic = httpx2.BasicAuth(self.auth.client_id, self.auth.client_secret)
            try:
                response = await client.post(endpoint, data=form, auth=basic,
                                             headers={"accept": "application/json"})
            except httpx2.HTTPError as exc:
                raise self._fail(self._unreachable(endpoint, exc), True) from None
        token = self._token(endpoint, response)
        logger.info("upstream %s: got a token from %s (client %s%s)", self.server, endpoint,
                    self.auth.client_id, f", valid {token.lifetime:.0f} s"
                    if token.lifetime is not None else "")
        return token

    def _unreachable(self, url: str, exc: BaseException) -> str:
        setting = "auth.token_url" if self.auth.token_url else "auth.issuer"
        return (f"cannot reach the authorization server at {url} ({type(exc).__name__}); "
                f"check {setting} and that the server is up (the gateway tries again)")

    async def _discover(self, client: httpx2.AsyncClient) -> str:
        issuer = self.auth.issuer
        assert issuer is not None
        tried = []
        for url in discovery_urls(issuer):
            try:
                response = await client.get(url, headers={"accept": "application/json"})
            except httpx2.HTTPError as exc:
                raise self._fail(self._unreachable(url, exc), True) from None
            tried.append(url)
            if response.status_code != 200:
                continue
            try:
                data = response.json()
            except ValueError:
                continue
            if not isinstance(data, dict) or not isinstance(data.get("token_endpoint"), str):
                continue
            named = data.get("issuer")
            if not isinstance(named, str) or not same_issuer(named, issuer):
                raise self._fail(
                    f"the metadata at {url} is for another issuer than auth.issuer "
                    f"{issuer!r}; check auth.issuer (it must be the authorization server's "
                    "issuer exactly), or give auth.token_url")
            endpoint: str = data["token_endpoint"]
            if (problem := endpoint_problem(endpoint)) is not None:
                raise self._fail(f"the token endpoint in {issuer}'s metadata: {problem}")
            return endpoint
        raise self._fail(
            f"found no authorization-server metadata for auth.issuer {issuer!r} (tried "
            f"{', '.join(tried)}); check auth.issuer, or give auth.token_url instead")

    def _token(self, endpoint: str, response: httpx2.Response) -> Token:
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        code = error_code(data)
        if code is None and status in (400, 401):  # a proxy's page, an empty body
            logger.warning("upstream %s: %s answered HTTP %d with no OAuth error, not a "
                           "token: tried again", self.server, endpoint, status)
            raise self._fail(f"the authorization server at {endpoint} answered HTTP "
                             f"{status} to a token request, not a token and no OAuth error "
                             f"({quoted_answer(response)}); the gateway tries again (if it "
                             "lasts: check auth.token_url or auth.issuer, and any proxy "
                             "between)", True)
        if status != 200 or not isinstance(data, dict):
            raise self._fail(self._refusal(endpoint, status, code), status >= 500)
        token = token_of(data, self._clock())
        if token is None:
            raise self._fail(f"{endpoint} answered without a Bearer access_token; check "
                             "that auth.token_url (or auth.issuer) is the authorization "
                             "server's token endpoint")
        return token

    def _refusal(self, endpoint: str, status: int, code: str | None) -> str:
        if code in _CLIENT_REFUSED:
            return (f"the authorization server ({endpoint}) refused the client "
                    f"{self.auth.client_id!r} (HTTP {status}{f', {code}' if code else ''}); "
                    "check auth.client_id and auth.client_secret, and "
                    "auth.token_endpoint_auth_method (client_secret_basic or "
                    "client_secret_post) if the server expects the other")
        if code == "invalid_scope":
            return (f"the authorization server ({endpoint}) refused the scopes asked "
                    f"({' '.join(self.auth.scopes) or 'none'}: invalid_scope); check "
                    "auth.scopes")
        if code is not None:
            return (f"the authorization server ({endpoint}) refused the token request "
                    f"(HTTP {status}, {code}); check the client's settings there and auth:")
        if status >= 500:
            return (f"the authorization server ({endpoint}) failed (HTTP {status}); the "
                    "gateway tries again")
        return (f"{endpoint} answered HTTP {status} to a token request, not a token; check "
                "that auth.token_url (or auth.issuer) names the authorization server")
