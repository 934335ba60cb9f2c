"""Every use of a FastMCP or MCP SDK internal, in one place.

The gateway sits lower in the stack than FastMCP's public API reaches: it relays
requests as JSON past the SDK's result models, shares a stdio server's pipe with the
SDK session, serves stdin without the SDK's worker thread and watches sessions die.
Each of those needs a private name of ``fastmcp`` (4.2) or ``mcp`` (2.3).  They are all
here, under public names with a contract, so that

* ``tests/test_compat.py`` exercises each one against the installed versions: an
  upgrade that renames or changes one fails that test loudly (never a silent
  ``getattr`` default that disables, say, dead-session detection);
* ``tests/test_compat.py`` also fails if any other module of the package reaches a
  private name of ``fastmcp``/``mcp`` itself.

The server side's (what the front uses) are in ``_compat_server``, re-exported here.
Moving the version pins (pyproject.toml) means running that test first.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, cast

import mcp_types as types
from mcp.client._probe import negotiate_auto as _negotiate_auto
from mcp.client._transport import TransportStreams
from mcp.client.session import _wire_fields
from mcp.client.stdio import (
    _aclose_all,
    _close_pipe,
    _close_subprocess_transport,
    _create_platform_compatible_process,
    _drain_stdout,
    _get_executable_command,
    _parse_line,
    _terminate_process_tree,
    _wait_for_process_exit,
)
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

from fast_mcp_gateway import spawn
from fast_mcp_gateway._compat_server import (
    PreferredToolServer,
    RoundStates,
    StateOnWrite,
    client_log_level,
    connection_of,
    current_transport,
    http_session_owner,
    lifespan,
    low_level_server,
    open_http_sessions,
    principal_binding,
    reword_auth_challenges,
    tracer_provider_set,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from mcp import ClientSession
    from pydantic import BaseModel

__all__ = [
    "DECLARING", "NO_HOST", "PreferredToolServer", "RoundStates", "StateOnWrite",
    "TransportStreams", "aclose_all", "client_log_level", "close_pipe",
    "close_subprocess_transport", "connection_of", "create_process", "current_transport",
    "deliver_message", "deliver_notification", "direct", "drain_stdout", "env_proxied",
    "env_proxy", "executable_command", "http_session_owner", "lifespan", "low_level_server",
    "narrow_capabilities",
    "narrowing_stamp", "negotiate_auto", "open_http_sessions", "parse_line",
    "pipe_writer", "principal_binding", "reword_auth_challenges", "send_raw_request",
    "session_closed", "stamp_request", "terminate_process_tree", "tls_context",
    "tracer_provider_set", "wait_for_process_exit", "wire_fields",
]

# -- the SDK's stdio client helpers (upstream/stdio_tap.py reuses its spawn and stop) --

aclose_all = _aclose_all
close_pipe = _close_pipe
close_subprocess_transport = _close_subprocess_transport
# POSIX: the same spawn, plus (Linux) a death signal so that no server outlives a
# gateway killed with SIGKILL (spawn.py).
create_process = (_create_platform_compatible_process if sys.platform == "win32"
                  else spawn.create_process)
drain_stdout = _drain_stdout
executable_command = _get_executable_command
parse_line = _parse_line
terminate_process_tree = _terminate_process_tree
wait_for_process_exit = _wait_for_process_exit



def pipe_writer(stream: Any) -> asyncio.StreamWriter | None:
    """The asyncio writer under the anyio byte stream on a process's stdin, as
    ``create_process`` makes it (anyio's ``StreamWriterWrapper._stream``), or None for
    any other stream (then write with its ``send``).  Writing a whole line to it is
    ``send`` without the checkpoint anyio adds after each write (a turn of the event
    loop on every express-lane call)."""
    writer = getattr(stream, "_stream", None)
    return writer if isinstance(writer, asyncio.StreamWriter) else None

# -- client sessions ----------------------------------------------------------------

negotiate_auto = _negotiate_auto
"""``mode="auto"`` at connect: probe ``server/discover``, else ``initialize``."""


def wire_fields(model: Any) -> frozenset[str]:
    """The top-level wire keys a result model (or a union of them) declares."""
    return _wire_fields(cast("type[BaseModel]", model))


def stamp_request(session: ClientSession, data: dict[str, Any], opts: Any) -> None:
    """Write the negotiated era's envelope (``_meta``: version, client info, caps) into
    ``data`` as ``send_request`` would, for a request the gateway sends as JSON."""
    session._stamp(data, opts)


class Declaring(Protocol):
    """The host call a request is made for, as far as its capabilities, its era and its
    log level go (``upstream.relay.FrontCall``: ``meta`` is the host's own ``_meta``, as
    forwarded)."""

    @property
    def is_modern(self) -> bool: ...

    @property
    def meta(self) -> dict[str, Any] | None: ...

    def declared_capabilities(self) -> dict[str, Any] | None: ...


class _NoHost:
    """``DECLARING`` for a request the gateway makes on its own (no host call): the
    capabilities stay the session's, and no logs are asked for: there is nobody to
    relay them to, and over a shared session they would be told to whichever host has
    a call in flight (``HostRelay``'s attribution by timing)."""

    is_modern = True
    meta: dict[str, Any] | None = None

    def declared_capabilities(self) -> dict[str, Any] | None:
        return None


NO_HOST: Declaring = _NoHost()

DECLARING: ContextVar[Declaring | None] = ContextVar("gateway_declaring", default=None)
"""The host call whose declared client capabilities (and log level) a 2026-07-28 stamp
narrows to (``upstream/requests.py`` sets it around each request on such a session:
the host call, or ``NO_HOST``)."""


def narrow_capabilities(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The client capabilities both declare: a key of ``theirs`` (the host's) that
    ``ours`` (the gateway's session) has too, objects narrowed key by key, other values
    kept where both say the same.  ``elicitation: {}`` (form only, by the revision's
    own reading) stays ``{}``."""
    narrowed: dict[str, Any] = {}
    for key, value in theirs.items():
        if key not in ours:
            continue
        mine = ours[key]
        if isinstance(value, dict) and isinstance(mine, dict):
            narrowed[key] = narrow_capabilities(mine, value)
        elif value == mine:
            narrowed[key] = value
    return narrowed


class _NarrowingStamp:
    """A session's own stamp, then (2026-07-28: per request) the client capabilities
    narrowed to what the host of the call declared (``DECLARING``), and the log level
    to what it asked for.

    The gateway's sessions ask for every level (``log_level="debug"``: logs between
    calls, and those of a handshake-era host's calls, which may take any level).  A
    2026-07-28 host asks per request: the level its request named (its ``meta``; a
    request that names one itself keeps it), and none when it named none: the upstream
    is then not asked for logs either (it would log, serialise and stream what the
    gateway drops; asking cost a FastMCP upstream ~10 us of CPU per call, replayed).
    ``NO_HOST`` (the gateway's own requests) asks for none."""

    __slots__ = ("stamp",)

    def __init__(self, stamp: Callable[[dict[str, Any], Any], None]) -> None:
        self.stamp = stamp

    def __call__(self, data: dict[str, Any], opts: Any) -> None:
        params = data.get("params")
        given = params.get("_meta") if isinstance(params, dict) else None
        asked = isinstance(given, dict) and types.LOG_LEVEL_META_KEY in given
        self.stamp(data, opts)
        host = DECLARING.get()
        if host is None:
            return
        meta = data.get("params", {}).get("_meta")
        ours = meta.get(types.CLIENT_CAPABILITIES_META_KEY) if meta is not None else None
        if not isinstance(ours, dict):
            return  # a handshake-era stamp: capabilities were declared once, at connect
        theirs = host.declared_capabilities()
        if theirs is not None:
            meta[types.CLIENT_CAPABILITIES_META_KEY] = narrow_capabilities(ours, theirs)
        if not asked and host.is_modern:
            level = (host.meta or {}).get(types.LOG_LEVEL_META_KEY)
            if level is None:
                meta.pop(types.LOG_LEVEL_META_KEY, None)
            else:  # a request the host's meta was not forwarded in (tasks/get, ...)
                meta[types.LOG_LEVEL_META_KEY] = level


def narrowing_stamp(session: ClientSession) -> None:
    """Make ``session``'s stamp (the SDK's ``send_request`` and ``stamp_request`` both
    use it) declare per request only the capabilities the host of the call declared,
    while ``DECLARING`` names that call.  Idempotent; re-applied cheaply after the
    session negotiated again (which replaces its stamp)."""
    stamp = session._stamp
    if type(stamp) is not _NarrowingStamp:
        session._stamp = _NarrowingStamp(stamp)


async def send_raw_request(
    session: ClientSession, method: str, params: dict[str, Any] | None, opts: Any
) -> dict[str, Any]:
    """Send a stamped request on the session's dispatcher; the result comes back as
    JSON, without the SDK's result models (their validation costs more than a relay)."""
    return await session._dispatcher.send_raw_request(method, params, opts)


async def deliver_notification(session: ClientSession, method: str,
                               params: dict[str, Any] | None) -> None:
    """Hand ``session`` a server notification the gateway read itself (a log on a
    call's stream, ``upstream/http_tap.py``): validated for the
    negotiated era and run through the session's callbacks, in the caller's context,
    as if the SDK's transport had read it.  Never raises (the SDK contains it)."""
    await session._on_notify(cast(Any, None), method, params)


async def deliver_message(session: ClientSession, message: dict[str, Any]) -> None:
    """Hand ``session``'s dispatcher a message the gateway read itself on a
    handshake-era call's stream (``upstream/http_tap.py``): a server request, or a
    ``notifications/cancelled``, as if the SDK's transport had read it.  A request is
    answered by the session's own handling (``ClientSession._on_request``: its sampling,
    elicitation and roots callbacks, ``ping``) in a copy of the caller's context, and
    its answer (result or error) is POSTed back by the SDK's transport, with the
    session's id and version, as every answer of the session is; a cancellation stops
    the handler of the request it names.  Dropped once the session is closed (its
    dispatcher reads nothing more either); ``pydantic.ValidationError`` for a message
    that is not JSON-RPC."""
    dispatcher = cast(Any, session._dispatcher)
    if dispatcher._closed or dispatcher._tg is None:
        return
    item = SessionMessage(jsonrpc_message_adapter.validate_python(message, by_name=False))
    await dispatcher._dispatch(item, session._on_request, session._on_notify,
                               contextvars.copy_context())


def session_closed(session: ClientSession) -> bool:
    """True once the session's connection is gone (the dispatcher's flag: the SDK has no
    public event; ``AttributeError`` if it changed, never a silent "still open")."""
    return bool(cast(Any, session._dispatcher)._closed)


def env_proxy(url: str) -> str | None:
    """The proxy an ``httpx2`` client reading the environment (``trust_env``, the SDK's
    client's default) sends requests for ``url`` through, or ``None``: ``ALL_PROXY``,
    ``HTTP_PROXY``/``HTTPS_PROXY`` less ``NO_PROXY``, matched by httpx's own rules
    (``get_environment_proxies``, ``URLPattern``: ``.example.com`` is not
    ``example.com``, a CIDR or a ``host:port`` counts, ``*`` anywhere is every host),
    which ``urllib``'s ``proxy_bypass`` does not share."""
    import httpx2
    from httpx2._utils import URLPattern, get_environment_proxies

    target = httpx2.URL(url)
    mounts = sorted(((URLPattern(key), proxy) for key, proxy in
                     get_environment_proxies().items()), key=lambda mount: mount[0])
    return next((proxy for pattern, proxy in mounts if pattern.matches(target)), None)


def env_proxied(url: str) -> bool:
    """Whether ``env_proxy`` has a proxy for ``url``."""
    return env_proxy(url) is not None


def client_with(transport: type, **options: Any) -> Any:
    """An ``httpx2.AsyncClient`` made with ``options`` whose own transports -- the
    direct one and each of its environment's proxies' -- are ``transport`` (a subclass
    of ``httpx2.AsyncHTTPTransport``), made as httpx makes its own.  Passing
    ``transport=`` instead would drop the environment's proxies (httpx reads them only
    without one)."""
    return _client_class(transport)(**options)


@functools.cache
def _client_class(kind: type) -> Any:
    import httpx2

    class Client(httpx2.AsyncClient):  # (httpx calls both with keywords only)
        def _init_transport(  # type: ignore[override]
                self, transport: Any = None, **options: Any) -> Any:
            return kind(**options) if transport is None else transport

        def _init_proxy_transport(  # type: ignore[override]
                self, proxy: Any, **options: Any) -> Any:
            return kind(proxy=proxy, **options)

    return Client


def _own_pool(client: Any, url: str) -> Any:
    """The HTTP/1.1 connection pool ``client`` itself connects to ``url`` with; ``None``
    for a proxy's, a custom transport, HTTP/2."""
    import httpcore2

    pool = getattr(transport_for(client, url), "_pool", None)
    if type(pool) is not httpcore2.AsyncConnectionPool or pool._http2:
        return None
    return pool


def transport_for(client: Any, url: str) -> Any:
    """The transport an ``httpx2.AsyncClient`` sends requests for ``url`` with (its
    own, or its environment's proxy's)."""
    import httpx2

    return client._transport_for_url(httpx2.URL(url))


def direct(client: Any, url: str) -> bool:
    """Whether ``client`` (an ``httpx2.AsyncClient``) connects to ``url`` itself over
    HTTP/1.1 (no proxy of its environment or its own, no custom transport)."""
    return _own_pool(client, url) is not None


def tls_context(client: Any, url: str) -> ssl.SSLContext | None:
    """The SSL context an ``httpx2.AsyncClient`` verifies the server at ``url`` with:
    its connection pool's for that URL (made from the client's ``verify`` and
    ``trust_env``: ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else the system's CAs), so that the
    HTTP side door (``upstream/http_tap.py``) trusts what the session's client trusts.
    ``None`` where httpx would not connect through an HTTP/1.1 pool of its own (a proxy,
    a custom transport, HTTP/2): no side door there."""
    pool = _own_pool(client, url)
    return None if pool is None else cast("ssl.SSLContext", pool._ssl_context)
