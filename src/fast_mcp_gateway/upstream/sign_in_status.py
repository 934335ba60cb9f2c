"""What status surfaces say of a server's sign-in (``auth:``): signed in, signed out, a
sign-in pending, or (``client_credentials``, which nobody signs in to) no token yet;
until when its token is valid, its authorization server and scopes -- never a token
(``gateway_status``/``gateway_list_servers``, REST ``/api/v1/servers``,
``mcp-gateway check``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.model import UpstreamState


class SignInStatus(BaseModel):
    """A server's sign-in (``auth:``), without any value."""

    state: Literal["signed_in", "signed_out", "pending", "no_token"] = Field(
        description="signed_in: it holds a token; signed_out: none (gateway_sign_in or "
        "'mcp-gateway login' signs it in); pending: a sign-in link waits for its person; "
        "no_token: a client_credentials server got no token yet (nobody signs in: the "
        "gateway asks its token endpoint again by itself; its last_error says why, "
        "check auth.client_id, client_secret and token_url or issuer)")
    expires_at: float | None = Field(
        default=None, description="unix seconds: when its access token ends (renewed "
        "before by itself); null when unknown")
    issuer: str | None = Field(default=None, description="its authorization server")
    scopes: list[str] = Field(default_factory=list)


def sign_in_status(config: ServerConfig, state: UpstreamState,
                   sign_ins: Any = None) -> SignInStatus | None:
    """``config``'s server's sign-in as the gateway (``sign_ins``, else the task's
    ``BOOK``) holds it now; None without ``auth:``."""
    auth = config.auth
    if auth is None:
        return None
    from fast_mcp_gateway.upstream.oauth_grant import BOOK  # (only with auth: loaded)

    book = sign_ins.book if sign_ins is not None else BOOK.get()
    slot = book.slots.get((config.name, auth, config.url)) if book is not None else None
    token = slot.token if slot is not None else None
    row = book.seen.get(config.name) if book is not None else None
    said: Literal["signed_in", "signed_out", "pending", "no_token"]
    if auth.type == "client_credentials":
        said = "no_token" if token is None else "signed_in"  # (no sign-in to advise)
    elif sign_ins is not None and sign_ins.pending(config.name):
        said = "pending"
    elif state is UpstreamState.SIGNED_OUT or token is None:
        said = "signed_out"
    else:
        said = "signed_in"
    expires = token.expires_at if token is not None else None
    scopes = row.scopes.split() if row is not None and row.scopes else list(auth.scopes)
    return SignInStatus(state=said, expires_at=expires, scopes=scopes,
                        issuer=(row.issuer if row is not None else None) or auth.issuer
                        or auth.token_url)
