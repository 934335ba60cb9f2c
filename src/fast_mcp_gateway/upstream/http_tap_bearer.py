"""The bearer on ``HttpTap``'s requests: a server with ``auth:`` (``bearer.py``).

The tap's request heads are rendered once (``http_tap.HttpTap``); ``TapBearer`` adds
``Authorization: Bearer`` from the transport's ``BearerAuth``'s ``TokenSlot`` -- the
one token per server the SDK's path sends -- and renders the heads again only when the
slot's ``version`` moved (one compare per call; no lock).  A token due is renewed
before the request (single-flight, ``TokenSlot.renew``; never an interactive flow: a
renewal that fails leaves the old token in use, as on the SDK's path).

A 401 (``http_answer.Unauthorized``) means the server did not run the request: the
token is renewed once (single-flight with every request, on either path, that met a
401 with that token) and the request sent once more, whatever its method.  A 401 to
that one, or no token to be had, is what it is on the SDK's path: ``on_refused`` ends
the session (the reconnect renews first, or says why not: ``signed_out`` for a person's
sign-in refused), and the call fails with the SDK's stand-in error, which
``failures.bearer_refusal`` words.  The token is never in a log or an error: only the
heads hold it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import mcp_types as types
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.errors import SignInFailed, SignInRequired
from fast_mcp_gateway.upstream.http_answer import Unauthorized
from fast_mcp_gateway.upstream.http_pool import Pool, header_lines

if TYPE_CHECKING:
    from fast_mcp_gateway.upstream.bearer import BearerAuth

logger = logging.getLogger(__name__)


class Heads(Protocol):
    """What of ``http_tap.HttpTap`` a ``TapBearer`` renders."""

    post_head: bytes
    get_head: bytes
    pool: Pool


def stand_in() -> MCPError:
    """The error the SDK's transport makes of an error status without a JSON-RPC body
    (what the call whose token was refused fails with on either path)."""
    return MCPError(code=types.INTERNAL_ERROR, message="Server returned an error response")


class TapBearer:
    """``auth``'s token on the heads of one tap (``tap``: its heads without one)."""

    __slots__ = ("_get", "_post", "auth", "slot", "version")

    def __init__(self, tap: Heads, auth: BearerAuth) -> None:
        self.auth, self.slot = auth, auth.slot
        self._post, self._get = tap.post_head, tap.get_head
        self.version = -1  # the token version the tap's heads carry (-1: none yet)

    async def sent(self, tap: Heads, post: Callable[..., Awaitable[dict[str, Any]]],
                   args: tuple[Any, ...]) -> dict[str, Any]:
        """``post(*args)`` with the current token; after a 401, once more with a new
        one (see the module doc)."""
        slot = self.slot
        if slot.version != self.version or slot.due():
            await self._current(tap)
        version = self.version  # (the heads ``post`` writes before its first await)
        try:
            return await post(*args)
        except Unauthorized:
            pass
        if await self.auth.renewed(version) is None:
            raise stand_in()
        self._wear(tap)
        try:
            return await post(*args)
        except Unauthorized:
            self.auth.refused_again(tap.pool.url)
            raise stand_in() from None

    async def _current(self, tap: Heads) -> None:
        slot = self.slot
        if slot.due():
            try:
                await slot.renew(slot.version)
            except (SignInFailed, SignInRequired) as exc:  # (the old token may still be good)
                logger.debug("upstream %s: renewal before expiry failed: %s", slot.server,
                             exc)
        self._wear(tap)

    def _wear(self, tap: Heads) -> None:
        """The tap's heads with the slot's token (``Declined`` for one that cannot be
        written as a header: the session sends the request then)."""
        token, version = self.slot.token, self.slot.version
        line = b"" if token is None else header_lines(
            {"authorization": f"Bearer {token.access}"})
        tap.post_head, tap.get_head = self._post + line, self._get + line
        self.version = version
