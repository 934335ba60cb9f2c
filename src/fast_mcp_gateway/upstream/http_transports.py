"""The HTTP and SSE upstream transports, without ``fastmcp.client``.

Each connects a session as fastmcp's ``StreamableHttpTransport`` / ``SSETransport``
does (the SDK's ``streamable_http_client`` / ``sse_client`` over an
``httpx2.AsyncClient``, the same timeouts) and implements fastmcp's
``ClientTransport`` interface (typed as one) without deriving from it at run time, as
``TappedStdioTransport`` does: importing ``fastmcp.client`` loads its OAuth flows,
token storage (``key_value``) and ``beartype`` (~8 MB of RSS), and a server the
configuration reaches by URL and headers needs none of them (a bearer token is a
header; an ``auth:`` block's token is the gateway's own ``BearerAuth``, bearer.py, got
before the session opens).  fastmcp's OAuth providers are fastmcp's own transport's,
given through a ``TransportFactory``: the supervisor runs any ``ClientTransport``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx2
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from fast_mcp_gateway._compat import (
    client_with,
    deliver_message,
    direct,
    tls_context,
    transport_for,
)
from fast_mcp_gateway.config.upstream_tls import TlsFileProblem, UpstreamTls
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.upstream.framing import DEFAULT_MAX_MESSAGE_BYTES
from fast_mcp_gateway.upstream.http_idle import IdleBound
from fast_mcp_gateway.upstream.http_pool import kept_alive
from fast_mcp_gateway.upstream.http_resend import ResendingTransport
from fast_mcp_gateway.upstream.http_session_end import SessionEnd
from fast_mcp_gateway.upstream.http_tap import HttpTap, tap_for

if TYPE_CHECKING:
    from fastmcp.client.transports import ClientTransport as _TransportBase
else:
    _TransportBase = object

ClientFactory = Callable[..., httpx2.AsyncClient]
"""Makes a session's ``httpx2.AsyncClient`` from ``headers``, ``auth`` and, when given,
``timeout`` keywords (the SDK's ``McpHttpClientFactory``), and ``verify`` (an SSL
context) for a server with a ``tls:`` block."""


class _UrlTransport(_TransportBase):
    """What the HTTP and SSE transports share: the URL, the configured ``headers``, the
    client factory (the SDK's 30 s / 300 s client when ``None``), an ``httpx2.Auth`` or
    ``None``, and ``session_class``: each session's ``ClientSession`` (unless the
    caller's ``transport_options`` name one)."""

    what = "HTTP"
    label: str | None = None  # the replica's name in log lines (the supervisor sets it)
    # Told why, when the server no longer knows a session (the supervisor sets it).
    on_lost: Callable[[str], None] | None = None
    # Told when its server was signed out of (``auth:``; the supervisor sets it).
    on_signed_out: Callable[[Any], None] | None = None
    # How long its idle connections are reused: the replica's (the supervisor sets it),
    # outliving this transport; read by each session's client and tap.
    idle: IdleBound | None = None
    # The server's ``tls:`` (``default_transport`` sets it): its files are read for each
    # session's client, whose SSL context the side door uses too (``_compat.tls_context``).
    tls: UpstreamTls | None = None
    # Whether ``httpx_client_factory`` takes ``idle`` (the replica's ``IdleBound``): the
    # gateway's own (``transports.HttpFacts.client``) does; a foreign one may not.
    factory_takes_idle = False

    def __init__(self, url: str, headers: dict[str, str] | None = None,
                 httpx_client_factory: ClientFactory | None = None,
                 session_class: type[ClientSession] = ClientSession,
                 auth: httpx2.Auth | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is no http:// or https:// URL for an {self.what} "
                             "upstream")
        self.url = url
        self.headers = headers or {}
        self.httpx_client_factory = httpx_client_factory
        self.session_class = session_class
        self.auth = auth

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(url={self.url!r})>"

    def _session_class(self, transport_options: Any) -> type[ClientSession]:
        if getattr(transport_options, "forward_incoming_headers", False):
            raise ValueError(f"{type(self).__name__} does not forward a host's headers; "
                             "fastmcp's own transport does (transport_options)")
        cls: type[ClientSession] = (getattr(transport_options, "session_class", None)
                                    or self.session_class)
        return cls

    def _client(self, **timeout: Any) -> httpx2.AsyncClient:
        try:
            if self.tls is not None:  # (the files as they are now: a reconnect reads them)
                timeout["verify"] = self.tls.context(httpx2.create_ssl_context)
            return self._new_client(**timeout)
        except TlsFileProblem as exc:  # (changed on disk since the config was read)
            raise ConfigError.single("tls", None, None, str(exc)) from None
        except OSError as exc:  # (ssl.SSLError too) httpx loads SSL_CERT_FILE here
            cafile = os.environ.get("SSL_CERT_FILE")
            if not cafile:
                raise
            # (it read "command not found: [Errno 2] ...": a FileNotFoundError's words)
            raise ConfigError.single(
                "the gateway's environment", None, None,
                f"SSL_CERT_FILE={cafile} cannot be read as CA certificates "
                f"({exc.strerror or exc}): give the path of a PEM file of CA certificates "
                "(the private CA's), or unset it for the system's CAs") from None

    def _new_client(self, **timeout: Any) -> httpx2.AsyncClient:
        if self.httpx_client_factory is None:
            timeout.setdefault("timeout", httpx2.Timeout(30.0, read=300.0))
            idle = self._idle()
            client: httpx2.AsyncClient = client_with(
                ResendingTransport, headers=dict(self.headers), auth=self.auth,
                limits=kept_alive(idle.seconds), **timeout)
            hooks = client.event_hooks  # a Keep-Alive header lowers the bound at once
            client.event_hooks = {**hooks, "response": [*hooks["response"], idle.heard]}
            return client
        if self.factory_takes_idle:  # (the replica's bound and the Keep-Alive hook too)
            timeout["idle"] = self._idle()
        return self.httpx_client_factory(headers=dict(self.headers), auth=self.auth, **timeout)

    async def _ready(self) -> None:
        """A token before the session opens, when ``auth`` gets one (``bearer.py``):
        an authorization server that refuses is said at the connect, in its words."""
        ready = getattr(self.auth, "ready", None)
        if ready is not None:
            await ready()

    def _idle(self) -> IdleBound:
        if self.idle is None:
            self.idle = IdleBound(self.label or _where(self.url))
        return self.idle

    async def close(self) -> None:
        """Nothing outlives ``connect_session`` (its exit closes the HTTP client)."""

    def get_session_id(self) -> str | None:
        return None


class FastHttpTransport(_UrlTransport):
    """A streamable-HTTP upstream, plus an ``HttpTap`` while a session lives (``tap``,
    ``None`` between sessions and where the tap does not apply: ``http_tap.py``; it
    learns a handshake-era session's id from the session's ``SessionEnd``).

    A handshake-era session is ended by the gateway, not the SDK: a shielded, bounded
    ``DELETE`` once its streams closed, before its client is (``http_session_end.py``:
    the SDK's is cancelled before it is sent when a stop or a restart ends the
    session); ``end``, while a session lives, is its ``SessionEnd``, which also tells
    ``on_lost`` when the server no longer knows the session (HTTP 404)."""

    legacy_only = False  # streamable HTTP carries either protocol era
    tap: HttpTap | None = None
    end: SessionEnd | None = None
    # The bound of one message (an SSE event too: the SDK's own is 1 MiB), as the
    # side door's and a stdio upstream's: a larger result ended the session.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @contextlib.asynccontextmanager
    async def connect_session(  # type: ignore[override]  # options read by duck typing
        self, *, transport_options: Any = None, **session_kwargs: Any,
    ) -> AsyncIterator[ClientSession]:
        session_class = self._session_class(transport_options)
        await self._ready()
        # fastmcp's rule: MCP's 30 s connect default, and a read timeout only ever
        # longer than 300 s (a session enforces request timeouts itself, and a call may
        # carry a longer one than the session's).
        read = session_kwargs.get("read_timeout_seconds")
        client = self._client(**({} if read is None else {
            "timeout": httpx2.Timeout(30.0, read=max(300.0, read))}))
        end = SessionEnd(self.label or _where(self.url), self.on_lost)
        end.watch(client)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(client)
            stack.push_async_callback(end.end, client)  # after the streams, before the client
            read_stream, write_stream = await stack.enter_async_context(streamable_http_client(
                self.url, http_client=client, max_sse_event_size=self.max_message_bytes,
                terminate_on_close=False))
            session = await stack.enter_async_context(
                session_class(read_stream, write_stream, **session_kwargs))
            tls = tls_context(client, self.url) if self.url.startswith("https:") else None
            # (only where the client itself goes straight to the server: its proxy
            # and NO_PROXY, a factory's mounts or transport, are the client's to apply)
            tap = self.tap = tap_for(self.url, self.headers, self.auth, session,
                                     self.max_message_bytes, end, self._idle(),
                                     tls) if direct(client, self.url) else None
            self.end = end
            try:
                yield session
            finally:
                end.version = session.protocol_version
                self.tap = self.end = None
                if tap is not None:
                    await tap.aclose()


def _where(url: str) -> str:
    """``url`` without its credentials and query (either may hold a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class FastSseTransport(_UrlTransport):
    """An upstream over the SSE transport (handshake era only)."""

    what = "SSE"
    legacy_only = True  # SSE predates the sessionless 2026-07-28 era

    @contextlib.asynccontextmanager
    async def connect_session(  # type: ignore[override]  # options read by duck typing
        self, *, transport_options: Any = None, **session_kwargs: Any,
    ) -> AsyncIterator[ClientSession]:
        session_class = self._session_class(transport_options)
        await self._ready()
        read = session_kwargs.get("read_timeout_seconds")

        opened: list[ClientSession] = []

        async def aside(error: dict[str, Any]) -> None:
            if opened:  # (a POST's error status would end the transport's writer)
                await deliver_message(opened[0], error)

        def client(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                   auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
            # sse_client passes this transport's headers and auth back, and the timeout
            made = self._client(**({} if timeout is None else {"timeout": timeout}))
            sender = transport_for(made, self.url)
            if isinstance(sender, ResendingTransport):  # (a request not sent again)
                sender.aside = aside
            return made

        async with sse_client(self.url, headers=dict(self.headers), auth=self.auth,
                              httpx_client_factory=client,
                              **({} if read is None else {"timeout": read})) as streams, \
                session_class(*streams, **session_kwargs) as session:
            opened.append(session)
            yield session
