"""The issuer's keys as they are now: a JWT of a key just published is taken, one of a
key the issuer withdrew is refused within ``KEYS_MAX_AGE``.

FastMCP's ``JWTVerifier`` fetches ``jwks_uri`` again for a key id it does not hold, but
at most every 30 s (its ``jwks_refresh_interval``, counted from its last fetch): a JWT
signed with a key published less than 30 s after that fetch was refused.  Tried as a
team would (trial13): the identity provider's keys rotated 20 s after a gateway's first
JWT, and that gateway refused every JWT of the new key until the 30 s were over, its log
saying that ``jwks_uri`` "has a key 'k2', but the signature does not match it: the JWT
was altered" -- while the other gateway, whose last fetch was older, took them.

``KeyRotation.retry`` verifies such a JWT once more with a verifier of its own, whose
keys are fetched now, and the gateway keeps that verifier when it takes the JWT.  Only
a JWT whose claims pass every other rule (its refusal is the signature's) and whose key
id no JWT taken by the running verifier had is tried again (a key the verifier holds
needs no fetch), at most once every ``RETRY_EVERY`` seconds, so a flood of forged key ids
fetches ``jwks_uri`` no more often than that.  Retries take turns: JWTs of the new key
arriving together (every host of a busy gateway after a rotation) wait for the one fetch
and are verified with its keys, instead of being refused as fetched too recently.

The other way round, FastMCP's verifier keeps the keys it fetched for an hour (its cache
TTL, not a setting): a key the issuer removed from ``jwks_uri`` -- a compromised one --
went on verifying new JWTs for up to an hour, while the gateway's JWT cache was said to
bound it to a minute (trial13).  ``KeyRotation.running`` replaces the running verifier
by one of its own settings once it is ``KEYS_MAX_AGE`` old, so the keys are fetched again
(at the next JWT: one fetch per ``KEYS_MAX_AGE`` while JWTs come).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from fastmcp.server.auth import AccessToken
    from fastmcp.server.auth.providers.jwt import JWTVerifier

logger = logging.getLogger("fast_mcp_gateway.http.auth")

RETRY_EVERY = 5.0  # seconds between two fetches of jwks_uri for a key id not yet seen
KEYS_MAX_AGE = 300.0  # seconds a verifier's fetched keys are used before a fresh fetch
MAX_KIDS = 64  # key ids remembered; an issuer publishes a handful


def key_id(token: str) -> str | None:
    """The ``kid`` of a JWT's header (unverified: only to decide whether to fetch)."""
    head = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, RecursionError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) and len(kid) <= 256 else None


class KeyRotation:
    """Whether, and with what, to verify a refused JWT again (see the module docstring).
    ``make`` builds a verifier of the running settings; ``clock`` tells seconds."""

    def __init__(self, make: Callable[[], JWTVerifier], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._make = make
        self._clock = clock
        self._last: float | None = None
        self._running: JWTVerifier | None = None
        self._made = 0.0  # when ``_running`` was first used
        self._known: dict[str, None] = {}  # key ids of JWTs the running verifier took
        self._latest: JWTVerifier | None = None  # the last verifier ``retry`` gave
        self._turns = anyio.Lock()

    def running(self, current: JWTVerifier) -> JWTVerifier:
        """The verifier to use now: ``current``, or a fresh one (its keys fetched again
        at its first JWT) once ``current`` is ``KEYS_MAX_AGE`` old."""
        now = self._clock()
        if current is not self._running:
            self._running, self._made = current, now
        elif now - self._made >= KEYS_MAX_AGE:
            self._running, self._made = self._make(), now
            self._known.clear()  # the fresh verifier holds no key yet
            self._latest = None
            self._last = now  # it fetches at once: no retry needs to fetch again
        return self._running

    def taken(self, token: str) -> None:
        """The running verifier took ``token``: it holds its key."""
        kid = key_id(token)
        if kid is not None and kid not in self._known:
            self._known[kid] = None
            while len(self._known) > MAX_KIDS:
                del self._known[next(iter(self._known))]

    async def retry(self, token: str, used: JWTVerifier
                    ) -> tuple[JWTVerifier, AccessToken] | None:
        """A verifier of freshly fetched keys and ``token`` as it verified it, or None
        (not tried, or refused again).  ``used``: the verifier that refused it."""
        kid = key_id(token)
        if kid is None:
            return None
        async with self._turns:
            if kid in self._known:  # fetched meanwhile, or held by the verifier
                latest = self._latest
                if latest is None or latest is used:
                    return None
                again = await latest.verify_token(token)
                return None if again is None else (latest, again)
            now = self._clock()
            if self._last is not None and now - self._last < RETRY_EVERY:
                return None
            self._last = now
            fresh = self._make()
            verified = await fresh.verify_token(token)
            if verified is None:
                return None
            self._known = {kid: None}
            self._latest = fresh
        logger.info("gateway.auth.jwt: a JWT names the key %r, which jwks_uri published "
                    "after this gateway last fetched it (the issuer's keys rotated): "
                    "fetched them again", kid)
        return fresh, verified
