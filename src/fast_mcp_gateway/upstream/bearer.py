"""The gateway's bearer on the request path of a server with ``auth:``.

``TokenSlot`` holds one server's current token (shared by its replicas and sessions, for
the process's life) and renews it; ``BearerAuth`` (an ``httpx2.Auth``, one per
transport) puts it on every request.

* No lock per request: a request reads the slot's token and goes.  Only a renewal is
  single-flight (``anyio.Lock``): requests that find the token due, or that got a 401
  with it, wait for one renewal and go on with its token (``version`` tells a request
  whether the token it sent was renewed meanwhile).  The SDK's ``OAuthClientProvider``
  holds one lock across every request until its answer's head: one call at a time per
  session (measured, docs/design/upstream-oauth.md 1.2); it is never on this path.
* Renewed before expiry: once ``now >= expires_at - margin`` (margin: 10 % of the
  lifetime, at least 60 s, at most half of it), and once after a 401 (the request
  resent once with the new token: the SDK's requests are repeatable).
* A sign-out voids a renewal under way (``sign_outs``, bumped by ``signed_out``): its
  token is not used (``SignInRequired``), and its refresh writes only over the row it
  read (``CredentialBook.save(over=...)``): no row comes back once signed out.
* Never an interactive flow here.  A renewal that fails on the request path leaves
  the old token in use (it may still be good); a 401 it cannot cure ends the session
  (``on_refused``: the supervisor reconnects, and ``ready`` at the connect raises
  ``SignInFailed``, which names what is wrong).  A failed renewal is not tried again
  for ``RETRY_AFTER`` seconds on the request path (a down authorization server is not
  asked once per call).

Tokens are added to the bounded redaction registry (``telemetry.redaction.CALLERS``)
when granted: masked in every log and text while they may be in use.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import httpx2

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.config.upstream_auth import UpstreamAuth
from fast_mcp_gateway.errors import SignInFailed, SignInRequired
from fast_mcp_gateway.upstream.asking import lacking
from fast_mcp_gateway.upstream.oauth_grant import BOOK, CredentialBook

if TYPE_CHECKING:
    from fast_mcp_gateway.upstream.token_grants import Token

logger = logging.getLogger(__name__)

RETRY_AFTER = 10.0
"""Seconds a failed renewal is not tried again on the request path (a connect tries)."""
NO_TOKEN = (SignInFailed, SignInRequired)  # a renewal's failures (a refused refresh: the
# latter; caught as the former, it ends the session, and the reconnect says signed_out)


class Grant(Protocol):
    """Where a slot's tokens come from: the client-credentials grant, or a person's
    sign-in renewed with its refresh token (``oauth_grant.RefreshGrant``)."""

    async def fetch(self, current: Token | None) -> Token:
        """A token to use instead of ``current`` (``SignInFailed``/``SignInRequired``)."""
        ...


class TokenSlot:
    """One server's current token and its renewal (module docstring)."""

    def __init__(self, server: str, grant: Grant,
                 clock: Callable[[], float] = time.time) -> None:
        self.server = server
        self.token: Token | None = None
        self.version = 0  # bumped by each new token
        self.renewals = 0  # tokens asked for (a test and the status read it)
        self._grant, self._clock = grant, clock
        self._lock = anyio.Lock()
        self._failed: tuple[int, float, SignInFailed | SignInRequired] | None = None
        self._refused = -1  # the version of a token the server refused (HTTP 401)
        self.sign_outs = 0  # bumped by each sign-out: a renewal under way then is void
        self._why_out: SignInRequired | None = None
        self.bearers: weakref.WeakSet[BearerAuth] = weakref.WeakSet()  # told of a sign-out

    def signed_out(self, required: SignInRequired | None) -> None:
        """Signed out: the token is dropped, and each session using it told (its calls
        in flight finish, new ones are refused: ``Supervisor.signed_out_held``); None:
        none to tell (the server was removed)."""
        self.token, self.version = None, self.version + 1
        self.sign_outs, self._why_out = self.sign_outs + 1, required
        for bearer in list(self.bearers):
            if required is not None:
                bearer.signed_out(required)

    def refused(self, version: int) -> None:
        """The server answered 401 to token ``version``: it is due (a reconnect renews it
        first, and says why not, instead of opening with a token known refused)."""
        self._refused = max(self._refused, version)

    def due(self) -> bool:
        """Whether the token is missing or close enough to its expiry to renew."""
        token = self.token
        if token is None or self._refused == self.version:
            return True
        renew_at = token.renew_at
        return renew_at is not None and self._clock() >= renew_at

    async def ready(self) -> None:
        """Before a session opens: a token not due, or a new one, else ``SignInFailed``."""
        if self.due():
            await self.renew(self.version, patient=False)

    async def renew(self, seen: int, *, patient: bool = True) -> Token:
        """A token newer than version ``seen``: another request's renewal if one ran
        meanwhile, else a new one from the grant (one at a time).  ``patient``: on the
        request path, a renewal that failed less than ``RETRY_AFTER`` ago fails again
        at once."""
        async with self._lock:
            if self.token is not None and self.version != seen and not self.due():
                return self.token
            failed = self._failed
            if patient and failed is not None and failed[0] == self.version \
                    and self._clock() - failed[1] < RETRY_AFTER:
                raise failed[2]
            self.renewals += 1
            sign_outs = self.sign_outs
            try:
                token = await self._grant.fetch(self.token)
            except NO_TOKEN as exc:  # (version, when, why)
                self._failed = (self.version, self._clock(), exc)
                raise
            if self.sign_outs != sign_outs:  # signed out (or removed) while it ran
                raise self._why_out or SignInRequired(self.server, "signed out")
            self.token, self._failed = token, None
            self.version += 1
            return token


class BearerAuth(httpx2.Auth):
    """``Authorization: Bearer`` from a ``TokenSlot`` on each request of one transport's
    sessions; ``on_refused(reason)`` when the server refuses a renewed token, or none
    could be had after a 401 (the transport ends its session); ``on_signed_out`` when
    there is no sign-in any more (the session ends once its calls in flight did)."""

    requires_request_body = True  # a request resent after a 401 needs its body
    tap_carries = True  # the side door carries it too (``http_tap_bearer.py``)

    def __init__(self, slot: TokenSlot) -> None:
        self.slot = slot
        self.on_refused: Callable[[str], None] | None = None
        self.on_signed_out: Callable[[SignInRequired], None] | None = None
        slot.bearers.add(self)

    async def ready(self) -> None:
        await self.slot.ready()

    async def async_auth_flow(self, request: httpx2.Request
                              ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        slot = self.slot
        token, version = slot.token, slot.version
        if slot.due():
            try:
                token, version = await slot.renew(version), slot.version
            except NO_TOKEN as exc:
                logger.debug("upstream %s: renewal before expiry failed: %s", slot.server, exc)
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token.access}"
        response = yield request
        if response.status_code == 403:
            lacking(response.headers.get("www-authenticate"))
        if response.status_code != 401:
            return
        token = await self.renewed(version)
        if token is None:
            return
        request.headers["Authorization"] = f"Bearer {token.access}"
        response = yield request
        if response.status_code == 403:
            lacking(response.headers.get("www-authenticate"))
        elif response.status_code == 401:
            self.refused_again(str(request.url.copy_with(query=None)))

    async def renewed(self, version: int) -> Token | None:
        """The token after the server answered 401 to token ``version`` (renewed once,
        single-flight), or ``None``: none could be had (``on_refused`` told why, or
        ``on_signed_out``: the session ends once its calls in flight did)."""
        self.slot.refused(version)
        try:
            return await self.slot.renew(version)
        except SignInRequired as exc:  # no sign-in any more (signed out elsewhere)
            self.signed_out(exc)  # this 401 answers its call; those in flight finish
            return None
        except SignInFailed as exc:
            self._refused(exc.detail)  # (not "upstream 'x': " again)
            return None

    def refused_again(self, url: str) -> None:
        """The server answered 401 at ``url`` (no query) to a token just renewed."""
        self._refused(f"the server refused a token just granted (HTTP 401 at {url}); check "
                      "auth.scopes and that the server accepts that authorization server's "
                      "tokens")

    def signed_out(self, required: SignInRequired) -> None:
        if self.on_signed_out is not None:
            self.on_signed_out(required)

    def _refused(self, reason: str) -> None:
        logger.warning("upstream %s: %s", self.slot.server, reason)
        if self.on_refused is not None:
            self.on_refused(reason)


_SLOTS: dict[tuple[str, object, str], TokenSlot] = {}  # of a process with no ``BOOK``


def _slots(book: CredentialBook | None) -> dict[tuple[str, object, str], TokenSlot]:
    return _SLOTS if book is None else book.slots


def bearer_for(config: ServerConfig) -> BearerAuth | None:
    """The bearer of a transport to ``config``'s server; None without ``auth:``.  Its
    replicas' transports share one ``TokenSlot`` per server, URL and ``auth``, kept by
    the gateway's ``BOOK`` (two gateways in one process never share one; a new config
    makes a new slot: a token is never sent under settings it was not got for)."""
    auth = config.auth
    if auth is None or config.url is None:
        return None
    slots, key = _slots(BOOK.get()), (config.name, auth, config.url)
    slot = slots.get(key)
    if slot is None:
        for old in [k for k in slots if k[0] == config.name and k[1] != auth]:
            del slots[old]  # the server's earlier settings: their token is dropped
        slot = slots[key] = TokenSlot(config.name, _grant(config.name, auth, config.url,
                                                          config.tls))
    return BearerAuth(slot)


def _grant(server: str, auth: UpstreamAuth, url: str, tls: Any) -> Grant:
    """(``tls``: the server's, for an authorization server on its host.)"""
    if auth.type == "client_credentials":
        from fast_mcp_gateway.upstream.token_grants import ClientCredentialsGrant

        return ClientCredentialsGrant(server, auth, url, tls=tls)
    from fast_mcp_gateway.upstream.oauth_grant import RefreshGrant

    return RefreshGrant(server, url, auth, tls=tls)


def forget_tokens(server: str, book: CredentialBook | None,
                  required: SignInRequired | None = None) -> None:
    """Drop ``server``'s tokens held in memory by ``book``'s gateway (it was signed out,
    ``required`` says so: its sessions end once their calls in flight did; None: it
    was removed)."""
    for key, slot in list(_slots(book).items()):
        if key[0] == server:
            slot.signed_out(required)
