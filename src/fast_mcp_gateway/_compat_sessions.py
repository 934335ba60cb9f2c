"""The SDK's session internals the session lane and the loop guard need (``_compat``'s rule).

``_compat.py`` holds every other use of a FastMCP or SDK private name; these, of the
SDK's ``StreamableHTTPServerTransport`` idle bookkeeping, of the request ids its
``JSONRPCDispatcher`` mints for a connection (an HTTP session's, the stdio host's), and
of a client session's dispatcher (``tell_gateways``, ``keep_progress_numbers``), sit
beside it (``_compat.py`` is
at the module size limit).  ``tests/test_compat.py`` exercises it against the installed
SDK and allows private names in ``_compat*.py`` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio

__all__ = ["HeldSession", "keep_progress_numbers", "next_request_id", "tell_cancel_reasons",
           "tell_gateways"]


class HeldSession:
    """A streamable HTTP session's idle countdown held while a request the gateway
    serves itself (``http/session_lane.py``) is in flight, as the SDK's transport holds
    it around each request it serves (``StreamableHTTPServerTransport.handle_request``:
    its ``_requests_in_flight`` count and ``idle_scope`` deadline).  ``expired``: the
    idle period already ran out or the session was terminated (the SDK would answer
    the request as terminated)."""

    __slots__ = ("transport",)

    def __init__(self, transport: Any) -> None:
        self.transport = transport

    @property
    def expired(self) -> bool:
        scope = self.transport.idle_scope
        return bool(self.transport.is_terminated or (scope is not None and scope.cancel_called))

    def __enter__(self) -> None:
        transport = self.transport
        if transport.idle_scope is not None and transport._idle_timeout is not None:
            transport._requests_in_flight += 1
            transport.idle_scope.deadline = math.inf

    def __exit__(self, *exc: object) -> None:
        transport = self.transport
        if transport.idle_scope is not None and transport._idle_timeout is not None:
            transport._requests_in_flight -= 1
            if not transport._requests_in_flight:
                transport.idle_scope.deadline = anyio.current_time() + transport._idle_timeout


def next_request_id(outbound: Any) -> int:
    """The id of a request to a handshake-era host, minted from its connection's own
    id space: ``outbound`` is the connection's ``Connection.outbound`` (an HTTP
    session's, the stdio host's), the SDK's ``JSONRPCDispatcher``, which numbers the
    server's requests to the host 1, 2, ... (``send_raw_request``: past any id a
    request in flight holds).  The express lanes' questions take their ids from the
    same counter, so that they look as the SDK's and never share an id with one the
    SDK sends on the connection."""
    pending = outbound._pending
    request_id: int = outbound._allocate_id()
    while request_id in pending:
        request_id = outbound._allocate_id()
    return request_id


OPENINGS = frozenset({"initialize", "server/discover"})


@contextmanager
def tell_gateways(session: Any, key: str, told: Callable[[], list[str]]) -> Iterator[None]:
    """Within it, every opening request ``session`` (the SDK's ``ClientSession``) sends
    (``initialize``, ``server/discover``) carries ``{key: told()}`` in its params'
    ``_meta`` (``upstream/loops.py``).  The SDK builds those params itself, with no
    hook: its dispatcher's ``send_raw_request``, which both reach, is wrapped for this
    session, and only while it opens (no request after pays for it)."""
    dispatcher = session._dispatcher
    send = dispatcher.send_raw_request

    async def send_raw_request(method: str, params: Any, opts: Any = None,
                               **kwargs: Any) -> Any:
        if method in OPENINGS:
            params = dict(params or {})
            params["_meta"] = {**(params.get("_meta") or {}), key: told()}
        return await send(method, params, opts, **kwargs)

    dispatcher.send_raw_request = send_raw_request
    try:
        yield
    finally:
        del dispatcher.send_raw_request  # the class's own again


def keep_progress_numbers(session: Any) -> None:
    """``session``'s (the SDK's ``ClientSession``) progress callbacks get the numbers as
    the upstream wrote them: its dispatcher calls them with ``float(progress)``, so a
    server's ``"progress": 1`` reached the host as ``1.0`` on the full path (fidelity15).
    Its ``_dispatch_notification`` (synchronous) is wrapped for this session: for a
    progress of a request in flight with a callback, the SDK's own handling runs with
    that callback held back (its checks, interceptor and tee unchanged), then the
    callback is spawned as the SDK spawns it, with the upstream's numbers."""
    from mcp.shared import jsonrpc_dispatcher as rpc
    from mcp.shared.dispatcher import coerce_request_id

    dispatcher = session._dispatcher
    dispatch = dispatcher._dispatch_notification

    def dispatch_notification(msg: Any, metadata: Any, on_notify: Any, sender_ctx: Any) -> None:
        params = msg.params
        pending = None
        if msg.method == "notifications/progress" and isinstance(params, dict):
            token, progress = params.get("progressToken"), params.get("progress")
            total, message = params.get("total"), params.get("message")
            if isinstance(token, str | int) and not isinstance(token, bool) \
                    and isinstance(progress, int | float) and not isinstance(progress, bool):
                pending = dispatcher._pending.get(coerce_request_id(token))
        if pending is None or pending.on_progress is None:
            dispatch(msg, metadata, on_notify, sender_ctx)
            return
        callback, pending.on_progress = pending.on_progress, None
        try:
            dispatch(msg, metadata, on_notify, sender_ctx)
        finally:
            pending.on_progress = callback
        dispatcher._spawn(rpc._shielded_progress(callback), progress,
                          total if isinstance(total, int | float) else None,
                          message if isinstance(message, str) else None, sender_ctx=sender_ctx)

    dispatcher._dispatch_notification = dispatch_notification


def tell_cancel_reasons(session: Any, reason: Callable[[str], str]) -> None:
    """``session``'s (the SDK's ``ClientSession``) cancellation of a request its caller
    gave up on says ``reason(the SDK's words)``: the host's own reason, where the host
    cancelled (``deadline.host_reason``).  Its dispatcher writes "caller cancelled"
    (``_cancel_outbound``, in the task of the request, so the caller's context holds);
    its own timeout's words are kept.  Wrapped for this session."""
    dispatcher = session._dispatcher
    cancel = dispatcher._cancel_outbound

    async def cancel_outbound(request_id: Any, said: str, related: Any) -> None:
        await cancel(request_id, reason(said) if said == "caller cancelled" else said, related)

    dispatcher._cancel_outbound = cancel_outbound
