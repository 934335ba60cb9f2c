"""The ``gateway.auth`` section: who may use the gateway over HTTP, and for what.

```yaml
gateway:
  auth:
    tokens:
      - name: ops                  # the actor in audit and call records
        token: ${GW_OPS_TOKEN}     # or  sha256: <64 hex digits>  (never the clear token)
        scopes: [admin]            # admin implies tools
      - name: alice
        sha256: 9f86d08...
        scopes: [tools]
        servers: [notes]           # namespaces this token may see and call; default all
    jwt:
      jwks_uri: https://idp.example/.well-known/jwks.json
      issuer: https://idp.example/
      audience: mcp-gateway
      scopes_claim: scope
      servers_claim: mcp_servers
```
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Collection
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger(__name__)

Scope = Literal["admin", "tools"]
SCOPES: tuple[Scope, ...] = ("admin", "tools")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
NAME_RULE = "letters, digits and _ . @ - only (no spaces), at most 64 characters"
SCOPE_HELP = "tools (list and call tools) or admin (also manage the gateway; implies tools)"
_SHA_PREFIX = "sha256:"
MIN_TOKEN_LENGTH = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def printable_ascii(token: str) -> bool:
    """Whether ``token`` can arrive in an ``Authorization`` header as it is: printable
    ASCII, no space at either end (HTTP strips it)."""
    return all(" " <= c <= "~" for c in token) and token == token.strip(" ")


def token_digest(token: str) -> str:
    """The hex SHA-256 of a token, as written in ``sha256:`` entries."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenEntry(_Strict):
    """One static bearer token.  Only its digest is kept after validation."""

    name: str
    token: str | None = Field(default=None, repr=False)
    sha256: str | None = None
    scopes: tuple[Scope, ...]
    servers: tuple[str, ...] | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _plain_name(cls, value: object) -> object:
        if isinstance(value, str) and not _NAME.match(value):
            what = "is empty" if not value else f"'{value[:70]}' is not a valid token name"
            raise ValueError(f"{what}: use {NAME_RULE} (it is the actor shown in audit and "
                             "call records)")
        return value

    @field_validator("scopes", mode="before")
    @classmethod
    def _known_scopes(cls, value: object) -> object:
        # One message for the list as a whole: pydantic would add a second, derived one
        # ("Tuple should have at least 1 item") for each unknown scope.
        if isinstance(value, str):
            example = value if value in SCOPES else "tools"
            raise ValueError(f"must be a list, e.g. scopes: [{example}]; the valid scopes "
                             f"are {SCOPE_HELP}")
        if not isinstance(value, list | tuple):
            return value  # not a list: the type check says so
        unknown = [v for v in value if v not in SCOPES]
        if unknown:
            import difflib  # here, not at the top: only a typo needs it (~0.15 MB of RSS)

            names = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in unknown)
            close = [m[0] for v in unknown if isinstance(v, str)
                     for m in [difflib.get_close_matches(v, SCOPES, n=1)] if m]
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise ValueError(f"unknown scope {names}{hint}; the valid scopes are {SCOPE_HELP}")
        if not value:
            raise ValueError(f"give at least one scope: {SCOPE_HELP}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _split_prefixed_digest(cls, data: object) -> object:
        # ``token: sha256:<hex>`` is accepted as the digest form too.
        if isinstance(data, dict) and isinstance(data.get("token"), str) and (
            data["token"].startswith(_SHA_PREFIX)
        ):
            data = dict(data)
            if data.get("sha256") is not None:
                raise ValueError("give either 'token: sha256:<hex>' or 'sha256', not both")
            data["sha256"] = data.pop("token")[len(_SHA_PREFIX):]
        return data

    @model_validator(mode="after")
    def _one_secret(self) -> TokenEntry:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'token' (e.g. ${MY_TOKEN}) or 'sha256' "
                             "(from 'mcp-gateway token new')")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"token is shorter than {MIN_TOKEN_LENGTH} characters; make one "
                             "with 'mcp-gateway token new'")
        if self.token is not None and not printable_ascii(self.token):
            # An HTTP header is read as latin-1 and the digest is of UTF-8: such a token
            # could never authenticate (a line break from a file read into ${VAR} too).
            raise ValueError(
                f"the token of '{self.name}' holds a character that is not printable ASCII "
                "(a letter with an accent, a line break, a tab, a space at either end), so "
                "no request could send it: tokens must be printable ASCII; make one with "
                "'mcp-gateway token new'")
        if self.sha256 is not None and not _HEX64.match(self.sha256.lower()):
            raise ValueError("sha256 must be 64 hexadecimal digits (the line "
                             "'mcp-gateway token new' prints)")
        return self

    @field_validator("servers", mode="before")
    @classmethod
    def _server_list(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError(f"must be a list of server names, e.g. servers: [{value}] "
                             "(leave it out for every server)")
        return value

    @property
    def digest(self) -> str:
        if self.sha256 is not None:
            return self.sha256.lower()
        assert self.token is not None
        return token_digest(self.token)


class JwtConfig(_Strict):
    """JWTs from an identity provider, checked against its JWKS (or a fixed public key)."""

    jwks_uri: str | None = None
    public_key: str | None = Field(default=None, repr=False)
    issuer: str
    audience: str | tuple[str, ...] | None = None
    algorithm: str = "RS256"
    scopes_claim: str = "scope"
    servers_claim: str | None = None
    subject_claim: str = "sub"

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtConfig:
        if (self.jwks_uri is None) == (self.public_key is None):
            raise ValueError("give exactly one of 'jwks_uri' or 'public_key'")
        if not self.audience:
            # RFC 9068 4: a resource server checks that a token was issued for it.
            raise ValueError(
                "give 'audience': the 'aud' your identity provider puts in the tokens it "
                "issues for this gateway (e.g. audience: mcp-gateway); without it a token "
                "the provider issued for any other application, with its scopes, is "
                "accepted here")
        return self


class AuthConfig(_Strict):
    """Static tokens and/or JWTs; at least one way in."""

    tokens: tuple[TokenEntry, ...] = ()
    jwt: JwtConfig | None = None
    metrics_public: bool = False  # /metrics without a token (e.g. a scraper on loopback)

    @model_validator(mode="after")
    def _usable(self) -> AuthConfig:
        if not self.tokens and self.jwt is None:
            raise ValueError("auth needs 'tokens' or 'jwt' (or leave 'auth' out)")
        # One name may hold several tokens, as a rotation needs (the new token next to the
        # old until every host uses it): the name is the caller (records, audit, own
        # calls, sessions), so its tokens must grant the same.
        reach: dict[str, tuple[frozenset[str], frozenset[str] | None]] = {}
        for t in self.tokens:
            grants = (frozenset(t.scopes), None if t.servers is None else frozenset(t.servers))
            if reach.setdefault(t.name, grants) != grants:
                raise ValueError(
                    f"token name '{t.name}' is repeated with other scopes or servers: one "
                    "name is one caller (audit and call records, its own calls, its "
                    "sessions), so its entries -- the old and the new token of a rotation "
                    "-- must have the same scopes and servers; give the other token its "
                    "own name")
        digests = [t.digest for t in self.tokens]
        if len(set(digests)) != len(digests):
            raise ValueError("two token entries have the same token; give each its own")
        return self


def reach_changed(old: AuthConfig | None, new: AuthConfig | None) -> bool:
    """Whether a reload from ``old`` to ``new`` changes what an open session's credential
    may list: a token kept (by its digest) with other ``scopes`` or ``servers``, or
    another ``jwt`` section (how a JWT's scopes and servers are read).  A removed token's
    sessions are refused instead, an added one has none, a renamed one lists the same."""
    if old is None or new is None:
        return old is not new
    after = {t.digest: (t.scopes, t.servers) for t in new.tokens}
    return old.jwt != new.jwt or any(
        t.digest in after and after[t.digest] != (t.scopes, t.servers) for t in old.tokens)

def auth_changes(old: AuthConfig | None, new: AuthConfig | None) -> str | None:
    """What a reload changed in ``gateway.auth``, by token name (never a token or a
    digest), for the log: the reload's own line counts servers only, and said "no
    change" after an edit of the tokens alone.  None if nothing changed."""
    if old == new:
        return None
    if old is None or new is None:
        return "the section was added" if old is None else "the section was removed"
    before = {t.digest: t for t in old.tokens}
    after = {t.digest: t for t in new.tokens}
    added = [t.name for d, t in after.items() if d not in before]
    removed = [t.name for d, t in before.items() if d not in after]
    kept = {t.name for d, t in after.items() if d in before}  # a rotation's new token
    parts = [f"{what}: {', '.join(names)}" for what, names in (
        ("token(s) added", [n for n in added if n not in removed]),
        ("token(s) removed", [n + (" (a token of that name stays)" if n in kept else "")
                              for n in removed if n not in added]),
        ("token(s) replaced (the old one is refused)", [n for n in added if n in removed]),
        ("given other scopes or servers", [
            t.name for d, t in after.items()
            if d in before and (t.scopes, t.servers) != (before[d].scopes, before[d].servers)]),
        ("renamed", [f"{before[d].name} -> {t.name}" for d, t in after.items()
                     if d in before and before[d].name != t.name])) if names]
    if old.jwt != new.jwt:
        parts.append("jwt settings changed")
    if old.metrics_public != new.metrics_public:
        parts.append(f"metrics_public: {new.metrics_public}".lower())
    return "; ".join(parts) or "token entries rewritten (same tokens, same reach)"

def expand_auth(raw: dict[str, Any], expand: Callable[[str, str], Any]) -> dict[str, Any]:
    """``raw`` (the ``auth:`` mapping as read) with ``expand(value, field)`` applied to the
    secrets and settings that may come from the environment: each token's ``token`` and
    ``sha256``, and every ``jwt`` string.  Other shapes are left for validation to reject.
    A token written in clear in the file is warned about (``warn_clear_token``)."""
    def one(value: Any, field: str) -> Any:
        return expand(value, field) if isinstance(value, str) else value

    out = dict(raw)
    if isinstance(raw.get("tokens"), list):
        for i, entry in enumerate(raw["tokens"]):
            warn_clear_token(entry, f"tokens[{i}]")
        out["tokens"] = [
            {**entry, **{k: one(entry[k], f"tokens[{i}].{k}")
                         for k in ("token", "sha256") if k in entry}}
            if isinstance(entry, dict) else entry
            for i, entry in enumerate(raw["tokens"])]
    if isinstance(raw.get("jwt"), dict):
        out["jwt"] = {k: one(v, f"jwt.{k}") for k, v in raw["jwt"].items()}
    return out


def warn_clear_token(entry: object, where: str) -> bool:
    """Log a warning (naming the entry, never the value) when a ``tokens`` entry as read
    from the file holds the clear token itself rather than a ``${VAR}`` reference or a
    digest; True if it did.  Only the file's text can tell: once expanded, a variable's
    value looks the same."""
    token = entry.get("token") if isinstance(entry, dict) else None
    if not isinstance(token, str) or token.startswith(_SHA_PREFIX) or "${" in token \
            or not printable_ascii(token):  # refused by validation: no digest to offer
        return False
    name = entry.get("name") if isinstance(entry, dict) else None
    label = f"{where} ('{name}')" if isinstance(name, str) else where
    logger.warning(
        "gateway.auth.%s: the token is written in the config file in clear; anyone who can "
        "read the file can use it. Replace 'token: ...' with 'sha256: %s' (its digest), or "
        "keep the token in an environment variable and write 'token: ${VAR}'",
        label, token_digest(token))
    return True


RUNTIME_SERVERS: ContextVar[frozenset[str]] = ContextVar("runtime_servers",
                                                         default=frozenset())
"""The servers registered at runtime, known while a running gateway reloads its file: a
token may name them without a warning."""

TOKEN_SERVERS_LATER: ContextVar[bool] = ContextVar("token_servers_later", default=False)
"""True while the CLI loads a config whose runtime registrations it reads from the store
after (``serve`` with a store, ``servers``, ``check``): validation then says nothing of
tokens' servers, and ``warn_unknown_servers`` is called once the registrations are
known (``ControlPlane.attach``, ``reports.merged_servers``).  Checked at validation, a
token naming a server registered at runtime was warned about at every start."""


def warn_unknown_servers(auth: AuthConfig | None, servers: Collection[str],
                         registered: Collection[str] | None = None) -> list[str]:
    """Log a warning for each token whose ``servers`` names servers the config does not
    have, nor ``registered`` (the runtime registrations; default ``RUNTIME_SERVERS``): a
    typo, or a server registered at runtime later: hence no error; the warnings, as
    logged (none while ``TOKEN_SERVERS_LATER``, unless ``registered`` is given)."""
    warnings: list[str] = []
    if registered is None:
        if TOKEN_SERVERS_LATER.get():
            return warnings
        registered = RUNTIME_SERVERS.get()
    for entry in auth.tokens if auth is not None else ():
        unknown = [s for s in entry.servers or () if s not in servers and s not in registered]
        if not unknown:
            continue
        import difflib  # here, not at the top: only a typo needs it (~0.15 MB of RSS)

        configured = sorted({*servers, *registered})  # the runtime ones are configured too
        hints = [f"'{s}' (did you mean '{m[0]}'?)" if m else f"'{s}'" for s in unknown
                 for m in [difflib.get_close_matches(s, configured, n=1)]]
        known = ", ".join(configured) or "none"
        warnings.append(
            f"gateway.auth: token '{entry.name}' names servers that are not configured: "
            f"{', '.join(hints)}; configured servers: {known}. Fix the name, unless that "
            "server is added at runtime (then this token reaches it once it is)")
    for text in warnings:
        logger.warning("%s", text)
    return warnings
