"""A session's event stream ends when its caller's credential no longer stands, after a
grace in which the session may prove one that does.

A handshake-era session's event stream (a GET with ``Mcp-Session-Id``) and, in SSE
mode, the legacy transport's ``/sse`` stream stay open for as long as the host keeps
them.  A reload that removed (revoked) the token they were opened with refused that
token's every request (401), yet its streams stayed open, pinged every 15 s, for as
long as the host kept them (a 2026-07-28 ``subscriptions/listen`` stream and the
dashboard's live stream already ended).

Ending them at the reload itself broke token rotation: a session's client that sends
the token a rotation put in place after the reload (``FrontHub.refresh`` takes it for
what the session is sent between requests) lost its stream in the meantime, and what
the gateway sent before the client reopened it (a ``resources/updated``) went nowhere
(``tests/test_restricted_names.py``).  So a stream is judged by its session's
credential of now, not the one it was opened with: each request of the session the
gateway answers (not refused: a status under 400) with a credential that stands makes
that credential the stream's (``proved``).  Once it no longer stands (after a reload,
``ControlPlane.reloads``; a JWT at its expiry) the stream gets ``grace`` seconds
(``REVOKED_GRACE``): a request of the session with a standing credential, or a reload
giving the token back, keeps it; else it ends.

``RevokedStreams`` is one per app; ``wrap`` puts it in front of the MCP endpoint's
route (and SSE's message route), where ``scope["user"]`` is the verified caller.  A
stream ends as for a host that left: the request's ``receive`` says
``http.disconnect``, the SDK ends the stream and cleans up as it does then, and the
answer's last chunk is an SSE comment saying why (``ended_words``: a comment, which
every SSE client skips; MCP has no notice for "this stream ends").  The host,
reconnecting with the removed token, meets the 401 saying a reload removed it.
A session's key: its ``Mcp-Session-Id``, or SSE's ``session_id`` (its endpoint event's,
then its posts' query).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fast_mcp_gateway.http.auth import GatewayVerifier, principal_of
from fast_mcp_gateway.http.stream_quota import stream_kind
from fast_mcp_gateway.principal import Standing
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)

REVOKED_GRACE = 10.0
"""Seconds a stream whose credential no longer stands stays open for its session to
prove one that does (a client switching to the token a rotation put in place sends it
with its next request)."""

_SESSION = b"mcp-session-id"
_ENDPOINT_ID = re.compile(rb"session_id=([0-9A-Fa-f-]+)")


def standing_of(scope: Scope, verifier: GatewayVerifier) -> Standing | None:
    """The standing of the verified caller of ``scope`` (None: no token, FastMCP's 401)."""
    token = getattr(scope.get("user"), "access_token", None)
    if token is None:
        return None
    principal = principal_of(token)
    if principal.kind == "jwt":
        return verifier.jwt_standing(principal, token.expires_at)
    if principal.kind == "token":
        return verifier.standing(token.token)
    return None


def ended_words(name: str, jwt: bool, grace: float) -> str:
    """Why the stream of ``name`` ended (its last chunk, and the log)."""
    cause = ("its JWT expired" if jwt else
             "a config reload removed its token from gateway.auth.tokens")
    return (f"stream ended: the credential of '{name}' no longer stands ({cause}), and no "
            f"request of its session came with one that does within {grace:g} s; "
            f"reconnect with a {'fresh JWT' if jwt else 'token gateway.auth lists now'}")


@dataclass(eq=False)
class _Watched:
    """An open stream: the credential it is judged by now (``token``: its bearer token,
    to tell a request bringing the same one, which proves nothing new)."""

    standing: Standing
    token: str = field(repr=False)


class RevokedStreams:
    """The streams open now, by session, and what ends them (see the module docstring)."""

    def __init__(self, verifier: GatewayVerifier, reloads: ChangeSignal,
                 grace: float = REVOKED_GRACE) -> None:
        self.verifier, self.reloads, self.grace = verifier, reloads, grace
        self.wait: Callable[[float], Awaitable[None]] = anyio.sleep   # tests hold it
        self.in_grace = 0   # streams in their grace now
        self.ended = 0      # streams ended so far
        self._streams: dict[str, list[_Watched]] = {}
        self._proved = ChangeSignal()

    def wrap(self, app: ASGIApp, *, sse: bool = False) -> ASGIApp:
        """``app`` (a route's) with its streams watched and its sessions' requests noted;
        ``sse``: SSE's routes (``/sse`` and the message route)."""
        return _Watching(app, self, sse)

    def proved(self, key: str, standing: Standing, token: str) -> None:
        """A request of session ``key`` was answered with ``standing``'s credential
        (bearer ``token``): its streams are judged by it from now on."""
        for watched in self._streams.get(key, ()):
            watched.standing, watched.token = standing, token
        self._proved.notify()

    def judged_by(self, key: str, token: str) -> bool:
        """Whether every stream of session ``key`` is judged by ``token`` already: a
        request bringing it has nothing to prove (nearly every request: each one built
        and looked up a standing, ~7 us, review27)."""
        return all(watched.token == token for watched in self._streams.get(key, ()))

    @property
    def open(self) -> bool:
        """Whether a stream is watched now (else a session's request has nothing to
        prove)."""
        return bool(self._streams)

    def watches(self, key: str | None) -> bool:
        return key is not None and key in self._streams

    def add(self, key: str, watched: _Watched) -> None:
        self._streams.setdefault(key, []).append(watched)

    def drop(self, key: str | None, watched: _Watched) -> None:
        streams = self._streams.get(key) if key is not None else None
        if streams is not None and watched in streams:
            streams.remove(watched)
            if not streams:
                del self._streams[key]  # type: ignore[arg-type]

    async def until_ended(self, watched: _Watched) -> None:
        """Return once ``watched``'s credential no longer stands and its grace passed
        without one that does."""
        def stands() -> bool:
            return watched.standing() is not None

        while True:
            judged = watched.standing
            rest = judged.remaining()
            def moved(judged: Standing = judged) -> bool:
                return watched.standing is not judged or not stands()

            if not await self._woken(moved, math.inf if rest is None else max(rest, 0.0)):
                continue   # a JWT's time ran out
            if watched.standing is not judged and stands():
                continue   # another credential took its place: judged by its expiry
            self.in_grace += 1
            try:
                async with anyio.create_task_group() as tg:
                    async def over() -> None:
                        await self.wait(self.grace)
                        tg.cancel_scope.cancel()

                    async def given_back() -> None:   # a reload put the token back
                        await self.reloads.wait_until(stands, math.inf)
                        tg.cancel_scope.cancel()

                    tg.start_soon(over)
                    tg.start_soon(given_back)
                    await self._proved.wait_until(stands, math.inf)
                    tg.cancel_scope.cancel()
            finally:
                self.in_grace -= 1
            if not stands():
                return

    async def _woken(self, predicate: Callable[[], bool], within: float) -> bool:
        """Wait until ``predicate()`` holds, checked at each reload and each session's
        proof (a JWT proved that expires before the one the wait began with: the
        stream outlived it until the first one's expiry, review27); False if it does not
        within ``within`` seconds."""
        with anyio.move_on_after(within):
            async with anyio.create_task_group() as tg:
                async def on(signal: ChangeSignal) -> None:
                    await signal.wait_until(predicate, math.inf)
                    tg.cancel_scope.cancel()

                tg.start_soon(on, self.reloads)
                tg.start_soon(on, self._proved)
            return True
        return predicate()


def _session_key(scope: Scope, sse: bool) -> str | None:
    """The session a request belongs to: its ``Mcp-Session-Id``, or SSE's query."""
    if sse:
        query: bytes = scope.get("query_string", b"")
        found = parse_qs(query.decode("latin-1")).get("session_id")
        return str(found[0]).replace("-", "").lower() if found else None
    named: bytes | None = next((v for k, v in scope["headers"] if k == _SESSION), None)
    return None if named is None else named.decode("latin-1")


class _Watching:
    """ASGI app in front of the MCP endpoint's route (see the module docstring)."""

    def __init__(self, app: ASGIApp, streams: RevokedStreams, sse: bool) -> None:
        self.app, self.streams, self.sse = app, streams, sse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] != "GET" and not self.streams.open):
            await self.app(scope, receive, send)   # no stream open: nothing to note
            return
        if stream_kind(scope, sse=self.sse) in ("session", "sse"):
            await self._stream(scope, receive, send)
            return
        key = _session_key(scope, self.sse)
        token = getattr(getattr(scope.get("user"), "access_token", None), "token", None)
        if key is None or token is None or not self.streams.watches(key) \
                or self.streams.judged_by(key, token):
            await self.app(scope, receive, send)   # no stream, or its own credential
            return
        standing = standing_of(scope, self.streams.verifier)
        if standing is None or standing() is None:
            await self.app(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                self.streams.proved(key, standing, token)
            await send(message)

        await self.app(scope, receive, noting)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        standing = standing_of(scope, self.streams.verifier)
        if standing is None:
            await self.app(scope, receive, send)
            return
        watched = _Watched(standing, scope["user"].access_token.token)
        key = None if self.sse else _session_key(scope, False)
        if key is not None:
            self.streams.add(key, watched)
        ended = anyio.Event()
        waiting: list[anyio.CancelScope] = []
        started = finished = False

        async def receive_() -> Message:
            if ended.is_set():
                return {"type": "http.disconnect"}
            with anyio.CancelScope() as cancel:
                waiting.append(cancel)
                try:
                    return await receive()
                finally:
                    waiting.remove(cancel)
            return {"type": "http.disconnect"}   # cancelled: its credential ended

        async def send_(message: Message) -> None:
            nonlocal started, finished, key
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body":
                finished = not message.get("more_body", False)
                if key is None and (found := _ENDPOINT_ID.search(message.get("body", b""))):
                    key = found.group(1).decode().replace("-", "").lower()  # SSE's session
                    self.streams.add(key, watched)
            await send(message)

        async def watch() -> None:
            await self.streams.until_ended(watched)
            ended.set()
            for cancel in list(waiting):
                cancel.cancel()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                try:
                    await self.app(scope, receive_, send_)
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self.streams.drop(key, watched)
        if not ended.is_set():
            return
        self.streams.ended += 1
        token = scope["user"].access_token
        principal = principal_of(token)
        words = ended_words(principal.name, principal.kind == "jwt", self.streams.grace)
        logger.info("MCP endpoint: %s", words)
        if started and not finished:
            await send({"type": "http.response.body", "body": f": {words}\n\n".encode(),
                        "more_body": False})
