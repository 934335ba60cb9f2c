"""Who is calling: the identity every layer passes along (front, admin, records, audit).

A leaf module, so that the call pipeline, the admin operations and the HTTP front share
one type without importing each other.  ``http/auth.py`` makes principals from verified
tokens and JWTs; a stdio gateway's one host is ``LOCAL``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fast_mcp_gateway.config.auth import SCOPES, Scope

__all__ = ["KIND_CLAIM", "LOCAL", "Principal", "Standing"]

KIND_CLAIM = "io.github.fast-mcp-gateway/kind"
"""The claim of a verified ``AccessToken`` saying what it is: token (static) or jwt."""


@dataclass(frozen=True)
class Principal:
    """A verified caller.  ``servers`` is ``None`` for "every server"; ``no_server``
    says why a caller whose credential should name its servers may use none (a JWT
    without ``gateway.auth.jwt.servers_claim``: ``http/jwt_claims.py``), for every
    refusal of a server to it."""

    name: str
    scopes: frozenset[Scope]
    servers: frozenset[str] | None = None
    kind: str = "token"  # token | jwt | local
    no_server: str | None = field(default=None, compare=False)

    def has(self, scope: Scope) -> bool:
        """``admin`` implies ``tools``."""
        return scope in self.scopes or (scope == "tools" and "admin" in self.scopes)

    def may_use(self, server: str) -> bool:
        return self.servers is None or server in self.servers

    @property
    def record_kind(self) -> str:
        """What its calls' records say it is (``Invocation.client_kind``): ``token`` or
        ``jwt`` (``client``: the token's name, the JWT's subject), else ``host`` (the
        host's client id: stdio, http, ...).  Names alone collide: a JWT whose subject
        is a static token's name, a token named ``stdio``."""
        return self.kind if self.kind in ("token", "jwt") else "host"

    @property
    def own_records(self) -> tuple[str, str] | None:
        """Whose call records, live call events and per-client sessions this caller sees:
        its own, ``(client_kind, client)`` = ``(record_kind, name)``, when it is a token
        or JWT without scope ``admin``; ``None`` (everyone's, on the servers it may use)
        for an admin, the anonymous caller of a gateway without ``auth`` and the local
        host.  A team's callers share servers, and a record holds what its caller sent
        (arguments, secrets masked) and was told (error texts).  A record without a kind
        (written before gateways recorded one) is an admin's only."""
        if self.kind in ("token", "jwt") and "admin" not in self.scopes:
            return (self.kind, self.name)
        return None

    def sees_records_of(self, client: str | None, client_kind: str | None) -> bool:
        """Whether a record (or event, or session) of ``client`` of ``client_kind`` is
        this caller's to see."""
        own = self.own_records
        return own is None or (client_kind, client) == own

    def only(self, verb: str) -> str:
        """Whose servers this restricted caller may ``verb`` ("see", "manage"), for a
        refusal of something beyond them; a JWT granting none says why instead."""
        if self.no_server is not None:
            return self.no_server
        mine = ", ".join(sorted(self.servers or ()))
        if self.kind == "jwt":  # it has no 'servers' list: its claim names them
            return (f"the JWT of '{self.name}' may only {verb} the servers {mine} (its "
                    "servers claim, gateway.auth.jwt.servers_claim; \"*\" there grants "
                    "every server)")
        return f"the token '{self.name}' may only {verb} the servers {mine}"

    @property
    def holds(self) -> str:
        """What its credential grants, in words for a refusal: a JWT granting no scope
        of the gateway's says which claim must name one (an identity provider's default
        scopes, "openid profile", are no scope here)."""
        names = ", ".join(sorted(self.scopes))
        if self.kind == "jwt":
            return (f"the JWT of '{self.name}' grants {names}" if names else
                    f"the JWT of '{self.name}' grants no scope of this gateway: its scopes "
                    "claim (gateway.auth.jwt.scopes_claim, 'scope' unless set) must name "
                    "tools or admin")
        return f"the token '{self.name}' has {names or 'no scopes'}"


LOCAL = Principal(name="local", scopes=frozenset(SCOPES), kind="local")
"""The host that launched a stdio gateway (trusted: it could run the command itself)."""


def _never() -> float | None:
    return None


@dataclass(frozen=True)
class Standing:
    """A caller as a lookup for later: ``standing()`` is its principal as the running
    config has it then, ``None`` once its credential no longer stands (a static token a
    reload removed, a JWT that expired).  ``remaining()``: the seconds until it ends by
    itself (a JWT's expiry), ``None`` when only a reload can end it."""

    lookup: Callable[[], Principal | None]
    remaining: Callable[[], float | None] = _never

    def __call__(self) -> Principal | None:
        return self.lookup()
