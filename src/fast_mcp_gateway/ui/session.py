"""Who is looking at the dashboard: the login session, the anonymous policy, CSRF tokens.

The dashboard accepts the same tokens as the REST API and MCP (``DashboardAuth.of``
over the HTTP app's ``Access``), or, for the dashboard a stdio gateway serves beside
stdio, one-time login links (``DashboardAuth.one_time`` over ``ui.login_links``).
Either way a login opens a server-side session (``login_links.Sessions``, the one
table of both) and the cookie holds only that session's random id, never a token:

* With tokens, ``/ui/login`` takes one and verifies it (``redeem``); the session keeps
  it in this process's memory and every request re-verifies it, so the token's scopes
  and ``servers`` apply, and a token removed from the config (a reload) ends its
  sessions at once.  A stolen cookie is one session, not the API token: it ends at
  log out, after ``SESSION_TTL``, and with the process.  Behind a load balancer each
  gateway knows its own sessions only: route a browser to one instance (sticky
  sessions) or log in on each.
* One-time links: a link's token is spent by the first login, which opens a session.
* Without ``gateway.auth`` (HTTP mode on loopback), the viewer is the anonymous
  principal of ``Access``: it may look, and may change things only under
  ``--allow-unauthenticated-admin``, exactly as the REST API.

The cookie is HttpOnly, ``SameSite=Strict``, ``Secure`` over https (or with an https
``public_url``), limited to the dashboard's path and to the session's lifetime.  Its name
carries the port of the address the browser used (``cookie_name``: ``mgw_dashboard_8765``
for ``127.0.0.1:8765``): browsers keep cookies per host, not per port, so two gateways
on one machine shared one ``mgw_dashboard`` cookie, and logging in to one logged the
other out (sending it the first one's session id).  Behind a reverse proxy the ``Host``
the gateway sees is the proxy's (nginx's usual ``proxy_set_header Host $host`` has no
port), so with ``public_url`` set the name comes from it instead (``cookie_for``:
``mgw_dashboard_`` and a digest of the URL): gateways with different public URLs keep
their logins apart, whatever ``Host`` says.  ``__Host-`` would not help: it needs
``Secure``, which loopback http has not, and the path ``/``.
Every mutation carries a CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``) checked in constant time: for a session a digest of its id (it never
reveals it); for the anonymous viewer and the login form an HMAC under a per-process
secret, the login form's with a tag of the instance (``instance_tag``), so a login
posted to another instance than the form's is told so (``login_refused``).  The cookie
of a token login carries that tag too (``<session id>.<tag>``): a browser a balancer
sends to another instance than its login's is sent to the login page, which says why
(``elsewhere``) instead of showing the bare form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from fast_mcp_gateway.config.auth import SCOPES
from fast_mcp_gateway.http import jwt_refusals
from fast_mcp_gateway.http.access import ANONYMOUS, ANONYMOUS_ADMIN, Access
from fast_mcp_gateway.http.auth import REMOVED, principal_of
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.ui.login_links import PROBLEMS, LoginLinks, Sessions

COOKIE = "mgw_dashboard"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_TOKEN = 8192  # a JWT can be long; anything longer is not a token
MAX_TOKEN_SESSIONS = 1024  # browsers logged in with tokens; the oldest ends beyond this
# One caller's browsers (a token's, or a JWT subject's whatever JWTs it brings): its own
# oldest ends beyond this.  Without it, a token of any scope logged in 1024 times ended
# every other viewer's session (an admin's too).
SESSIONS_PER_TOKEN = 32

NOT_VALID = "That token is not valid for this gateway (unknown, expired or mistyped)."

NO_ACCESS = "That token opens no page of this dashboard: "
"""How a login with a token granting no scope of the gateway (a JWT whose scopes claim
names neither tools nor admin) is refused, before the REST 403's words for it."""

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
                 secure_cookies: bool = False, links: LoginLinks | None = None,
                 reloads: Callable[[], int] | None = None,
                 public_url: str | None = None, instance: str | None = None) -> None:
        """``verify`` maps a gateway token to its principal (``None``: no login);
        ``reloads`` counts the reloads that changed what it takes (``generation``);
        ``public_url``: the gateway's (settings), which names its cookie when set;
        ``instance``: its ``--instance-id``, told apart in the login form's token."""
        self._verify = verify
        self._cookie = None if public_url is None else cookie_for(public_url)
        self._reloads = reloads
        self.anonymous = anonymous
        self.secure_cookies = secure_cookies
        self.links = links
        # One session table: the links' own, else one of token logins (value: the token).
        self._sessions: Sessions[str] = Sessions(cap=MAX_TOKEN_SESSIONS,
                                                 per_value=SESSIONS_PER_TOKEN)
        self._ended: dict[str, str] = {}  # session -> why its token stopped verifying
        self._secret = secrets.token_bytes(32)
        self._instance = "" if instance is None else instance_tag(instance)

    @classmethod
    def of(cls, access: Access, *, secure_cookies: bool = False,
           public_url: str | None = None, instance: str | None = None) -> DashboardAuth:
        """The HTTP app's policy: its verifier's tokens, else its anonymous caller."""
        verifier = access.verifier
        if verifier is None:
            anonymous = ANONYMOUS_ADMIN if access.allow_unauthenticated_admin else ANONYMOUS
            return cls(None, anonymous, secure_cookies=secure_cookies,
                       public_url=public_url, instance=instance)

        async def verify(token: str) -> Principal | None:
            verified = await verifier.verify_token(token)
            return None if verified is None else principal_of(verified)

        return cls(verify, None, secure_cookies=secure_cookies,
                   reloads=lambda: verifier.changes, public_url=public_url,
                   instance=instance)

    @classmethod
    def one_time(cls, links: LoginLinks) -> DashboardAuth:
        """One-time login links for the owner only (``links`` keeps the sessions)."""

        async def refuse(token: str) -> Principal | None:
            return None  # no gateway tokens here: only links log in

        return cls(refuse, None, links=links)

    @property
    def needs_login(self) -> bool:
        return self._verify is not None

    @property
    def generation(self) -> int:
        """A number that moves whenever a session may have ended or lost rights: a log
        out, a session pushed out (the per-caller cap, the table's), a token refused, a
        reload changing ``gateway.auth``.  A check of a session made while it stayed
        the same still holds, but for time (an expiry): what ``ui/live.py`` compares
        before each event, instead of verifying the token for each."""
        table = self.links.sessions if self.links is not None else self._sessions
        return table.generation + (self._reloads() if self._reloads is not None else 0)

    @property
    def session_ttl(self) -> float:
        return self.links.sessions.ttl if self.links is not None else self._sessions.ttl

    def _mac(self, what: bytes) -> str:
        return hmac.new(self._secret, what, hashlib.sha256).hexdigest()[:40]

    @staticmethod
    def _session_csrf(session: str) -> str:
        return hashlib.sha256(b"mgw-dashboard-csrf\0" + session.encode("utf-8", "surrogatepass")
                              ).hexdigest()[:40]

    @property
    def login_csrf(self) -> str:
        # With the instance's tag: a login posted to another instance (a balancer
        # without affinity) is told so, not "stale" (``login_refused``).
        return self._mac(b"login") + (f".{self._instance}" if self._instance else "")

    def login_refused(self, given: str) -> str:
        """Why a login form's token ``given`` (not this instance's now) is refused."""
        _, dot, tag = given.rpartition(".")
        if dot and self._instance and tag != self._instance and len(tag) == len(self._instance):
            # Or by this gateway before a restart: the default --instance-id is
            # host-pid, so its tag changes at each start (review24).
            return ("This form was served by another gateway instance than the one your "
                    "login reached, or by this gateway before it restarted: a dashboard "
                    "login lives in the instance that made it; reload the page and log in "
                    "again. If this keeps happening behind a load balancer, keep each "
                    "browser on one instance (a cookie, or the client's address: "
                    "docs/ARCHITECTURE.md, 'Several gateways').")
        return "The form's security token is stale: try again."

    def _session_id(self, cookie: str) -> str:
        """The session id in a login cookie's value (``<id>.<instance tag>``, or the id
        alone: a one-time link's, or one set before the tag was added); "" for another
        instance's tag (no session of this one)."""
        session, dot, tag = cookie.partition(".")
        return "" if dot and tag != self._instance else session

    def elsewhere(self, cookie: str) -> str | None:
        """Why the login cookie ``cookie`` opens nothing here, when it names another
        instance: behind a balancer without affinity, every other page went to the
        login form, and nothing said why (trial13)."""
        _, dot, tag = cookie.partition(".")
        if not dot or not self._instance or tag == self._instance \
                or len(tag) != len(self._instance):
            return None
        return ("You logged in on another gateway instance than the one this page reached "
                "(or on this gateway before it restarted): a dashboard login lives in the "
                "instance that made it. Behind a load balancer, keep each browser on one "
                "instance (a cookie, or the client's address: docs/ARCHITECTURE.md, "
                "'Several gateways'); round-robin sends every other page elsewhere.")

    async def session_principal(self, session: str) -> Principal | None:
        """The principal of a live session (the cookie's value), or None."""
        if self._verify is None or not session or len(session) > MAX_TOKEN:
            return None
        session = self._session_id(session)
        if not session:
            return None
        if self.links is not None:
            return DASHBOARD_OWNER if self.links.has_session(session) else None
        token = self._sessions.get(session)
        if token is None:
            return None
        principal = await self._verify(token)
        if principal is None:
            self._sessions.close(session)  # its token was removed (a reload) or expired
            # Said once on the login page it is sent to (``ended_because``): without it
            # the viewer found the login form and no reason.
            reason = jwt_refusals.refusal.get()
            self._ended[session] = reason if reason not in (None, REMOVED) else (
                "the gateway no longer takes the token you logged in with (a reload "
                "removed or changed it in gateway.auth)")
            while len(self._ended) > MAX_TOKEN_SESSIONS:
                del self._ended[next(iter(self._ended))]  # the oldest
        return principal

    def ended_because(self, session: str) -> str | None:
        """Why the session ``session`` (the cookie's value) ended, once: its token was
        refused (a JWT expired, a reload removed a token)."""
        return self._ended.pop(self._session_id(session), None) if session else None

    async def redeem(self, token: str) -> tuple[str | None, str | None]:
        """A login with ``token``: the new session's id (for the cookie), or why not.

        A gateway token is verified, and refused (``NO_ACCESS``) if it grants no scope
        of the gateway: every page needs one, so its session would only show "Not
        allowed"; a one-time link's token is spent (a second use is refused).  Either
        opens a server-side session."""
        if self.links is None:
            if self._verify is None or not token or len(token) > MAX_TOKEN:
                return None, NOT_VALID
            principal = await self._verify(token)
            if principal is None:
                reason = jwt_refusals.refusal.get()  # why a JWT was refused, if known
                return None, (NOT_VALID if reason is None
                              else f"That token is not valid for this gateway: {reason}.")
            if not principal.has("tools"):  # every page needs it: refused here, once
                return None, f"{NO_ACCESS}{principal.holds}."
            # Counted per caller, not per token: a JWT holder brings a new token at
            # every refresh, and 1024 of them ended every other viewer's session.
            opened = self._sessions.open(token, owner=(principal.kind, principal.name))
            return (f"{opened}.{self._instance}" if self._instance else opened), None
        outcome = self.links.redeem(token)
        if outcome != "ok":
            return None, PROBLEMS[outcome]
        return self.links.open_session(), None

    async def viewer(self, request: Request) -> Viewer | None:
        """The request's viewer; ``None`` means "log in first"."""
        if self._verify is None:
            assert self.anonymous is not None
            return Viewer(self.anonymous, self._mac(b"anonymous"), logged_in=False)
        session = request.cookies.get(self.cookie_name(request), "")
        principal = await self.session_principal(session)
        if principal is None:
            return None
        return Viewer(principal, self._session_csrf(session), logged_in=True)

    def login(self, response: Response, request: Request, session: str) -> None:
        """Put ``session`` (what ``redeem`` returned) in the cookie, for its lifetime."""
        response.set_cookie(self.cookie_name(request), session, max_age=int(self.session_ttl),
                            httponly=True,
                            samesite="strict", secure=self._secure(request),
                            path=_cookie_path(request))

    def logout(self, response: Response, request: Request) -> None:
        """End the request's session on the server, and clear the cookie."""
        name = self.cookie_name(request)
        session = request.cookies.get(name, "")
        if self.links is not None:
            self.links.close_session(session)
        else:
            self._sessions.close(self._session_id(session))
        response.delete_cookie(name, httponly=True, samesite="strict",
                               secure=self._secure(request), path=_cookie_path(request))

    def _secure(self, request: Request) -> bool:
        return self.secure_cookies or request.url.scheme == "https"

    def cookie_name(self, request: HTTPConnection) -> str:
        """The login cookie's name: ``public_url``'s (``cookie_for``) when it is set,
        else from the request's ``Host`` (``cookie_name``)."""
        return self._cookie or cookie_name(request)


def cookie_name(request: HTTPConnection) -> str:
    """The login cookie's name for ``request``: ``COOKIE`` and the port of its ``Host``
    (the address the browser used, which its cookies are not kept apart by), else
    ``COOKIE`` alone (a default port, which browsers leave out of ``Host``)."""
    host = request.headers.get("host", "")
    port = host.rpartition(":")[2] if ":" in host else ""
    if port.isascii() and port.isdigit() and len(port) <= 5:
        return f"{COOKIE}_{int(port)}"
    return COOKIE  # no port, or none a cookie name may carry ("[::1]": "1]")


def cookie_for(public_url: str) -> str:
    """The login cookie's name for a gateway reached at ``public_url``: ``COOKIE`` and
    8 hex digits of a digest of the URL (scheme and host in lower case, no trailing
    slash), stable across restarts; two URLs differing in host, port or path differ."""
    scheme, _, rest = public_url.rstrip("/").partition("://")
    origin, slash, path = rest.partition("/")
    key = f"{scheme.lower()}://{origin.lower()}{slash}{path}"
    return f"{COOKIE}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def instance_tag(instance: str) -> str:
    """8 hex digits telling gateway instances apart in a login form, without naming one
    (the form is served to anyone)."""
    return hashlib.sha256(b"mgw-instance\0" + instance.encode("utf-8", "surrogatepass")
                          ).hexdigest()[:8]


def csrf_ok(expected: str, request: Request, form_value: str | None) -> bool:
    """Whether the request carries ``expected`` as the header or the form field."""
    given = request.headers.get(CSRF_HEADER) or form_value or ""
    return hmac.compare_digest(given.encode(), expected.encode())


def _cookie_path(request: Request) -> str:
    # The dashboard's own prefix (e.g. /ui): the cookie never goes to /mcp or /api.
    # root_path is decoded (a proxy's path from MCP_GATEWAY_PUBLIC_URL, /工具 or /my
    # tools): a browser matches Path against the URL's percent-encoded path, and a
    # header holds latin-1 only (/工具 was a 500 at login), so it is encoded as URLs
    # are ('%' and ';' too: one would end the attribute).
    return quote(str(request.scope.get("root_path", "")), safe="/!$&'()*+,:=@~") or "/"
