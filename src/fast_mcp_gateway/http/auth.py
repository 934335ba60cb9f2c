"""Bearer tokens and JWTs for the HTTP front: who is calling, and what they may do.

``GatewayVerifier`` is a FastMCP ``TokenVerifier``: FastMCP's HTTP app runs it on every
request to the MCP endpoint (401 with ``WWW-Authenticate`` when it returns ``None``),
and the REST API and the dashboard call the same ``verify_token``.  Static tokens are
kept only as SHA-256 digests, looked up by the presented token's digest (one dict
lookup: what is compared is a hash an attacker cannot steer, so the lookup's timing
says nothing about a token); JWTs are checked by FastMCP's ``JWTVerifier`` (signature,
issuer, audience, expiry) and mapped to scopes and servers by the configured claims
(``jwt_claims``: a claim of another type refuses the JWT; a missing servers claim
grants no server).

A JWT's signature check costs ~0.3-1 ms of CPU and FastMCP runs the verifier on every
MCP request, so a verified JWT is remembered by its digest, at most ``JWT_CACHE_SECONDS``
and never past its ``exp``, in a bounded cache (``JWT_CACHE_SIZE`` entries, oldest
dropped first).  A refused token is never cached.

``Principal`` is what the rest of the gateway sees of a caller: a name for audit and
call records, its scopes and the servers it may see.  A JWT's subject becomes that name
as it is, so one that is no plain name is refused (``subject_problem``: more than
``MAX_SUBJECT`` characters, or a control, format or line-separator character), never
cut or rewritten: two subjects cut or escaped alike would be one caller, sharing its
tasks, asking rounds and cached answers.

Why such a JWT -- one whose signature, issuer and audience verified, refused by the
gateway's own policy (its subject, no 'exp', no subject) -- was refused is told to its
holder too (``refusal``: the RFC 6750 ``error_description`` of the 401 on the MCP
endpoint, REST and the dashboard's login), never the token nor its subject's content;
a JWT FastMCP's verifier refused (its algorithm, expiry, 'nbf', issuer, audience or
signature) is worded by ``jwt_refusals.diagnose`` in the same variable, naming only
the gateway's settings and the token's times; a static token a reload removed is told so
(``REMOVED``: the digests of the last ``REMOVED_TOKENS`` removed are remembered, and
only a holder of one can present it); an unknown gateway token, or one that is no JWT,
keeps the generic words.  The verifier's callers (FastMCP's auth backend,
``Access``, the dashboard) read it in the same task right after ``verify_token``
returned None (it is reset at each call: another request's reason is never read).

A reload follows ``gateway.auth``'s tokens and JWT settings, never its presence:
FastMCP's app takes its verifier when built, so the HTTP app refuses a reload that adds
or removes the whole section (``presence_refusal``): applied, one that removed it left
the tokens in force while the per-caller shares (``session_quota.several_callers``)
read the config and stopped, and one that added it protected nothing.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from fastmcp.server.auth import AccessToken, AuthProvider, RemoteAuthProvider, TokenVerifier

from fast_mcp_gateway._compat import principal_binding
from fast_mcp_gateway.config.auth import SCOPES, AuthConfig, JwtConfig, Scope, TokenEntry
from fast_mcp_gateway.http import jwt_claims, jwt_refusals
from fast_mcp_gateway.http.jwt_keys import KeyRotation
from fast_mcp_gateway.http.jwt_refusals import JwksProbe, RefusalLog
from fast_mcp_gateway.principal import KIND_CLAIM, Principal, Standing
from fast_mcp_gateway.telemetry.redaction import SECRETS

if TYPE_CHECKING:  # loaded with the first gateway.auth.jwt (joserfc's JWT and JWE)
    from fastmcp.server.auth.providers.jwt import JWTVerifier

    from fast_mcp_gateway.config.schema import GatewayOptions

JWT_CACHE_SECONDS = 60.0  # past jwt_keys.KEYS_MAX_AGE, a key dropped from the JWKS
JWT_CACHE_SIZE = 4096
REMOVED_TOKENS = 1024  # digests of static tokens reloads removed, remembered for the 401's words


def presence_refusal(running: AuthConfig | None, new: AuthConfig | None) -> str | None:
    """Why a reload from ``running`` to ``new`` (``gateway.auth``) is refused in HTTP
    mode (see the module docstring), or None: it adds or removes the section."""
    if running is not None and new is None:
        return ("gateway.auth cannot be turned off by a reload: this gateway keeps "
                "requiring its tokens, as it started; restart it to serve without "
                "gateway.auth, or put the section back")
    if running is None and new is not None:
        return ("gateway.auth cannot be turned on by a reload: this gateway serves "
                "without authentication (on loopback), as it started; restart it to "
                "require tokens, or take the section out")
    return None


def auth_presence_veto(running: GatewayOptions, new: GatewayOptions) -> str | None:
    """``presence_refusal`` as a reload veto (``AdminContext.reload_vetoes``): one
    function, so that an app built again on the same gateway (``http_app()`` per
    ``run_async``) does not add it again."""
    return presence_refusal(running.auth, new.auth)


MAX_SUBJECT = 255  # characters of a JWT's subject (OpenID Connect Core 1.0, 2: 'sub')

_KIND_CLAIM = KIND_CLAIM
_SERVERS_CLAIM = "io.github.fast-mcp-gateway/servers"
_NO_SERVER_CLAIM = "io.github.fast-mcp-gateway/no-server"  # why a JWT may use none

logger = logging.getLogger(__name__)

# (the config, a token, its refusal's words): a token the request's lane refused.
_refused: ContextVar[tuple[AuthConfig, str, str | None] | None] = ContextVar(
    "gateway_refused_token", default=None)

REMOVED = ("this gateway no longer accepts the token: a config reload removed it from "
           "gateway.auth.tokens; use a token gateway.auth lists now")

_VERIFIED_JWT = "it is a JWT this gateway verified, but "


def quotable(text: str) -> str:
    """``text`` as an RFC 6750 ``error_description`` may carry it (%x20-21 / %x23-5B /
    %x5D-7E): any other character, a double quote or a backslash becomes '?'."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


def _scopes(values: Iterable[Any]) -> frozenset[Scope]:
    return frozenset(s for s in SCOPES if s in {str(v) for v in values})


def principal_of(token: AccessToken) -> Principal:
    """The ``Principal`` behind an ``AccessToken`` this module's verifier produced."""
    claims = token.claims or {}
    servers = claims.get(_SERVERS_CLAIM)
    no_server = claims.get(_NO_SERVER_CLAIM)
    return Principal(
        name=token.client_id,
        scopes=_scopes(token.scopes),
        servers=None if servers is None else frozenset(str(s) for s in servers),
        kind=str(claims.get(_KIND_CLAIM, "token")),
        no_server=no_server if isinstance(no_server, str) else None,
    )


class GatewayVerifier(TokenVerifier):
    """Static tokens (by digest, constant time) first, then JWTs if configured."""

    def __init__(self, config: AuthConfig, *, base_url: str | None = None,
                 clock: Callable[[], float] = time.time,
                 jwt_cache_size: int = JWT_CACHE_SIZE,
                 current: Callable[[], AuthConfig | None] | None = None) -> None:
        """``current`` (if given) returns the running ``gateway.auth``: when a reload
        replaces it, the next request is verified against the new tokens and JWT
        settings (token rotation without a restart)."""
        super().__init__(base_url=base_url)
        self._clock = clock
        self._cache_size = jwt_cache_size
        self._current = current
        self._removed_warned = False
        self._refusals = RefusalLog()
        self._probe: JwksProbe | None = None
        self._jwt_config: JwtConfig | None = None
        self._jwt: JWTVerifier | None = None
        self._rotation: KeyRotation | None = None
        self._tokens: dict[bytes, TokenEntry] = {}
        # The digests of the tokens reloads removed, newest last, bounded: their holders
        # are told why they are refused now.  Only a holder can present one.
        self._removed: dict[bytes, None] = {}
        self._changes = 0  # reloads that changed gateway.auth (``changes``)
        self._apply(config, first=True)

    def _apply(self, config: AuthConfig, *, first: bool = False) -> None:
        # Clear tokens from the environment are secrets like any ${VAR}: masked wherever
        # a text could echo one (a log line, an upstream's error).
        SECRETS.add(t.token for t in config.tokens if t.token is not None)
        old = self._tokens
        self._config = config
        self._tokens = {bytes.fromhex(t.digest): t for t in config.tokens}
        for digest in old.keys() - self._tokens.keys():
            self._removed.pop(digest, None)
            self._removed[digest] = None
        for digest in self._tokens.keys() & self._removed.keys():
            del self._removed[digest]  # taken again
        while len(self._removed) > REMOVED_TOKENS:
            del self._removed[next(iter(self._removed))]  # the oldest
        if first or config.jwt != self._jwt_config:  # else keep its fetched JWKS
            self._jwt = _jwt_verifier(config.jwt) if config.jwt is not None else None
            self._probe = (JwksProbe(config.jwt.jwks_uri) if config.jwt is not None
                           and config.jwt.jwks_uri else None)
            jwt = config.jwt
            self._rotation = (KeyRotation(lambda: _jwt_verifier(jwt), clock=self._clock)
                              if jwt is not None and jwt.jwks_uri else None)
        self._jwt_config = config.jwt
        # digest -> (verified token, wall-clock time it stops being served from here);
        # emptied on every change: a JWT accepted under the old settings is checked again.
        self._jwt_cache: dict[bytes, tuple[AccessToken, float]] = {}
        # digest -> ((its Principal, its binding), until): what ``caller`` serves without
        # building an AccessToken and a Principal per request; emptied on every change too.
        self._principals: dict[bytes, tuple[tuple[Principal, str | None], float]] = {}

    def _follow_reloads(self) -> None:
        new = self._current() if self._current is not None else None
        if new is None:
            if self._current is not None and not self._removed_warned:
                self._removed_warned = True
                logger.warning("gateway.auth was removed from the config: the running "
                               "tokens stay in force until the gateway is restarted")
            return
        if new is self._config:
            return
        if new != self._config:
            logger.info("gateway.auth changed: %d token(s)%s", len(new.tokens),
                        ", JWT" if new.jwt is not None else "")
            self._changes += 1
        self._apply(new)

    @property
    def config(self) -> AuthConfig:
        """The ``gateway.auth`` enforced now (reloads followed): what rules that depend
        on it (the per-caller shares) read, so they never disagree with the tokens."""
        self._follow_reloads()
        return self._config

    @property
    def changes(self) -> int:
        """How many reloads changed ``gateway.auth`` (each may have removed or narrowed a
        token): a dashboard's live stream verifies its session again when this moves."""
        self._follow_reloads()  # an identity check unless the config was reloaded
        return self._changes

    @property
    def takes_jwt(self) -> bool:
        """Whether the running ``gateway.auth`` takes JWTs (``jwt``), reloads followed."""
        self._follow_reloads()
        return self._jwt_config is not None

    @property
    def jwt_cache_len(self) -> int:
        """JWTs remembered now (bounded by ``jwt_cache_size``)."""
        return len(self._jwt_cache)

    def standing(self, token: str) -> Standing:
        """A lookup of static ``token``'s principal as the running ``gateway.auth`` has
        it whenever the lookup is called: a reload that narrows the token's scopes or
        servers narrows it, one that removes (rotates) the token makes it None.  Only
        the token's digest is kept.  What a host's session is sent between its
        requests (logs between calls) is filtered by it."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

        def lookup() -> Principal | None:
            self._follow_reloads()
            entry = self._tokens.get(digest)
            if entry is None:
                return None
            return Principal(name=entry.name, scopes=_scopes(entry.scopes),
                             servers=None if entry.servers is None else frozenset(entry.servers))

        return Standing(lookup)

    def jwt_standing(self, principal: Principal, expires_at: float | None) -> Standing:
        """``standing`` for a verified JWT's ``principal`` (its claims name its servers,
        not the config): None once it expires by this gateway's clock (``remaining``
        says when), or a reload changes how JWTs are taken (``jwt`` removed, or its key,
        issuer, audience...)."""
        self._follow_reloads()
        taken = self._jwt_config

        def lookup() -> Principal | None:
            self._follow_reloads()
            if taken is None or self._jwt_config != taken or (
                    expires_at is not None and self._clock() >= expires_at):
                return None
            return principal

        def remaining() -> float | None:
            return None if expires_at is None else expires_at - self._clock()

        return Standing(lookup, remaining)

    async def principal(self, token: str) -> Principal | None:
        """The ``Principal`` of ``token``, or None (a 401): ``verify_token`` and
        ``principal_of``, remembered per token digest (a static token until the config
        changes, a JWT as long as its verification is cached), bounded as the JWT
        cache is.  The REST API asks this on every request."""
        found = await self.caller(token)
        return None if found is None else found[0]

    async def caller(self, token: str) -> tuple[Principal, str | None] | None:
        """``principal``, and the caller binding the full path seals into the
        ``requestState`` of the asking rounds of a request with ``token``
        (``_compat.principal_binding``): the HTTP express lane asks this on every request
        and seals (opens) its rounds' states with that binding, as the full path does."""
        self._follow_reloads()
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        cached = self._principals.get(digest)
        now = self._clock()
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._principals[digest]
        verified = await self.verify_token(token)
        if verified is None:
            return None
        found = (principal_of(verified), principal_binding(verified))
        until = float("inf") if digest in self._tokens else None
        if until is None and (jwt := self._jwt_cache.get(digest)) is not None \
                and jwt[0] is verified:
            until = jwt[1]
        if until is not None and self._cache_size > 0:
            while len(self._principals) >= self._cache_size:
                del self._principals[next(iter(self._principals))]  # the oldest entry
            self._principals[digest] = (found, until)
        return found

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's ``AccessToken``, or None (a 401).  Never raises: FastMCP turns a
        verifier's exception into a bare 500 without ``WWW-Authenticate``, so a failing
        JWKS fetch or a malformed JWT is logged (never the token) and refused.  A refused
        JWT's reason is left in ``jwt_refusals.refusal`` for the 401's words, and
        logged (``jwt_refusals``).  A token an express lane refused for this request
        (``refused_for_request``) is refused again as it was, unverified."""
        refused = _refused.get()
        if refused is not None:
            _refused.set(None)  # one use: the full path's guard, after the lane
            if refused[0] is self._config and refused[1] == token:
                jwt_refusals.refusal.set(refused[2])  # the same words in its 401
                return None
        jwt_refusals.refusal.set(None)
        try:
            return await self._verify(token)
        except Exception as exc:  # noqa: BLE001 - any failure is a refusal, never a 500
            self._refusals.warn("failed", "bearer token refused: verification failed (%s)",
                                type(exc).__name__)
            return None

    def refused_for_request(self, token: str) -> None:
        """``token`` was just refused (``verify_token``) ahead of FastMCP's guard, which
        the request goes to next (``Access.verified``): its ``verify_token`` there, in
        this task, refuses it at once in the same words, so that a bad token is verified
        (a JWT's signature checked, its refusal logged) once per request, not twice."""
        _refused.set((self._config, token, jwt_refusals.refusal.get()))

    async def _verify(self, token: str) -> AccessToken | None:
        self._follow_reloads()  # an identity check unless the config was reloaded
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        match = self._tokens.get(digest)
        if match is not None:
            return AccessToken(
                token=token, client_id=match.name, scopes=list(match.scopes),
                claims={_KIND_CLAIM: "token",
                        _SERVERS_CLAIM: None if match.servers is None else list(match.servers)},
            )
        if digest in self._removed:
            jwt_refusals.refusal.set(REMOVED)
            return None
        if self._jwt is None or self._jwt_config is None or token.count(".") != 2:
            return None
        now = self._clock()
        cached = self._jwt_cache.get(digest)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._jwt_cache[digest]
        if self._rotation is not None:
            self._jwt = self._rotation.running(self._jwt)  # its keys at most minutes old
        verified = await self._jwt.verify_token(token)
        if verified is None and self._rotation is not None and jwt_refusals.diagnose(
                token, self._jwt_config, now).cause == "signature":
            fresh = await self._rotation.retry(token, self._jwt)  # a key published since?
            if fresh is not None:
                self._jwt, verified = fresh
        if verified is None:
            await self._refused(token, self._jwt_config, now)
            return None
        if self._rotation is not None:
            self._rotation.taken(token)
        claim = self._jwt_config.subject_claim
        subject = (verified.claims or {}).get(claim)
        problem = None if subject is None else subject_problem(str(subject))
        if problem is not None:  # checked first: the refusals below log the subject
            # Its subject names the caller in the records, the audit log and the dashboard.
            self._refusals.warn("subject", "refused a JWT whose '%s' %s; have the issuer "
                                "name the subject plainly, or set gateway.auth.jwt."
                                "subject_claim to a claim that does", claim, problem)
            jwt_refusals.refusal.set(
                f"{_VERIFIED_JWT}its '{claim}' claim {problem}: it names the caller in call "
                f"records, the audit log and the dashboard, so it must be a plain name (at "
                f"most {MAX_SUBJECT} characters, no control characters); have the issuer "
                "name the subject plainly, or set gateway.auth.jwt.subject_claim to a claim "
                "that does")
            return None
        if verified.expires_at is None:
            # An access token must expire (RFC 9068, 2.2): one without 'exp', lifted once
            # from a log or a proxy, would be valid until the issuer's key is rotated.
            self._refusals.warn("no exp", "refused a JWT without 'exp' (subject %r): access "
                                "tokens must expire; have the issuer set one",
                                subject)  # checked above
            jwt_refusals.refusal.set(f"{_VERIFIED_JWT}it has no 'exp' claim: access tokens "
                                     "must expire (RFC 9068); have the issuer set one")
            return None
        if verified.expires_at <= now:
            # Expired by this gateway's clock (the verifier allows some skew).
            await self._refused(token, self._jwt_config, now)
            return None
        if not (verified.claims or {}).get(claim):
            # Who calls names the records, the audit log and the binding of asking rounds
            # and tasks: tokens without it would all be one caller ("unknown").
            jwt_refusals.refusal.set(
                f"{_VERIFIED_JWT}it has no '{claim}' claim naming its caller (RFC 9068 "
                "access tokens name their subject); have the issuer set it, or set "
                "gateway.auth.jwt.subject_claim")
            self._refusals.warn("no subject", "refused a JWT without '%s' (RFC 9068 access "
                                "tokens name their subject); have the issuer set it, or set "
                                "gateway.auth.jwt.subject_claim", claim)
            return None
        if (wrong := self._claim_types(verified.claims or {}, self._jwt_config)) is not None:
            self._refusals.warn(f"type {wrong[1]}", "%s (subject %r)", wrong[1], subject)
            jwt_refusals.refusal.set(_VERIFIED_JWT + wrong[0])
            return None
        access = _from_jwt(verified, self._jwt_config)
        if access is not None and (access.claims or {}).get(_NO_SERVER_CLAIM) and (
                self._jwt_config.servers_claim not in (verified.claims or {})):
            self._refusals.warn(
                "no servers claim", "a JWT without '%s' (gateway.auth.jwt.servers_claim; "
                "subject %r) may use no server: have the identity provider list the "
                "servers its user may use in it, or \"*\" for every server",
                self._jwt_config.servers_claim, subject)
        if access is not None and self._cache_size > 0:
            until = now + JWT_CACHE_SECONDS
            if verified.expires_at is not None:
                until = min(until, float(verified.expires_at))
            while len(self._jwt_cache) >= self._cache_size:
                del self._jwt_cache[next(iter(self._jwt_cache))]  # the oldest entry
            self._jwt_cache[digest] = (access, until)
        return access

    @staticmethod
    def _claim_types(claims: dict[str, Any], config: JwtConfig) -> tuple[str, str] | None:
        """The holder's and the operator's words for a JWT whose scopes or servers
        claim is neither a string nor a list of strings (``jwt_claims``), or None."""
        for setting, claim in (("scopes_claim", config.scopes_claim),
                               ("servers_claim", config.servers_claim)):
            if claim is not None and jwt_claims.claim_values(claims, claim) is None:
                return jwt_claims.type_refusal(claim, setting)
        return None

    async def _refused(self, token: str, config: JwtConfig, now: float) -> None:
        """Word why FastMCP's verifier refused ``token`` (``jwt_refusals``): for its
        holder's 401, and once a minute per cause in the log."""
        found = jwt_refusals.diagnose(token, config, now)
        jwt_refusals.refusal.set(found.caller)
        if not self._refusals.due(found.cause):
            return
        probe = self._probe
        detail = (await probe.explain(found.kid)
                  if probe is not None and found.cause == "signature" else None)
        self._refusals.write(found, detail)


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot name a caller (in words for the log, never the subject
    itself in full), or None."""
    if len(subject) > MAX_SUBJECT:
        return f"has {len(subject)} characters (at most {MAX_SUBJECT})"
    bad = next((c for c in subject if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl",
                                                                  "Zp")), None)
    if bad is not None:
        return (f"holds the control character U+{ord(bad):04X} (at position "
                f"{subject.index(bad)})")
    return None


def mcp_auth(verifier: GatewayVerifier, config: AuthConfig, base_url: str) -> AuthProvider:
    """What FastMCP's MCP endpoint authenticates with: ``verifier`` itself, or, when
    JWTs are configured, ``verifier`` wrapped to serve OAuth 2.0 Protected Resource
    Metadata (RFC 9728) at ``/.well-known/oauth-protected-resource<mcp path>`` naming
    the JWT issuer, with ``resource_metadata=`` in every 401's ``WWW-Authenticate``.
    Static tokens alone have no issuer to point at, so no metadata is served."""
    if config.jwt is None:
        return verifier
    return RemoteAuthProvider(
        token_verifier=verifier, authorization_servers=[config.jwt.issuer],  # type: ignore[list-item]
        base_url=base_url, scopes_supported=list(SCOPES), resource_name="mcp-gateway")


def _jwt_verifier(config: JwtConfig) -> JWTVerifier:
    # Imported here: a gateway without JWTs never loads it (~0.3 MB of RSS).
    from fastmcp.server.auth.providers.jwt import JWTVerifier

    audience = list(config.audience) if isinstance(config.audience, tuple) else config.audience
    return JWTVerifier(public_key=config.public_key, jwks_uri=config.jwks_uri,
                       issuer=config.issuer, audience=audience, algorithm=config.algorithm)


def _from_jwt(token: AccessToken, config: JwtConfig) -> AccessToken | None:
    """``token`` (verified, its claims' types checked: ``_claim_types``) with the
    gateway's scopes and servers (``jwt_claims.servers``: fail closed)."""
    claims = dict(token.claims or {})
    scopes = jwt_claims.claim_values(claims, config.scopes_claim) or []
    subject = str(claims.get(config.subject_claim) or token.subject or token.client_id)
    servers = jwt_claims.servers(claims, config.servers_claim)
    claims.update({_KIND_CLAIM: "jwt", _SERVERS_CLAIM: servers, _NO_SERVER_CLAIM: (
        jwt_claims.no_server(subject, config.servers_claim)
        if servers == [] and config.servers_claim is not None else None)})
    return AccessToken(token=token.token, client_id=subject, scopes=[
        s for s in scopes if s in SCOPES], expires_at=token.expires_at, subject=token.subject,
        claims=claims)
