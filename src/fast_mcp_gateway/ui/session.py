"""Who is looking at the dashboard: the login cookie, the anonymous policy, CSRF tokens.

The dashboard accepts the same tokens as the REST API and MCP (``DashboardAuth.of``
over the HTTP app's ``Access``), or, for the dashboard a stdio gateway serves beside
stdio, one-time login links (``DashboardAuth.one_time`` over ``ui.login_links``): a
link's token is spent by the first login, which opens a server-side session; the
cookie then holds that session's random id, never a token.

* With tokens, ``/ui/login`` takes one, redeems it (``redeem``), and keeps it in an HttpOnly,
  ``SameSite=Strict`` cookie (``Secure`` over https); every request re-verifies it,
  so a token removed from the config stops working at once.  The cookie carries the
  token itself rather than a server-side session id so that N gateways behind one
  load balancer all accept it.
* Without ``gateway.auth`` (HTTP mode on loopback), the viewer is the anonymous
  principal of ``Access``: it may look, and may change things only under
  ``--allow-unauthenticated-admin``, exactly as the REST API.

Every mutation carries a CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``) checked in constant time.  For a token session it is a digest of the
token (it never reveals it, and every gateway instance computes the same); for the
anonymous viewer and the login form it is an HMAC under a per-process secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from fast_mcp_gateway.config.auth import SCOPES
from fast_mcp_gateway.http.access import ANONYMOUS, ANONYMOUS_ADMIN, Access
from fast_mcp_gateway.http.auth import principal_of
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.ui.login_links import PROBLEMS, LoginLinks

COOKIE = "mgw_dashboard"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_TOKEN = 8192  # a JWT can be long; anything longer is not a token

DASHBOARD_OWNER = Principal(name="dashboard", scopes=frozenset(SCOPES), kind="local")
"""Whoever opened a stdio gateway's one-time login link (the user who started it)."""

Verify = Callable[[str], Awaitable[Principal | None]]


@dataclass(frozen=True)
class Viewer:
    """The principal behind one dashboard request, and its CSRF token."""

    principal: Principal
    csrf: str
    logged_in: bool  # holds a login cookie (offer "log out")

    @property
    def admin(self) -> bool:
        return self.principal.has("admin")

    def may_use(self, server: str) -> bool:
        return self.principal.may_use(server)


class DashboardAuth:
    """How the dashboard decides who a request is (see the module docstring)."""

    def __init__(self, verify: Verify | None, anonymous: Principal | None, *,
                 secure_cookies: bool = False, links: LoginLinks | None = None) -> None:
        self._verify = verify
        self.anonymous = anonymous
        self.secure_cookies = secure_cookies
        self.links = links
        self._secret = secrets.token_bytes(32)

    @classmethod
    def of(cls, access: Access, *, secure_cookies: bool = False) -> DashboardAuth:
        """The HTTP app's policy: its verifier's tokens, else its anonymous caller."""
        verifier = access.verifier
        if verifier is None:
            anonymous = ANONYMOUS_ADMIN if access.allow_unauthenticated_admin else ANONYMOUS
            return cls(None, anonymous, secure_cookies=secure_cookies)

        async def verify(token: str) -> Principal | None:
            verified = await verifier.verify_token(token)
            return None if verified is None else principal_of(verified)

        return cls(verify, None, secure_cookies=secure_cookies)

    @classmethod
    def one_time(cls, links: LoginLinks) -> DashboardAuth:
        """One-time login links for the owner only; the cookie holds a session id."""

        async def verify(session: str) -> Principal | None:
            return DASHBOARD_OWNER if links.has_session(session) else None

        return cls(verify, None, links=links)

    @property
    def needs_login(self) -> bool:
        return self._verify is not None

    def _mac(self, what: bytes) -> str:
        return hmac.new(self._secret, what, hashlib.sha256).hexdigest()[:40]

    @staticmethod
    def _token_csrf(token: str) -> str:
        return hashlib.sha256(b"mgw-dashboard-csrf\0" + token.encode("utf-8", "surrogatepass")
                              ).hexdigest()[:40]

    @property
    def login_csrf(self) -> str:
        return self._mac(b"login")

    async def verify(self, token: str) -> Principal | None:
        """The principal of a cookie's value (a token, or a one-time link's session)."""
        if self._verify is None or not token or len(token) > MAX_TOKEN:
            return None
        return await self._verify(token)

    async def redeem(self, token: str) -> tuple[str | None, str | None]:
        """What a login with ``token`` keeps in the cookie, or why it is refused.

        A gateway token is verified and kept as it is; a one-time link's token is
        spent (a second use is refused) and a new session's id is kept instead."""
        if self.links is None:
            if await self.verify(token) is None:
                return None, ("That token is not valid for this gateway (unknown, expired "
                              "or mistyped).")
            return token, None
        outcome = self.links.redeem(token)
        if outcome != "ok":
            return None, PROBLEMS[outcome]
        return self.links.open_session(), None

    async def viewer(self, request: Request) -> Viewer | None:
        """The request's viewer; ``None`` means "log in first"."""
        if self._verify is None:
            assert self.anonymous is not None
            return Viewer(self.anonymous, self._mac(b"anonymous"), logged_in=False)
        token = request.cookies.get(COOKIE, "")
        principal = await self.verify(token)
        if principal is None:
            return None
        return Viewer(principal, self._token_csrf(token), logged_in=True)

    def login(self, response: Response, request: Request, token: str) -> None:
        """Keep ``token`` in the session cookie (what ``redeem`` returned)."""
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                            secure=self.secure_cookies or request.url.scheme == "https",
                            path=_cookie_path(request))

    def logout(self, response: Response, request: Request) -> None:
        if self.links is not None:
            self.links.close_session(request.cookies.get(COOKIE, ""))
        response.delete_cookie(COOKIE, httponly=True, samesite="strict",
                               secure=self.secure_cookies or request.url.scheme == "https",
                               path=_cookie_path(request))


def csrf_ok(expected: str, request: Request, form_value: str | None) -> bool:
    """Whether the request carries ``expected`` as the header or the form field."""
    given = request.headers.get(CSRF_HEADER) or form_value or ""
    return hmac.compare_digest(given.encode(), expected.encode())


def _cookie_path(request: Request) -> str:
    # The dashboard's own prefix (e.g. /ui): the cookie never goes to /mcp or /api.
    return str(request.scope.get("root_path", "")) or "/"
