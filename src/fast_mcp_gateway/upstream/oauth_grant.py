"""Tokens of a server a person signed in to (``auth: {type: oauth}``): kept sealed in the
store, renewed with the refresh token -- never an interactive flow here (that is
``sign_in.py``'s, outside any request).

``CredentialBook`` is where sign-ins are kept: the gateway's store (``CredentialStore``
rows, sealed with ``store/sealing.py``), or memory when the gateway runs without one
(``--no-db``: a sign-in lasts that run).  The gateway (or ``mcp-gateway login``) makes
one and sets ``BOOK`` for the tasks it starts.

``RefreshGrant.fetch`` (a ``TokenSlot``'s grant, ``bearer.py``) reads the server's row
each time: a token stored meanwhile (another process's ``login``, a refresh by another
gateway on the same PostgreSQL) is taken as it is; a due one is refreshed at the stored
token endpoint with the stored client and ``resource`` (RFC 8707: the same as at the
sign-in), and the row updated -- only if it is still the row read (a sign-out or
a new sign-in meanwhile is not undone; no row is made again).  No row, no refresh
token, or a refresh the authorization server refuses with a code saying the grant
is dead (``invalid_grant``, ``invalid_client``, ``unauthorized_client``) is
``SignInRequired``: the replica is ``signed_out`` until someone signs in
(``CredentialBook.signed_in_event``).  Any other answer (a proxy's HTML page, an
empty 400) keeps the tokens: ``SignInFailed`` (retryable: the supervisor's backoff)
quoting the status and the answer's first characters, masked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from secrets import token_hex
from typing import Any
from urllib.parse import quote

import anyio
import httpx2

from fast_mcp_gateway.errors import SignInFailed, SignInRequired
from fast_mcp_gateway.store.base import StorageError
from fast_mcp_gateway.store.credentials import (
    OWNER_GATEWAY,
    CredentialStore,
    MemoryCredentials,
    StoredCredential,
)
from fast_mcp_gateway.store.sealing import CredentialSeal, SealBroken, credential_keys
from fast_mcp_gateway.telemetry.redaction import CALLERS
from fast_mcp_gateway.upstream.token_grants import (
    TOKEN_TIMEOUT,
    Token,
    error_code,
    origin_client,
    quoted_answer,
    token_of,
)

logger = logging.getLogger(__name__)

RECHECK = 2.0  # seconds between reads of a signed-out server's row (``wait_signed_in``)
_REFUSED = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
"""The OAuth error codes (RFC 6749 5.2) that say the sign-in is dead: only these sign
out.  Any other answer -- a proxy's page, an empty body, another code, 5xx -- is a
transient failure: the tokens are kept and the refresh tried again."""


class CredentialBook:
    """Where sign-ins are kept (module docstring); the seal is made on first use, so a
    gateway without ``type: oauth`` servers never makes a key file."""

    def __init__(self, keys: Sequence[str], db: str | None,
                 store: Callable[[], Any] = lambda: None) -> None:
        self._keys, self._db, self._store = list(keys), db, store
        self._memory = MemoryCredentials()
        self._seal: CredentialSeal | None = None
        self._events: dict[str, anyio.Event] = {}
        self.slots: dict[Any, Any] = {}  # its gateway's ``bearer.TokenSlot``s
        self.seen: dict[str, StoredCredential] = {}  # each server's row as last read (status)

    def signed_in_event(self, server: str) -> anyio.Event:
        """Set when a sign-in of ``server`` is stored through this book (then a new one)."""
        event = self._events.get(server)
        if event is None or event.is_set():
            event = self._events[server] = anyio.Event()
        return event

    def announce_signed_in(self, server: str) -> None:
        self.signed_in_event(server).set()

    @property
    def store(self) -> CredentialStore:
        found = self._store()
        return self._memory if found is None else found  # type: ignore[no-any-return]

    @property
    def in_memory(self) -> bool:
        return self._store() is None

    def seal(self) -> CredentialSeal:
        if self._seal is None:
            store = self._store()
            keys = (self._keys or [token_hex(32)]) if store is None else credential_keys(
                self._keys, self._db, bool(getattr(store, "shared", False)))
            self._seal = CredentialSeal(keys)
        return self._seal

    async def load(self, server: str) -> tuple[StoredCredential, dict[str, Any]] | None:
        """The row of ``server`` and its secrets; ``SealBroken`` when it does not open."""
        row = await self.store.credential(server, OWNER_GATEWAY)
        if row is None:
            self.seen.pop(server, None)
            return None
        self.seen[server] = row
        return row, self.seal().open(row)

    async def save(self, row: StoredCredential, secrets: dict[str, Any],
                   over: float | None = None) -> bool:
        """Keep ``row``; ``over``: only over the row stored at that time (a refresh of
        the row it read: none comes back once signed out), whether it was kept."""
        sealed = StoredCredential(**{**row.__dict__, "sealed": self.seal().seal(
            row.server, row.owner, secrets)})
        if over is None:
            await self.store.put_credential(sealed)
        elif not await self.store.replace_credential(sealed, over):
            return False
        self.seen[row.server] = row
        return True

    async def forget(self, server: str) -> int:
        self.seen.pop(server, None)
        return await self.store.delete_credentials(server, OWNER_GATEWAY)


BOOK: ContextVar[CredentialBook | None] = ContextVar("fast_mcp_gateway_credentials",
                                                     default=None)
"""The book of the gateway (or ``login``) whose tasks read it: set where it is made."""


def at_utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%H:%M UTC")


def signed_in_under(url: str, auth: Any) -> dict[str, Any]:
    """The settings a sign-in is made under, kept (sealed) with it: a sign-in made under
    others -- a reload changed ``url:``, ``auth.client_id``, ``auth.issuer`` or
    ``auth.scopes`` -- is no sign-in (its token is not sent to another server or under
    another client; a person signs in again).  ``auth.client_secret`` is not one: a new
    secret of the same client does not sign anyone out (the refresh sends it)."""
    return {"url": url, "auth.client_id": auth.client_id, "auth.issuer": auth.issuer,
            "auth.scopes": sorted(auth.scopes)}


def changed_settings(stored: Any, now: dict[str, Any]) -> list[str]:
    """The settings ``now`` differs in from those a sign-in was made under (none known:
    a sign-in stored before they were kept counts)."""
    if not isinstance(stored, dict):
        return []
    return [name for name, value in now.items() if stored.get(name) != value]


class RefreshGrant:
    """A person's sign-in of one server, as a ``TokenSlot``'s grant (module docstring)."""

    def __init__(self, server: str, url: str, auth: Any,
                 clock: Callable[[], float] = time.time, tls: Any = None) -> None:
        self.server, self.url, self._clock, self.tls = server, url, clock, tls
        self.settings = signed_in_under(url, auth)
        self.client_id, self.client_secret = auth.client_id, auth.client_secret

    def _required(self, why: str, seen: float | None = None) -> SignInRequired:
        book = BOOK.get()
        return SignInRequired(self.server, why, None if book is None
                              else book.signed_in_event(self.server), seen)

    async def fetch(self, current: Token | None) -> Token:
        book = BOOK.get()
        if book is None:
            raise self._required("this process keeps no sign-ins")
        try:
            book.seal()
        except StorageError as exc:  # no keys for a shared store: a setting to give
            raise SignInFailed(self.server, str(exc)) from None
        try:
            found = await book.load(self.server)
        except SealBroken:
            raise self._required("its stored sign-in was sealed with a key this gateway "
                                 "does not have; or restore that key") from None
        except StorageError as exc:
            raise SignInFailed(self.server, f"its sign-in cannot be read from the store "
                               f"({exc}); the gateway tries again", retryable=True) from None
        if found is None:
            raise self._required("no sign-in yet")
        row, secrets = found
        if changed := changed_settings(secrets.get("settings"), self.settings):
            logger.warning("upstream %s: its stored sign-in was made before %s changed: "
                           "not used", self.server, ", ".join(changed))
            raise self._required(f"its stored sign-in was made before {', '.join(changed)} "
                                 "changed; sign in again", row.updated_at)
        tokens = secrets.get("tokens") or {}
        access, lifetime = tokens.get("access_token"), tokens.get("lifetime")
        if isinstance(access, str) and access:
            stored = Token(access=access, expires_at=row.expires_at, lifetime=lifetime,
                           refresh=tokens.get("refresh_token"))
            fresh = stored.renew_at is None or self._clock() < stored.renew_at
            if fresh and (current is None or current.access != access):
                CALLERS.add([access, *([stored.refresh] if stored.refresh else [])])
                return stored  # stored meanwhile (a sign-in, another gateway's refresh)
        if not tokens.get("refresh_token"):
            raise self._required(secrets.get("why") or "its token ended and the "
                                 "authorization server gave no refresh token")
        return await self._refresh(book, row, secrets)

    async def _refreshed_meanwhile(self, book: CredentialBook, used: dict[str, Any]
                                   ) -> Token | None:
        """The tokens another process stored since ``used`` was read (gateways on one
        store refreshing at once: the authorization server rotated the refresh token for
        the first, refusing the second), else None: a refusal of this sign-in."""
        try:
            found = await book.load(self.server)
        except (SealBroken, StorageError):
            return None
        tokens = (found[1].get("tokens") or {}) if found else {}
        access, refresh = tokens.get("access_token"), tokens.get("refresh_token")
        if found is None or not access or refresh == used.get("refresh_token"):
            return None
        CALLERS.add([access, *([refresh] if refresh else [])])
        return Token(access=access, expires_at=found[0].expires_at,
                     lifetime=tokens.get("lifetime"), refresh=refresh)

    async def _refresh(self, book: CredentialBook, row: StoredCredential,
                       secrets: dict[str, Any]) -> Token:
        client, tokens = secrets.get("client") or {}, secrets["tokens"]
        if self.client_secret and client.get("client_id") == self.client_id:
            # The configured client's secret now: a rotated one (config edited and
            # reloaded) refreshes this sign-in; the one stored at the sign-in is old.
            CALLERS.add([self.client_secret])
            client = {**client, "client_secret": self.client_secret}
        endpoint = row.token_endpoint
        if not endpoint or not client.get("client_id"):
            raise self._required("its stored sign-in names no token endpoint")
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                "client_id": client["client_id"]}
        if row.resource:
            form["resource"] = row.resource
        secret, method = client.get("client_secret"), client.get("token_endpoint_auth_method")
        basic: Any = None
        if secret and method == "client_secret_basic":
            basic = httpx2.BasicAuth(quote(client["client_id"], safe=""), quote(secret, safe=""))
        elif secret:
            form["client_secret"] = secret
        try:
            async with origin_client(self.server, self.url, self.tls, timeout=TOKEN_TIMEOUT,
                                     follow_redirects=False) as http:
                response = await http.post(endpoint, data=form, auth=basic,
                                           headers={"accept": "application/json"})
        except httpx2.HTTPError as exc:
            raise SignInFailed(self.server, f"cannot reach its authorization server at "
                               f"{endpoint} to refresh the token ({type(exc).__name__}); "
                               "the gateway tries again", retryable=True) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        code = error_code(data)
        if response.status_code in (400, 401) and code in _REFUSED:
            if (newer := await self._refreshed_meanwhile(book, tokens)) is not None:
                return newer  # another gateway rotated that refresh token first: its tokens
            why = (f"its refresh was refused by {row.issuer or endpoint} at "
                   f"{at_utc(self._clock())}{f' ({code})' if code else ''}")
            kept = {"client": client, "why": why,  # the registration stays: no new DCR
                    **({"settings": secrets["settings"]} if "settings" in secrets else {})}
            await book.save(row, kept, over=row.updated_at)  # (signed out meanwhile: gone)
            logger.warning("upstream %s: refresh refused, signed out", self.server)
            raise self._required(why)
        token = token_of(data, self._clock()) if response.status_code == 200 \
            and isinstance(data, dict) else None
        if token is None:
            logger.warning("upstream %s: refresh at %s answered HTTP %d, not a token: "
                           "sign-in kept, tried again", self.server, endpoint,
                           response.status_code)
            raise SignInFailed(
                self.server, f"its authorization server at {endpoint} answered HTTP "
                f"{response.status_code} to a refresh, not a token "
                f"({f'error {code}' if code else quoted_answer(response)}); the sign-in is kept "
                "and the gateway tries again", retryable=True)
        refresh = token.refresh or tokens["refresh_token"]  # RFC 6749 6: may keep the old
        if not await book.save(
                StoredCredential(**{**row.__dict__, "expires_at": token.expires_at,
                                    "updated_at": self._clock(), "updated_by": "refresh"}),
                {**secrets, "client": client,
                 "tokens": {"access_token": token.access, "refresh_token": refresh,
                            "lifetime": token.lifetime}}, over=row.updated_at):
            # The row it read is gone (signed out, removed) or replaced (a new sign-in,
            # another gateway's refresh): the stored one, if any, is the one to use.
            if (newer := await self._refreshed_meanwhile(book, tokens)) is not None:
                return newer
            raise self._required("signed out while its token was refreshed")
        logger.info("upstream %s: token refreshed at %s%s", self.server, endpoint,
                    f" (valid {token.lifetime:.0f} s)" if token.lifetime else "")
        return Token(access=token.access, expires_at=token.expires_at,
                     lifetime=token.lifetime, refresh=refresh)


async def wait_signed_in(server: str, required: SignInRequired, wake: anyio.Event) -> None:
    """Until a sign-in of ``server`` is stored (here, or by another process: the row is
    read every ``RECHECK`` seconds), or ``wake`` (a reconnect, disable, stop)."""
    event = required.signed_in if isinstance(required.signed_in, anyio.Event) else None
    book = BOOK.get()
    while not wake.is_set() and not (event is not None and event.is_set()):
        with anyio.move_on_after(RECHECK):
            async with anyio.create_task_group() as tg:
                for waited in (wake, event):
                    if waited is not None:
                        tg.start_soon(_then_cancel, waited, tg.cancel_scope)
        if book is not None and await _stored(book, server, required.seen):
            return


async def _then_cancel(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _stored(book: CredentialBook, server: str, seen: float | None) -> bool:
    """Whether a sign-in is stored, other than the one stored at ``seen`` (did not count)."""
    try:
        found = await book.load(server)
    except Exception:  # noqa: BLE001 - the store away or a key missing: still signed out
        return False
    return found is not None and found[0].updated_at != seen and \
        bool((found[1].get("tokens") or {}).get("access_token"))
