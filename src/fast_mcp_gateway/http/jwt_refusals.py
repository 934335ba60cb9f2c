"""Why a JWT was refused, in words for its holder and for the operator.

FastMCP's ``JWTVerifier`` answers a refused JWT with ``None`` and says why only in its
debug log (an expiry at INFO), which the gateway keeps at WARNING: every refusal was
one "unknown, expired or not for this gateway", and the operator's log said nothing
while every JWT was refused because ``jwks_uri`` answered 404.

``diagnose`` reads the refused token's header and claims (unverified: only to word the
refusal, never to accept anything) and names the first rule it breaks, as FastMCP
checks them: the algorithm, ``exp``, ``nbf``, ``iss``, ``aud``, a ``scope`` (or
``scp``) list holding anything but strings (its ``AccessToken`` cannot hold it); claims
that pass them leave the signature.  The holder's words (``Refusal.caller``) never
repeat a value the token chose (a forged token could put anything there, and the words go into a
``WWW-Authenticate`` quoted-string); they name the configured issuer, the expiry as a
time, and the setting involved.  The operator's words (``Refusal.log``) are logged by
``RefusalLog``: one line per cause a minute, whatever the request rate (and however
many times a request's token is verified: the HTTP express lane, then the full path).  For a
signature, ``JwksProbe`` fetches ``jwks_uri`` (at most once a minute) to say whether it
answered, and whether it has the token's key id.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fast_mcp_gateway.config.auth import JwtConfig

logger = logging.getLogger("fast_mcp_gateway.http.auth")

LOG_EVERY = 60.0  # seconds between two log lines of one cause
PROBE_EVERY = 60.0  # seconds between two fetches of jwks_uri to explain a refusal
PROBE_TIMEOUT = 5.0
_ALGORITHMS = {f"{family}{bits}" for family in ("HS", "RS", "ES", "PS")
               for bits in ("256", "384", "512")} | {"EdDSA", "ES256K", "none"}

refusal: ContextVar[str | None] = ContextVar("jwt_refusal", default=None)
"""The holder's words for the JWT the current request was refused for (None: no JWT
refused, or one no rule below explains); read by the 401's wording (``access.bad_token``)."""


@dataclass(frozen=True)
class Refusal:
    cause: str  # one word per rule: what ``RefusalLog`` counts a minute by
    caller: str  # for the token's holder (the 401, the login page)
    log: str  # for the operator (no token, no claim the token chose but its kid)
    kid: str | None = None


def utc(at: float) -> str:
    """``at`` as a UTC time; one no clock shows (a forged token's ``exp`` of -1e300:
    ``gmtime`` raised, and the refusal went unworded and logged on every request) in
    words, never its value."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
    except (OverflowError, OSError, ValueError):
        return "a time out of any clock's range"


def _segment(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, RecursionError):  # nested deeper than json reads: no JWT either
        return None
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def diagnose(token: str, config: JwtConfig, now: float) -> Refusal:
    """Why FastMCP's verifier refused ``token`` (a JWT: three dot-separated parts)."""
    head, payload, _ = [*token.split("."), "", ""][:3]
    header, claims = _segment(head), _segment(payload)
    if header is None or claims is None:
        return Refusal("format", "it is not a JWT (its header or claims are not JSON)",
                       "refused a token shaped as a JWT whose header or claims are not "
                       "base64url JSON")
    alg = header.get("alg")
    if alg != config.algorithm:
        named = f" {alg}" if isinstance(alg, str) and alg in _ALGORITHMS \
            else " another algorithm"  # a list or object is no algorithm (unhashable)
        return Refusal(
            "algorithm", f"the JWT is signed with{named}; this gateway takes "
            f"{config.algorithm} (gateway.auth.jwt.algorithm)",
            f"refused a JWT signed with{named}: gateway.auth.jwt.algorithm is "
            f"{config.algorithm}; if the identity provider signs with another, set it")
    exp, nbf = _number(claims.get("exp")), _number(claims.get("nbf"))
    if exp is not None and exp <= now:
        return Refusal(
            "expired", f"the JWT expired at {utc(exp)}; get a fresh one from the "
            "identity provider", f"refused a JWT that expired at {utc(exp)} (this "
            f"gateway's clock: {utc(now)}); its holder needs a fresh one")
    if nbf is not None and nbf > now:
        return Refusal(
            "not_yet", f"the JWT is not valid before {utc(nbf)} (its 'nbf'); check the "
            "clocks of the identity provider and this gateway",
            f"refused a JWT not valid before {utc(nbf)} (this gateway's clock: "
            f"{utc(now)}): is a clock wrong?")
    if claims.get("iss") != config.issuer:
        return Refusal(
            "issuer", f"the JWT comes from another issuer ('iss'); this gateway takes JWTs "
            f"from {config.issuer} (gateway.auth.jwt.issuer)",
            "refused a JWT from another issuer than gateway.auth.jwt.issuer "
            f"({config.issuer})")
    expected = {config.audience} if isinstance(config.audience, str) \
        else set(config.audience or ())
    aud = claims.get("aud")
    given = {aud} if isinstance(aud, str) else {a for a in aud if isinstance(a, str)} \
        if isinstance(aud, list) else set()   # a list in the list is no audience
    if not given & expected:
        return Refusal(
            "audience", "the JWT was not issued for this gateway: its 'aud' does not name "
            "gateway.auth.jwt.audience; ask the identity provider for a token for it",
            "refused a JWT whose 'aud' does not name gateway.auth.jwt.audience "
            f"({', '.join(sorted(expected))}): the identity provider issued it for another "
            "application, or the audience configured is not the one it issues")
    for name in ("scope", "scp"):  # as FastMCP's verifier reads them, whatever the
        value = claims.get(name)    # gateway's scopes_claim: the first string or list
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            return Refusal(
                "claim type", f"its '{name}' claim is a list holding something other than "
                "strings: it must be a space-separated string or a list of strings; have "
                "the identity provider issue it as one",
                f"refused a JWT whose '{name}' claim is a list holding something other than "
                "strings (it must be a space-separated string or a list of strings)")
        if isinstance(value, str | list):
            break
    kid = header.get("kid")
    source = "gateway.auth.jwt.jwks_uri" if config.jwks_uri else "gateway.auth.jwt.public_key"
    return Refusal(
        "signature", f"its signature does not verify with the issuer's keys ({source}): "
        "it was signed by another key, or the keys could not be fetched (the gateway's log "
        "says which)",
        f"refused a JWT whose signature does not verify with {source}",
        kid=kid[:64] if isinstance(kid, str) else None)


class JwksProbe:
    """What ``jwks_uri`` answers now, in words, fetched at most every ``PROBE_EVERY``
    seconds (a refused JWT triggers it; a flood of them fetches once a minute)."""

    def __init__(self, uri: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.uri = uri
        self._clock = clock
        self._last: float | None = None

    async def explain(self, kid: str | None) -> str | None:
        now = self._clock()
        if self._last is not None and now - self._last < PROBE_EVERY:
            return None
        self._last = now
        import httpx2

        try:
            async with httpx2.AsyncClient(timeout=PROBE_TIMEOUT) as http:
                answer = await http.get(self.uri)
        except httpx2.HTTPError as exc:
            return (f"jwks_uri {self.uri} cannot be reached ({type(exc).__name__}: "
                    f"{exc}): check gateway.auth.jwt.jwks_uri and that this host reaches it")
        if answer.status_code != 200:
            return (f"jwks_uri {self.uri} answered HTTP {answer.status_code}: check "
                    "gateway.auth.jwt.jwks_uri (the identity provider's discovery document "
                    "names it: 'jwks_uri' in /.well-known/openid-configuration)")
        try:
            keys = answer.json().get("keys")
        except (ValueError, AttributeError):
            keys = None
        if not isinstance(keys, list):
            return (f"jwks_uri {self.uri} answered something other than a JWKS (a JSON "
                    "object with a 'keys' list): check gateway.auth.jwt.jwks_uri")
        kids = sorted(str(k.get("kid")) for k in keys if isinstance(k, dict) and k.get("kid"))
        if kid is not None and kid not in kids:
            return (f"jwks_uri {self.uri} has no key {kid!r} (the JWT's 'kid'; it has: "
                    f"{', '.join(kids) or 'none'}): the JWT comes from another identity "
                    "provider or tenant, or the keys were rotated")
        if kid is not None:
            return (f"jwks_uri {self.uri} has a key {kid!r}, but the signature does not "
                    "match it: the JWT was altered or signed by another key of that id")
        return (f"jwks_uri {self.uri} has {len(keys)} key(s) and the JWT names none "
                "('kid'): with more than one the key cannot be chosen, else the signature "
                "does not match it")


class RefusalLog:
    """Logs each cause of refusal at most once every ``LOG_EVERY`` seconds."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}

    def due(self, cause: str) -> bool:
        now = self._clock()
        last = self._last.get(cause)
        if last is not None and now - last < LOG_EVERY:
            return False
        self._last[cause] = now
        return True

    def warn(self, cause: str, message: str, *args: Any) -> None:
        """Log ``message`` % ``args`` at WARNING if ``cause`` is ``due``: the refusals
        ``diagnose`` does not word (after the signature verified, or a verifier that
        raised), each logged on every request before (twice on the HTTP express lane,
        which verifies the token, then the full path it passes it to again)."""
        if self.due(cause):
            logger.warning(message + " (repeats of this cause are not logged for %d s)",
                           *args, int(LOG_EVERY))

    def write(self, found: Refusal, detail: str | None = None) -> None:
        level = logging.INFO if found.cause == "expired" else logging.WARNING
        logger.log(level, "%s%s (repeats of this cause are not logged for %d s)",
                   found.log, f": {detail}" if detail else "", int(LOG_EVERY))
