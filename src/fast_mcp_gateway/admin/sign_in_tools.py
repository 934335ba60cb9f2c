"""``gateway_sign_in`` and ``gateway_sign_out``: a person's sign-in to a server with
``auth: {type: oauth}`` (``upstream/sign_in.py``), from any host.

``gateway_sign_in`` answers the link to open (valid 10 minutes) as text and data; it
never opens a browser (the gateway may run under a desktop host or on a server).  The
person's browser comes back to the gateway's loopback callback; the server then leaves
``signed_out`` by itself.  ``gateway_sign_out`` revokes and forgets the sign-in.  Both
change state: ``admin: read_only`` refuses them.  Neither the link (its ``state`` and
PKCE challenge) nor any token reaches the audit log: it records the server and the
outcome.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.scope import actor
from fast_mcp_gateway.admin.server_tools import ServerName
from fast_mcp_gateway.errors import AdminError
from fast_mcp_gateway.upstream.sign_in import SignIns, current_sign_ins
from fast_mcp_gateway.upstream.sign_in_page import back, valid_for


class SignInLink(BaseModel):
    """A sign-in waiting for its person."""

    server: str
    url: str = Field(description="the link to open in a browser")
    expires_in_seconds: int
    callback: str = Field(description="where the browser comes back: loopback on the "
                          "gateway's machine (forward its port to sign in from another)")
    message: str


class SignedOut(BaseModel):
    server: str
    signed_out: bool = Field(description="whether a stored sign-in was forgotten")
    message: str


def _sign_ins(ctx: AdminContext, name: str) -> SignIns:
    found = current_sign_ins(ctx.manager)
    if found is None:
        raise AdminError(f"this gateway keeps no sign-ins (library mode without them); "
                         f"run 'mcp-gateway login {name}'")
    return found


async def sign_in(ctx: AdminContext, name: ServerName) -> SignInLink:
    """Start signing in to a server with auth: {type: oauth}: returns the link a person
    opens in a browser to sign in (valid 10 minutes). The server connects once the
    sign-in completes; the sign-in is kept (sealed) for later runs."""
    import time

    service = ctx.manager.get(name)
    who = actor()
    sign_ins = _sign_ins(ctx, name)
    pending = await sign_ins.start(service.config, who.id)
    await ctx.audit(who, "sign_in", name, None, "link given")
    now = time.time()
    seconds = max(0, round(pending.expires_at - now))
    return SignInLink(server=name, url=pending.url, expires_in_seconds=seconds,
                      callback=sign_ins.redirect_uri,
                      message=f"Open this link to sign in to '{name}' "
                              f"({valid_for(pending.expires_at, now)}): {pending.url}\n"
                              f"{back(sign_ins.port)}")


async def sign_out(ctx: AdminContext, name: ServerName) -> SignedOut:
    """Forget a server's sign-in (revoked at its authorization server when it can be):
    the server is signed out until someone signs in again."""
    ctx.manager.get(name)
    who = actor()
    gone = await _sign_ins(ctx, name).sign_out(name)
    await ctx.audit(who, "sign_out", name, None, "forgotten" if gone else "none held")
    return SignedOut(server=name, signed_out=gone, message=(
        f"'{name}' is signed out: call gateway_sign_in or run 'mcp-gateway login {name}' "
        "to sign in again" if gone else f"'{name}' held no sign-in"))
