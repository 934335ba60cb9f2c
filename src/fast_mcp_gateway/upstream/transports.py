"""How a configured server is reached: one transport per connect attempt.

stdio servers use the gateway's own ``TappedStdioTransport``, HTTP and SSE servers
its ``http_transports``, imported on first use.  None of them derives from fastmcp's
``ClientTransport`` at run time: ``fastmcp.client`` brings its OAuth and token-storage
libraries, which no configured server uses (only a ``TransportFactory`` handing the
supervisor one of fastmcp's own transports loads it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.session import RelaySession
from fast_mcp_gateway.upstream.stdio_tap import TappedStdioTransport

if TYPE_CHECKING:
    from fastmcp.client.transports import ClientTransport
    from fastmcp.client.transports.base import TransportOptions

    from fast_mcp_gateway.upstream.bearer import BearerAuth
    from fast_mcp_gateway.upstream.http_tap import HttpTap
    from fast_mcp_gateway.upstream.http_transports import FastHttpTransport, FastSseTransport
    from fast_mcp_gateway.upstream.stdio_tap import RawTap

    SideDoor: TypeAlias = RawTap | HttpTap
    """A live session's raw ``tools/call`` path beside it (``transport.tap``): the
    express lanes' requests skip the SDK's client stack there."""

TransportFactory = Callable[[ServerConfig, TextIO | None], "ClientTransport"]


def default_transport(config: ServerConfig, stderr: TextIO | None) -> ClientTransport:
    """Build the transport for a configured server (one connection, no keep-alive)."""
    if config.kind == "stdio":
        assert config.command is not None
        return TappedStdioTransport(
            config.command,
            list(config.args),
            env=dict(config.env) or None,
            cwd=config.cwd,
            log_file=stderr,
            session_class=RelaySession,
        )
    assert config.url is not None
    auth: BearerAuth | None = None
    if config.auth is not None:  # the gateway's bearer (the side door carries it too)
        from fast_mcp_gateway.upstream.bearer import bearer_for

        auth = bearer_for(config)
    if config.kind == "sse":
        sse: FastSseTransport = _sse_transport()(config.url,
                                                 headers=dict(config.headers) or None, auth=auth)
        sse.tls = config.tls
        return sse
    # The SDK's streamable-HTTP client, plus a raw side door for 2026-07-28 calls.
    transport: FastHttpTransport = _http_transport()(config.url,
                                                     headers=dict(config.headers) or None,
                                                     auth=auth)
    transport.max_message_bytes = config.max_message_bytes
    transport.tls = config.tls  # (its own CAs, its client certificate: one SSL context)
    return transport


def fit_transport(transport: ClientTransport, sup: Any, idle: Any, adopt: Any
                  ) -> TransportOptions | None:
    """Fit one connect attempt's ``transport`` to its replica's ``Supervisor`` ``sup``
    and return the ``transport_options`` its session opens with (``relay_options``):
    a stdio one its message size limit, its protocol-error listener and the process
    spawned early (``adopt``, else None); an HTTP one the replica's label (its log lines
    name it), its ``idle`` clock and the listeners of a session the server forgot or of
    a sign-in lost.  Any other (a test's fastmcp transport) is left as it is."""
    if isinstance(transport, TappedStdioTransport):
        transport.max_message_bytes = sup.config.max_message_bytes
        transport.protocol_listener = sup.protocol_error
        transport.adopt = adopt
    elif hasattr(transport, "label"):  # the HTTP ones
        transport.label, transport.idle = sup.label, idle  # type: ignore[attr-defined]
        transport.on_lost = sup.session_lost  # type: ignore[attr-defined]
        transport.on_signed_out = sup.signed_out_held  # type: ignore[attr-defined]
    return relay_options(transport)


def relay_options(transport: ClientTransport) -> TransportOptions | None:
    """The ``transport_options`` a session of ``transport`` is opened with: every
    session is a ``RelaySession`` (results are relayed, not validated here).  The
    gateway's own transports are built with it (no fastmcp options needed); any other,
    a fastmcp one (also a test's in-memory transport), gets fastmcp's
    ``TransportOptions``."""
    if (isinstance(transport, TappedStdioTransport)
            or getattr(transport, "session_class", None) is RelaySession):
        return None
    return _relay_options()


@functools.cache
def _relay_options() -> TransportOptions:
    from fastmcp.client.transports.base import TransportOptions

    return TransportOptions(session_class=RelaySession)


class HttpFacts:
    """What an HTTP endpoint did during one connect attempt, for the failure text
    (``upstream/failures.py``): whether the TCP connection was made, and the status and
    ``Content-Type`` of its last answer.  The SDK turns an HTTP error into a stand-in
    JSON-RPC error (a 404 reads as -32601) and a silent server into a bare timeout; the
    text should say what the URL really did."""

    def __init__(self) -> None:
        self.connected = False
        self.last_status: tuple[int, str, str] | None = None  # status, reason, url
        self.last_method = ""
        self.content_type: str | None = None

    def client(self, headers: dict[str, str] | None = None, timeout: Any = None,
               auth: Any = None, verify: Any = True, idle: Any = None, **_: Any) -> Any:
        """An ``httpx2.AsyncClient`` as the SDK makes it (30 s, 300 s to read a stream;
        redirects off: the SDK follows those within the endpoint's origin itself),
        with hooks feeding these facts; ``verify``: a ``tls:`` server's SSL context;
        ``idle``: the replica's ``http_idle.IdleBound`` (its idle connections kept that
        long, a ``Keep-Alive`` header in its answers lowering it)."""
        import httpx2

        from fast_mcp_gateway._compat import client_with
        from fast_mcp_gateway.upstream.http_pool import kept_alive
        from fast_mcp_gateway.upstream.http_resend import ResendingTransport

        # (a request a server's idle close met unread is sent again: http_resend.py)
        return client_with(ResendingTransport, headers=headers, auth=auth, verify=verify,
                           timeout=timeout or httpx2.Timeout(30.0, read=300.0),
                           limits=kept_alive(*(() if idle is None else (idle.seconds,))),
                           event_hooks={"request": [self._on_request], "response": [
                               self._on_response, *(() if idle is None else (idle.heard,))]})

    async def _on_request(self, request: Any) -> None:
        # httpcore's trace events say when the TCP connection is made; only until the
        # first answer (after it, the status says more, and calls pay nothing).
        if self.last_status is None and not self.connected:
            request.extensions.setdefault("trace", self._trace)

    async def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.connected = True

    async def _on_response(self, response: Any) -> None:
        if response.request.method == "DELETE" or "idle_closed" in response.extensions:
            return  # a session's end (http_session_end.py) says nothing of its failure,
            # nor the gateway's own answer for a request an idle close met (http_resend)
        self.connected = True
        self.last_status = (response.status_code, response.reason_phrase,
                            str(response.request.url))
        self.last_method = response.request.method
        self.content_type = response.headers.get("content-type")


def refused_by(transport: Any, auth: BearerAuth | None) -> None:
    """A token the server refuses ends the session (its supervisor's ``on_lost``); the
    reconnect's ``ready`` then says why (``upstream/bearer.py``)."""
    if auth is not None:
        auth.on_refused = lambda reason: transport.on_lost and transport.on_lost(reason)
        auth.on_signed_out = lambda why: transport.on_signed_out and transport.on_signed_out(why)


@functools.cache
def _sse_transport() -> Callable[..., Any]:
    """``SseTransport``, defined on first use (``http_transports`` loads httpx)."""
    from fast_mcp_gateway.upstream.http_transports import FastSseTransport

    class SseTransport(FastSseTransport):
        """The SSE transport, keeping the endpoint's ``facts``."""

        def __init__(self, url: str, headers: dict[str, str] | None = None,
                     auth: BearerAuth | None = None) -> None:
            self.facts = HttpFacts()
            super().__init__(url, headers=headers, httpx_client_factory=self.facts.client,
                             session_class=RelaySession, auth=auth)
            self.factory_takes_idle = True
            refused_by(self, auth)

    return SseTransport


@functools.cache
def _http_transport() -> Callable[..., Any]:
    """``HttpTransport``, defined on first use (``http_transports`` loads httpx)."""
    from fast_mcp_gateway.upstream.http_pool import tap_applies
    from fast_mcp_gateway.upstream.http_transports import FastHttpTransport

    class HttpTransport(FastHttpTransport):
        """The streamable HTTP transport (with the side door), keeping the endpoint's
        ``facts``."""

        def __init__(self, url: str, headers: dict[str, str] | None = None,
                     auth: BearerAuth | None = None) -> None:
            self.facts = HttpFacts()
            super().__init__(url, headers=headers, httpx_client_factory=self.facts.client,
                             session_class=RelaySession, auth=auth)
            self.factory_takes_idle = True
            refused_by(self, auth)

        @property
        def prefers_modern(self) -> bool:
            """``protocol: auto`` opens 2026-07-28 here: the side door serves its calls.
            Plain ``http`` only: towards ``https`` (hosted servers, most without the
            newer era: a ``server/discover`` more per session) ``auto`` is unchanged."""
            return self.url.startswith("http:") and tap_applies(self.url, self.auth)

    return HttpTransport
