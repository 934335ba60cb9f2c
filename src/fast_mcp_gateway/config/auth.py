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
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scope = Literal["admin", "tools"]
SCOPES: tuple[Scope, ...] = ("admin", "tools")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SHA_PREFIX = "sha256:"
MIN_TOKEN_LENGTH = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def token_digest(token: str) -> str:
    """The hex SHA-256 of a token, as written in ``sha256:`` entries."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenEntry(_Strict):
    """One static bearer token.  Only its digest is kept after validation."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    token: str | None = Field(default=None, repr=False)
    sha256: str | None = None
    scopes: tuple[Scope, ...] = Field(min_length=1)
    servers: tuple[str, ...] | None = None

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
        if self.sha256 is not None and not _HEX64.match(self.sha256.lower()):
            raise ValueError("sha256 must be 64 hexadecimal digits (the line "
                             "'mcp-gateway token new' prints)")
        return self

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
        names = [t.name for t in self.tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"token names must be unique; repeated: {', '.join(dupes)}")
        digests = [t.digest for t in self.tokens]
        if len(set(digests)) != len(digests):
            raise ValueError("two token entries have the same token; give each its own")
        return self


def expand_auth(raw: dict[str, Any], expand: Callable[[str, str], Any]) -> dict[str, Any]:
    """``raw`` (the ``auth:`` mapping as read) with ``expand(value, field)`` applied to the
    secrets and settings that may come from the environment: each token's ``token`` and
    ``sha256``, and every ``jwt`` string.  Other shapes are left for validation to reject."""
    def one(value: Any, field: str) -> Any:
        return expand(value, field) if isinstance(value, str) else value

    out = dict(raw)
    if isinstance(raw.get("tokens"), list):
        out["tokens"] = [
            {**entry, **{k: one(entry[k], f"tokens[{i}].{k}")
                         for k in ("token", "sha256") if k in entry}}
            if isinstance(entry, dict) else entry
            for i, entry in enumerate(raw["tokens"])]
    if isinstance(raw.get("jwt"), dict):
        out["jwt"] = {k: one(v, f"jwt.{k}") for k, v in raw["jwt"].items()}
    return out
