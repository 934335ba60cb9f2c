"""The calling host's own credential, for upstreams that take it (``${caller.*}``).

An HTTP upstream may name the caller's credential in its headers instead of a shared
one: ``Authorization: "Bearer ${caller.token}"`` (the bearer token the host presented
to the gateway) or ``${caller.claims.<name>}`` (a claim of its verified JWT).  Such a
server is per_client: each caller identity gets its own upstream session, opened with
that caller's headers (``routing/isolation.py``).

Trust: the gateway forwards a token it has verified to an upstream the operator named
in ``servers.yaml``; the upstream must accept the gateway's tokens (same issuer or
audience).  The token is registered for redaction before it is used (``redaction.
CALLERS``, bounded: a refreshed JWT is a new value), so it is masked in every log,
record and error text, and it is never stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from fast_mcp_gateway.config.schema import CALLER_REFERENCE, ServerConfig
from fast_mcp_gateway.errors import UpstreamUnavailable
from fast_mcp_gateway.principal import KIND_CLAIM
from fast_mcp_gateway.telemetry.redaction import CALLERS, config_secrets


@dataclass(frozen=True)
class Caller:
    """Who called, as the HTTP front verified it (never in a repr: the token is secret)."""

    name: str
    token: str = field(repr=False)
    claims: dict[str, Any] = field(default_factory=dict, repr=False, hash=False,
                                   compare=False)

    @property
    def kind(self) -> str:
        """What its credential is: token (static) or jwt (``Principal.kind``)."""
        return str(self.claims.get(KIND_CLAIM, "token"))

    @property
    def identity(self) -> str:
        """A stable key for the caller's credential that does not reveal it."""
        return hashlib.sha256(self.token.encode()).hexdigest()[:32]


def without_caller_headers(config: ServerConfig) -> ServerConfig:
    """``config`` minus the headers that need a caller (for the catalog session)."""
    if not config.uses_caller_credentials:
        return config
    headers = {k: v for k, v in config.headers.items() if not CALLER_REFERENCE.search(v)}
    return config.model_copy(update={"headers": headers})


def for_caller(config: ServerConfig, caller: Caller | None) -> ServerConfig:
    """``config`` with every ``${caller.*}`` in its headers filled in for ``caller``.

    Raises ``UpstreamUnavailable`` (naming what is missing, never a value) when the
    call has no verified caller or its token lacks a claim a header names.
    """
    if caller is None:
        raise UpstreamUnavailable(
            config.name, "takes the caller's own credential (${caller.*} in its headers), "
            "and this call has none: serve the gateway over HTTP with 'gateway: auth' and "
            "call it with a bearer token")
    # Registered before any use: whatever echoes it (an upstream's error, a log line)
    # is masked from here on (bounded: a caller's refreshed JWT is a new value).
    CALLERS.add([caller.token])

    def fill(match: Any) -> str:
        ref = match.group(1)
        if ref == "token":
            return caller.token
        name = ref.removeprefix("claims.")
        value = caller.claims.get(name)
        if value is None:
            raise UpstreamUnavailable(
                config.name, f"its headers use ${{caller.claims.{name}}}, and the caller's "
                f"token has no '{name}' claim")
        return str(value)

    headers = {k: CALLER_REFERENCE.sub(fill, v) for k, v in config.headers.items()}
    CALLERS.add(config_secrets([], {}, headers, []))
    return config.model_copy(update={"headers": headers})
