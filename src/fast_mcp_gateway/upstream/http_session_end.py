"""Ending a handshake-era streamable-HTTP session: a shielded, bounded ``DELETE``.

A handshake-era session over streamable HTTP has an id (``Mcp-Session-Id``) the
upstream keeps until the client ends it with a ``DELETE`` -- or until it expires.  The
SDK's ``streamable_http_client`` sends that ``DELETE`` in the ``finally`` of its
context, but a session is let go under a cancellation (a stop, a removal, a restart:
the supervisor cancels the attempt's scope), and under it the request is cancelled
at its first checkpoint: the ``DELETE`` was never sent, and a remote upstream kept the
gateway's session.

``SessionEnd`` does it instead (the SDK's own is turned off: ``terminate_on_close``):
it takes the session id from the answers the session's HTTP client gets (a response
hook) and, once the session's streams are closed and before its client is, sends the
``DELETE`` with the session's headers (the configured ones and ``auth``, the id, the
negotiated version) shielded from the cancellation and bounded by ``END_WITHIN``.
Each replica's session ends in its own supervisor's task, so at a stop all of them end
side by side and the stop waits at most ``END_WITHIN`` for them.  A ``DELETE`` that
fails is said once at INFO (the session then ends when it expires), never raised.
"""

from __future__ import annotations

import logging

import anyio
import httpx2
from mcp.client.streamable_http import MCP_SESSION_ID
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER

from fast_mcp_gateway.upstream.model import describe_error

logger = logging.getLogger(__name__)

END_WITHIN = 2.0
"""How long the ``DELETE`` of one session may take (a stop waits that long at most)."""

# An answer that means the session is over (or never will be by a DELETE): 404 it was
# gone already, 405 the server does not let clients end sessions (the spec's MAY).
_ENDED = frozenset({200, 202, 204, 404, 405})


class SessionEnd:
    """The end of one streamable-HTTP session: ``watch`` its client, then ``end`` it."""

    def __init__(self, who: str) -> None:
        self.who = who  # names the upstream in the log line (no URL: it may hold a token)
        self.session_id: str | None = None
        self.url: httpx2.URL | None = None  # where the session lives (after a redirect)
        self.version: str | None = None  # the negotiated protocol version

    def watch(self, client: httpx2.AsyncClient) -> None:
        """Learn the session id from ``client``'s answers, as the SDK does."""
        hooks = client.event_hooks
        hooks["response"] = [*hooks["response"], self._answered]
        client.event_hooks = hooks

    async def _answered(self, response: httpx2.Response) -> None:
        given = response.headers.get(MCP_SESSION_ID)
        if given:
            self.session_id, self.url = given, response.request.url

    async def end(self, client: httpx2.AsyncClient) -> None:
        """``DELETE`` the session (if it has an id), shielded, within ``END_WITHIN``."""
        if self.session_id is None or self.url is None:
            return  # sessionless (2026-07-28), or no session was ever opened
        headers = {MCP_SESSION_ID: self.session_id}
        if self.version:
            headers[MCP_PROTOCOL_VERSION_HEADER] = self.version
        problem: str | None = None
        with anyio.move_on_after(END_WITHIN, shield=True) as bound:
            try:
                response = await client.request("DELETE", self.url, headers=headers)
            except Exception as exc:  # noqa: BLE001 - a session not ended is only said
                problem = describe_error(exc)
            else:
                if response.status_code not in _ENDED:
                    problem = f"it answered {response.status_code} {response.reason_phrase}"
        if bound.cancelled_caught:
            problem = f"no answer within {END_WITHIN:g} s"
        if problem is not None:
            logger.info("upstream %s: its session on the server was not ended: %s (the "
                        "server ends it once it expires)", self.who, problem)
