"""One-time login links of the stdio dashboard, and the sessions they open.

The stdio dashboard has no configured tokens: whoever can read the user's own files
may use it.  At start it makes a random *link key* and writes it to ``dashboard.json``
(mode 0600) with the dashboard's address.  A login token is derived from the key:

    token = <issued, hex seconds> "." <random nonce> "." HMAC-SHA256(key, issued "." nonce)

so both the gateway (the link it prints to stderr at start) and ``mcp-gateway dashboard``
(any number of fresh links, with no request to the gateway) can make one, and nobody
without the file can.  The gateway accepts a token **once**: redeeming it records its
nonce as spent (kept until the token would have expired anyway, so the record stays
small) and opens a *session*: a separate random id, the only thing the HttpOnly cookie
holds.  A token also expires ``LINK_TTL`` seconds after it was made, so a link left in
a terminal's scrollback or a log file stops working on its own.

``Sessions`` is the dashboard's one session table: the stdio dashboard's (opened by a
link) and the HTTP dashboard's (opened by a gateway token, ``ui.session``) alike.

This module uses the standard library only: the CLI imports it without the web stack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, Literal, TypeVar

LINK_TTL = 600.0  # seconds a login link stays usable if nobody opens it
CLOCK_SKEW = 60.0  # a token "issued" this far in the future is still accepted
MAX_SESSIONS = 64  # logged-in browsers kept; the oldest is logged out beyond this
SESSION_TTL = 12 * 3600.0  # seconds a login lasts (then log in again)
KEY_BYTES = 32

Outcome = Literal["ok", "spent", "expired", "invalid"]
T = TypeVar("T")


def _mac(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_token(key: bytes, now: float | None = None) -> str:
    """A fresh single-use login token under ``key`` (see the module docstring)."""
    issued = int(time.time() if now is None else now)
    body = f"{issued:x}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_mac(key, body)}"


def login_url(base: str, key: bytes) -> str:
    """``<base>/login?token=...``: a one-time link to the dashboard at ``base``."""
    return f"{base}/login?token={make_token(key)}"


class Sessions(Generic[T]):
    """Server-side dashboard sessions: a random id (256 bits; the only thing the cookie
    holds) for what a login proved (``T``).  A session ends at ``close`` (log out),
    ``ttl`` seconds after it opened, or when newer ones push it out: past ``per_value``
    sessions of one *owner* (``open``'s ``owner``: who logged in, else the value) its
    own oldest ends, and past ``cap`` the oldest session of the owner holding the most
    ends, so that one caller cannot log every other viewer out (a JWT holder brings a
    new value at every refresh: counted by value, 1024 logins ended an admin's session).
    Ids are kept as digests: the table's timing says nothing about the ids it holds.
    ``generation`` grows whenever a session leaves the table (closed, pushed out,
    expired): a live stream compares it before each event (``ui/live.py``)."""

    def __init__(self, *, ttl: float = SESSION_TTL, cap: int = MAX_SESSIONS,
                 per_value: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.cap = cap
        self.per_value = per_value
        self._clock = clock
        self.generation = 0
        # sha256(id) -> (opened, value, owner); oldest first
        self._open: dict[bytes, tuple[float, T, Hashable]] = {}

    def open(self, value: T, owner: Hashable | None = None) -> str:
        """A new session for ``value`` opened by ``owner`` (None: the value itself);
        returns its id (for the cookie)."""
        owner = value if owner is None else owner
        now = self._clock()
        if len(self._open) >= self.cap:  # expired sessions go before any live one
            self._open = {k: v for k, v in self._open.items() if now - v[0] <= self.ttl}
            self.generation += 1
        if self.per_value is not None:
            same = [key for key, (_, _, held) in self._open.items() if held == owner]
            for key in same[:max(0, len(same) - self.per_value + 1)]:  # oldest first
                del self._open[key]
                self.generation += 1
        session = secrets.token_urlsafe(32)
        self._open[_digest(session)] = (now, value, owner)
        while len(self._open) > self.cap:
            held = Counter(owner for _, _, owner in self._open.values())
            most = max(held.values())
            del self._open[next(k for k, (_, _, owner) in self._open.items()
                                if held[owner] == most)]  # the oldest of the most held
            self.generation += 1
        return session

    def get(self, session: str) -> T | None:
        """The value of a live session; None when unknown, closed or expired."""
        if not session:
            return None
        key = _digest(session)
        found = self._open.get(key)
        if found is None:
            return None
        if self._clock() - found[0] > self.ttl:
            del self._open[key]
            self.generation += 1
            return None
        return found[1]

    def close(self, session: str) -> None:
        if self._open.pop(_digest(session), None) is not None:
            self.generation += 1

    def __len__(self) -> int:
        return len(self._open)


class LoginLinks:
    """The gateway's side: redeems tokens (each once) and keeps the sessions they open."""

    def __init__(self, key: bytes | None = None, *, ttl: float = LINK_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        self.key = key if key is not None else secrets.token_bytes(KEY_BYTES)
        self.ttl = ttl
        self._clock = clock
        self._spent: dict[str, float] = {}  # nonce -> issued
        self.sessions: Sessions[bool] = Sessions(clock=clock)

    def mint(self) -> str:
        return make_token(self.key, self._clock())

    def redeem(self, token: str) -> Outcome:
        """Check ``token`` and spend it: ``ok`` exactly once for a genuine, fresh token."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 200:
            return "invalid"
        issued_hex, nonce, mac = parts
        if not hmac.compare_digest(mac.encode(), _mac(self.key, f"{issued_hex}.{nonce}"
                                                              ).encode()):
            return "invalid"
        try:
            issued = int(issued_hex, 16)
        except ValueError:
            return "invalid"
        now = self._clock()
        self._spent = {n: t for n, t in self._spent.items() if now - t <= self.ttl}
        if nonce in self._spent:
            return "spent"
        if now - issued > self.ttl:
            return "expired"
        if issued - now > CLOCK_SKEW:
            return "invalid"
        self._spent[nonce] = issued
        return "ok"

    def open_session(self) -> str:
        """A new session id (for the cookie); see ``Sessions``."""
        return self.sessions.open(True)

    def has_session(self, session: str) -> bool:
        return self.sessions.get(session) is not None

    def close_session(self, session: str) -> None:
        self.sessions.close(session)


def _digest(session: str) -> bytes:
    return hashlib.sha256(session.encode("utf-8", "surrogatepass")).digest()


PROBLEMS: dict[Outcome, str] = {
    "spent": "This login link was already used: each link logs in one browser once.",
    "expired": f"This login link has expired (links last {LINK_TTL / 60:.0f} minutes).",
    "invalid": "This login link is not valid for this dashboard (mistyped, or from a "
               "gateway that has since restarted).",
}
"""What the login page says for each refused outcome; it always adds how to get a new
link (``mcp-gateway dashboard``)."""


def token_file() -> Path:
    """Where a running stdio dashboard leaves its address and link key (the user's data
    folder): ``{"version": 2, "base": ".../ui", "key": hex, "pid": int}``.  Here, not in
    ``ui.standalone``: ``mcp-gateway dashboard`` reads it, and importing the standalone
    server (uvicorn, FastMCP's HTTP app) cost that command seconds under load."""
    from fast_mcp_gateway.config.settings import default_db_path

    return default_db_path().parent / "dashboard.json"
