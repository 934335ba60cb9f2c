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

It also tells when the server no longer knows the session (``forgotten``): the spec's
answer to a request carrying an ``Mcp-Session-Id`` the server does not know (it
restarted, or it ended or expired the session) is HTTP 404, after which the client
MUST open a new session with a new ``initialize``.  Every answer of the session's HTTP
client (the SDK's POSTs, its GET stream, the health probes) is looked at by the same
hook, and ``HttpTap`` reports its own; the first such answer calls ``on_lost`` (the
supervisor ends the held session and opens a new one).  A 400 whose JSON-RPC error
names the session counts too: the TypeScript SDK's example servers (server-everything
among them) answer an unknown id "Bad Request: No valid session ID provided".  The
request so answered was never run (the server did not get as far as a session to run
it in): ``refused`` tells a request's error that is such an answer, and the replica
sends the request again on the new session (``upstream/requests.py``).  It goes by the
request, not by the words of its error (``upstream/asking.py``): the hook marks the
request it saw refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client.streamable_http import MCP_SESSION_ID
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER

from fast_mcp_gateway.upstream.asking import ASKED, Asked
from fast_mcp_gateway.upstream.model import describe_error

logger = logging.getLogger(__name__)

END_WITHIN = 2.0
"""How long the ``DELETE`` of one session may take (a stop waits that long at most)."""

# An answer that means the session is over (or never will be by a DELETE): 404 it was
# gone already, 405 the server does not let clients end sessions (the spec's MAY).
_ENDED = frozenset({200, 202, 204, 404, 405})
# What the SDK's transport makes of a 404 with no JSON-RPC error in its body.
TERMINATED = (types.INVALID_REQUEST, "Session terminated")
_STAND_IN = (types.INTERNAL_ERROR, "Server returned an error response")  # (another status)


def refusal(status: int, content_type: str | None, body: bytes) -> tuple[int, str] | None:
    """The error an answer (``status``, its ``body``) to a request carrying the
    session's id is said as, when it means the server does not know the session: a
    404 (its JSON-RPC error, else the SDK's stand-in), or a 400 whose JSON-RPC error is
    the TypeScript SDK's transport-level -32000 naming the session (its example
    servers); else ``None``.  An error that answers the request itself (it carries an
    id, or says the method is unknown: a 2026-style status for a JSON-RPC error) is no
    refusal of the session."""
    if status not in (400, 404):
        return None
    message: Any = None
    if (content_type or "").lower().startswith("application/json"):
        with contextlib.suppress(ValueError):
            message = json.loads(body)
    error = message.get("error") if isinstance(message, dict) else None
    words: tuple[int, str] | None = None
    if isinstance(error, dict):
        code, text = error.get("code"), error.get("message")
        if message.get("id") is not None or code == types.METHOD_NOT_FOUND:
            return None  # the request's own answer: it was read
        if isinstance(code, int) and isinstance(text, str):
            words = (code, text)
    if status == 404:
        return words or TERMINATED
    return words if words is not None and words[0] == -32000 \
        and "session" in words[1].lower() else None


def _a_request(request: httpx2.Request) -> bool:
    """Whether ``request`` POSTs a JSON-RPC request (not a notification, not an answer
    to the server's own request: those may share the context of a call)."""
    with contextlib.suppress(httpx2.RequestNotRead, ValueError):
        message = json.loads(request.content)
        return isinstance(message, dict) and "method" in message and "id" in message
    return False


def refusal_error(words: tuple[int, str]) -> MCPError:
    """The error of a request ``HttpTap`` saw refused for the session (``words``),
    marked so (``SessionEnd.refused`` need not go by its words)."""
    error = MCPError(code=words[0], message=words[1])
    error.refusal = True  # type: ignore[attr-defined]
    return error


class SessionEnd:
    """The end of one streamable-HTTP session: ``watch`` its client, then ``end`` it."""

    def __init__(self, who: str, on_lost: Callable[[str], None] | None = None) -> None:
        self.who = who  # names the upstream in the log line (no URL: it may hold a token)
        self.session_id: str | None = None
        self.url: httpx2.URL | None = None  # where the session lives (after a redirect)
        self.version: str | None = None  # the negotiated protocol version
        self.on_lost = on_lost  # told once, why, when the server forgot the session
        self.lost: str | None = None  # why the server no longer knows the session
        self._words: set[tuple[int, str]] = set()  # the errors its refusals were said as

    def watch(self, client: httpx2.AsyncClient) -> None:
        """Learn the session id from ``client``'s answers, as the SDK does."""
        hooks = client.event_hooks
        hooks["response"] = [*hooks["response"], self._answered]
        client.event_hooks = hooks

    async def _answered(self, response: httpx2.Response) -> None:
        given = response.headers.get(MCP_SESSION_ID)
        if given:
            self.session_id, self.url = given, response.request.url
        request = response.request
        if response.status_code not in (400, 404) or request.method == "DELETE" \
                or self.session_id is None \
                or request.headers.get(MCP_SESSION_ID) != self.session_id:
            return
        kind = response.headers.get("content-type")
        body = b""
        if (kind or "").lower().startswith("application/json"):
            with contextlib.suppress(httpx2.HTTPError):  # (kept for the SDK to read)
                body = await response.aread()
        words = refusal(response.status_code, kind, body)
        if words is not None:
            asked = ASKED.get()
            if asked is not None and request.method == "POST" and _a_request(request):
                asked.refused = True  # this request, and no other of the session
            self.forgotten(words, response.status_code, request.method)

    def forgotten(self, words: tuple[int, str], status: int, method: str) -> None:
        """The server answered ``status`` to a ``method`` request carrying the session's
        id, said as ``words``: it no longer knows the session (``on_lost``, once)."""
        # ... and as the SDK's transport says it when it cannot read the error's body
        self._words.update((words, TERMINATED if status == 404 else _STAND_IN))
        if self.lost is not None:
            return
        self.lost = (f"the server no longer knows the gateway's session (HTTP {status} to "
                     f"a {method}: {words[1]}): it restarted, or ended the session; a new "
                     "session is opened")
        if self.on_lost is not None:
            self.on_lost(self.lost)

    def refused(self, exc: BaseException, asked: Asked | None = None) -> bool:
        """Whether ``exc`` (the error of a request sent in ``asking()``, ``asked``) is
        the server's refusal of a session it no longer knows: the request was not run.
        One ``HttpTap`` answered (``tapped``) is known to be (``refusal``); one the
        SDK's client sent, when its own POST was answered so (``asked.refused``: the
        SDK says a refusal with the same words as any other failed status)."""
        if not (self.lost is not None and isinstance(exc, MCPError)):
            return False
        if getattr(exc, "tapped", False):
            return bool(getattr(exc, "refusal", False))
        return asked is not None and asked.refused \
            and (exc.error.code, exc.error.message) in self._words

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
