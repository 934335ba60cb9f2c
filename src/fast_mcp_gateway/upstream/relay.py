"""Relaying what an upstream says *during* a call back to the host that made the call.

A ``FrontCall`` is captured in the request task of the host's request (FastMCP sets
request-scoped ContextVars there, and nowhere else) and holds that request's own
``ServerSession``.  Upstream callbacks run in the upstream session's receive loop;
they find the call they belong to as follows (``HostRelay``):

* progress is exact: each upstream request gets its own progress callback;
* **exact correlation**: ``Requests`` sets ``CURRENT_CALL`` around every upstream
  request, and the SDK runs each inbound message's handler in the context of the
  task that put the message on the read stream.  Over streamable HTTP a server's
  request or log related to a call arrives on that call's own POST response stream,
  read by a task spawned (with a copy of its context) for that POST: the handler
  sees the call's ``FrontCall``.  The same holds for in-memory transports;
* **timing**: stdio, SSE and the standalone HTTP stream carry no relation, so the
  handler sees no call.  When every call in flight on that upstream session comes
  from one host (``FrontCall.asked_as``; always so in stdio mode), it is that host's;
* otherwise (calls of several hosts in flight on one shared session) the owner is
  unknowable: an ask is refused with an error naming the server and suggesting
  ``isolation: per_client``, and a log is kept from every host.  Nothing is ever
  sent to a host whose call did not cause it.

A question put to a host belongs to the upstream request it was correlated with, or
to the host (by timing): when that request, or the host's last call on that session,
ends, the questions still pending are withdrawn (cancelled towards the host, refused
upstream).  Logs sent while no call is in flight go to ``on_idle_log``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import typing
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import anyio
import mcp_types as types
from fastmcp.server.dependencies import get_access_token
from mcp.client.session import ClientRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway._compat import client_log_level, connection_of, current_transport
from fast_mcp_gateway.upstream.ask_details import refusal, sampling_declared
from fast_mcp_gateway.upstream.credentials import Caller
from fast_mcp_gateway.upstream.deadline import Pace
from fast_mcp_gateway.upstream.held_logs import relayed
from fast_mcp_gateway.upstream.url_asks import UrlAsks

logger = logging.getLogger(__name__)

# The SDK marks server logging deprecated as of 2026-07-28 (SEP-2577), yet it still
# delivers per-request logs to hosts that opted in, and older hosts rely on them.
# Relaying an upstream's log is exactly that use, so call the undecorated method.
_send_log_message = getattr(ServerSession.send_log_message, "__wrapped__",
                            ServerSession.send_log_message)

# Request `_meta` keys that belong to one negotiated connection; never forwarded.
_TRANSPORT_CLIENT = {"stdio": "stdio", "streamable-http": "http", "sse": "sse"}
_CONNECTION_META_KEYS = frozenset({
    types.PROTOCOL_VERSION_META_KEY, types.CLIENT_INFO_META_KEY,
    types.CLIENT_CAPABILITIES_META_KEY, "progressToken"})


STDIO_HOST = "stdio"
"""The host key of the one host of a gateway serving stdio (full path and lane)."""

CURRENT_CALL: ContextVar[FrontCall | None] = ContextVar("gateway_current_call", default=None)
"""The host call an upstream request is made for, set by ``Requests`` around it."""

IdleLog = Callable[[types.LoggingMessageNotificationParams], Awaitable[None]]

LOG_LEVELS: tuple[str, ...] = typing.get_args(types.LoggingLevel)


def log_levels_from(minimum: str | None) -> frozenset[str]:
    """The levels a handshake-era host that set ``minimum`` with ``logging/setLevel``
    gets (every level when it set none, or an unknown one)."""
    start = LOG_LEVELS.index(minimum) if minimum in LOG_LEVELS else 0
    return frozenset(LOG_LEVELS[start:])


@dataclass(eq=False)
class FrontCall:
    """The host request an upstream operation is serving.

    ``host`` identifies the host connection (``STDIO_HOST`` in stdio mode; the SDK
    connection of an HTTP/SSE session; ``None`` when unknown): calls with the same
    key come from the same host, so a question of one may go to the other."""

    session: ServerSession | None
    request_id: Any = None
    meta: dict[str, Any] | None = None
    input_responses: Any = None
    request_state: str | None = None
    client_id: str = "stdio"
    protocol_version: str | None = None
    host: Any = None
    caller: Caller | None = field(default=None, repr=False)  # the verified HTTP caller
    # Upstream requests in flight for this call (their ``Pace``s: a question to the host
    # holds their deadlines), and the questions pending for them.
    _active: int = field(default=0, init=False, repr=False)
    _asks: set[anyio.CancelScope] = field(default_factory=set, init=False, repr=False)
    paces: list[Pace] = field(default_factory=list, init=False, repr=False)

    @property
    def reachable(self) -> bool:
        """Whether anything (progress, logs, asks) can be sent to this host."""
        return self.session is not None

    @property
    def observed_after_answer(self) -> bool:
        """Whether the call pipeline may tell its observers at the loop's next turn: the
        answer is written before the call's task yields (a lane's), so they run after it."""
        return False

    @property
    def between_rounds(self) -> bool:
        """Whether the host was shown questions for this call and has not come back with
        its next request (a parked 2026-07-28 call: a question now waits for that)."""
        return False

    @property
    def is_modern(self) -> bool:
        """A 2026-07-28 host: it answers asks itself (``InputRequiredResult``)."""
        return self.protocol_version in MODERN_PROTOCOL_VERSIONS

    @property
    def asked_as(self) -> Any:
        """Who a question attributed by timing may be put to (``InFlight.of_one_host``):
        the host connection, or a 2026-07-28 host's verified credential -- it has no
        connection, each request counting as a host of its own refused every question
        while two of its calls were in flight.  Its roots and ``per_client`` session go
        by the same key; an unauthenticated 2026-07-28 request stays its own host."""
        if self.caller is not None and self.is_modern and self.host != STDIO_HOST:
            return ("caller", self.caller.identity)
        return self.host

    @classmethod
    def from_context(cls, ctx: Any) -> FrontCall:
        """Capture the current FastMCP ``Context`` (call only in the request task)."""
        if ctx is None or ctx.request_context is None:
            return cls(session=None)
        rc = ctx.request_context
        raw_meta = dict(rc.meta or {}) if getattr(rc, "meta", None) else {}
        meta = {k: v for k, v in raw_meta.items() if k not in _CONNECTION_META_KEYS} or None
        transport = current_transport()
        # Without a client id (and, over HTTP, without a token, which names the caller
        # in the records instead) the records say how the host came: stdio, http, sse.
        client_id = _TRANSPORT_CLIENT.get(transport or "stdio", "stdio")
        with suppress(Exception):  # no client id on this transport
            client_id = ctx.client_id or client_id
        session = ctx.session
        host = STDIO_HOST if transport == "stdio" else (connection_of(session) or session)
        caller = None
        token = get_access_token()
        if token is not None:
            caller = Caller(name=token.client_id, token=token.token,
                            claims=dict(getattr(token, "claims", None) or {}))
        return cls(
            session=ctx.session,
            request_id=ctx.request_id,
            meta=meta,
            input_responses=ctx.input_responses,
            request_state=ctx.request_state,
            client_id=client_id,
            protocol_version=getattr(rc, "protocol_version", None),
            host=host,
            caller=caller,
        )

    @property
    def active(self) -> bool:
        """Whether an upstream request made for this call is still in flight."""
        return self._active > 0

    def serving(self) -> None:
        """One more upstream request for this call (``InFlight.enter``; ``served``)."""
        self._active += 1

    def served(self) -> None:
        """One upstream request ended: the last withdraws the call's pending asks."""
        self._active -= 1
        if not self._active:
            for scope in self._asks:
                scope.cancel()

    @contextmanager
    def asking(self) -> Iterator[anyio.CancelScope]:
        """A question put to this host, withdrawn when the call's requests end."""
        with anyio.CancelScope() as scope:
            self._asks.add(scope)
            try:
                yield scope
            finally:
                self._asks.discard(scope)

    def _related(self) -> ServerMessageMetadata | None:
        return None if self.request_id is None else ServerMessageMetadata(
            related_request_id=self.request_id)

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.session is not None:
            await relayed(self, message, partial(  # bounded as logs are (``held_logs``)
                self.session.report_progress, progress, total, message))

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        """An upstream's log of this call (a handshake-era host's level applied here)."""
        if self.session is not None:
            if not self.is_modern and params.level not in log_levels_from(
                    client_log_level(connection_of(self.session))):
                return
            await relayed(self, params.data, partial(
                _send_log_message, self.session, params.level, params.data, params.logger,
                related_request_id=self.request_id))

    def can_ask(self, capability: str) -> bool:
        """Whether this host declared ``sampling`` / ``elicitation`` / ``roots``."""
        if self.session is None:
            return False
        try:
            caps = self.session.client_capabilities
        except Exception:  # noqa: BLE001 - sessionless era: no declared capabilities
            return False
        return caps is not None and getattr(caps, capability, None) is not None

    def declared_capabilities(self) -> dict[str, Any] | None:
        """The client capabilities this host declared for the call (a 2026-07-28
        request's own envelope, a handshake-era session's initialize) as JSON; None
        when unknown (no session: the gateway's own requests)."""
        if self.session is None:
            return None
        try:
            caps = self.session.client_capabilities
        except Exception:  # noqa: BLE001 - no capabilities known on this transport
            return None
        return None if caps is None else caps.model_dump(by_alias=True, mode="json",
                                                         exclude_none=True)

    async def create_message(self, params: types.CreateMessageRequestParams) -> Any:
        assert self.session is not None
        result_type: Any = (
            types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        )
        return await self.session.send_request(
            types.CreateMessageRequest(params=params), result_type, metadata=self._related()
        )

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert self.session is not None
        return await self.session.send_request(
            types.ElicitRequest(params=params), types.ElicitResult, metadata=self._related()
        )

    async def list_roots(self) -> types.ListRootsResult:
        assert self.session is not None
        return await self.session.send_request(
            types.ListRootsRequest(), types.ListRootsResult, metadata=self._related()
        )


@dataclass
class InFlight:
    """The host calls currently waiting on one upstream session, in start order."""

    _calls: dict[int, FrontCall] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _host_asks: dict[Any, set[anyio.CancelScope]] = field(default_factory=dict)
    url_asks: UrlAsks = field(default_factory=UrlAsks)  # where a URL flow's end is told

    @contextmanager
    def track(self, call: FrontCall | None) -> Iterator[None]:
        key = self.enter(call)
        try:
            yield
        finally:
            self.leave(key, call)

    def enter(self, call: FrontCall | None) -> int | None:
        """``track`` without a context manager (``Requests``, once per upstream request):
        the key to pass to ``leave``, or None when ``call`` is not tracked."""
        if call is None or not call.reachable:
            return None
        key = next(self._ids)
        self._calls[key] = call
        call.serving()
        return key

    def leave(self, key: int | None, call: FrontCall | None) -> None:
        if key is None or call is None:
            return
        del self._calls[key]
        try:
            call.served()
        finally:
            if self._host_asks and not any(c.asked_as == call.asked_as
                                           for c in self._calls.values()):
                for scope in self._host_asks.pop(call.asked_as, ()):
                    scope.cancel()

    @contextmanager
    def asking_host(self, host: Any) -> Iterator[anyio.CancelScope]:
        """A question attributed to ``host`` by timing (not to one of its calls):
        withdrawn when no call of ``host`` is in flight here any more."""
        with anyio.CancelScope() as scope:
            asks = self._host_asks.setdefault(host, set())
            asks.add(scope)
            try:
                yield scope
            finally:
                asks.discard(scope)
                if not asks and self._host_asks.get(host) is asks:
                    del self._host_asks[host]

    def __len__(self) -> int:
        return len(self._calls)

    def anonymous_modern(self) -> bool:
        """Whether a 2026-07-28 call without a verified caller is in flight (``asked_as``:
        each such request is a host of its own)."""
        return any(c.is_modern and c.caller is None and c.host != STDIO_HOST
                   for c in self._calls.values())

    def sole(self) -> FrontCall | None:
        """The caller, when exactly one is in flight."""
        if len(self._calls) == 1:
            return next(iter(self._calls.values()))
        return None

    def of_one_host(self) -> FrontCall | None:
        """The caller, when every call in flight comes from one host: the earliest one
        the host is in now (not ``between_rounds``), else the earliest.  Any of them
        reaches the same host, whose answer goes back to the upstream request that
        asked; a call between rounds shows a question only if the host comes back."""
        calls = list(self._calls.values())
        if not calls:
            return None
        first = calls[0]
        if len(calls) == 1:
            return first
        host = first.asked_as
        if host is None or any(c.asked_as is not host and c.asked_as != host
                               for c in calls[1:]):
            return None
        return next((c for c in calls if not c.between_rounds), first)


class OutsideCalls(Protocol):
    """Who answers an upstream's ``roots/list`` outside a call (``roots.SoleHost``, and
    ``roots.OwnerRoots`` for a per_client session); ``saw``: a host's answer in a call."""

    async def answer(self, server: str, session: Any) -> Any: ...

    def saw(self, front: FrontCall, result: Any) -> None: ...


class HostRelay:
    """The callbacks an upstream session makes to its client, relayed to the host of
    the call they belong to (see the module docstring for attribution).  They run in
    the session's receive loop, so they only forward; they never wait on the upstream."""

    def __init__(self, name: str, inflight: InFlight, on_idle_log: IdleLog | None = None,
                 sole: OutsideCalls | None = None) -> None:
        self._name, self._inflight, self.on_idle_log, self._sole = name, inflight, on_idle_log, sole

    def _owner(self) -> tuple[FrontCall | None, bool]:
        """The call an inbound message belongs to, if it can be told (module doc), and
        whether exactly (else: that call's host, by timing)."""
        exact = CURRENT_CALL.get()
        if exact is not None:
            return exact, True
        return self._inflight.of_one_host(), False

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        caller, _ = self._owner()
        if caller is not None:
            with contextlib.suppress(Exception):
                await caller.log(params)
            return
        if len(self._inflight) == 0 and self.on_idle_log is not None:
            with contextlib.suppress(Exception):
                await self.on_idle_log(params)
            return
        logger.debug("upstream %s log [%s]: %s", self._name, params.level, params.data)

    def _asker(self, capability: str) -> tuple[FrontCall, bool] | types.ErrorData:
        caller, exact = self._owner()
        if caller is None:
            if len(self._inflight) > 1:
                fix = (f"set 'isolation: per_client' for server '{self._name}' in "
                       "servers.yaml to give each host its own session")
                if self._inflight.anonymous_modern():
                    fix = ("2026-07-28 hosts without a token have no session to tell their "
                           "calls apart by: give each host a token (gateway.auth), or "
                           + fix.replace("set", "with tokens, set", 1))
                return types.ErrorData(
                    code=types.INVALID_REQUEST,
                    message=f"server '{self._name}' asked for {capability} while "
                    f"{len(self._inflight)} calls from more than one host were in flight on "
                    "one session, and the gateway cannot tell which call asked (it never "
                    f"puts a question to another host); {fix}",
                )
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"server '{self._name}' asked for {capability} outside any call; "
                "the gateway has no host to ask",
            )
        if exact and not caller.active:
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"server '{self._name}' asked for {capability} after the call it "
                "belongs to ended (the host cancelled it or went away)",
            )
        if not caller.can_ask(capability):  # -32601: what a host without it answers
            return types.ErrorData(code=types.METHOD_NOT_FOUND, message=f"the gateway has no "
                f"connected host that supports {capability} for this request (the host of "
                "the call did not declare it; a session several hosts share declares what "
                f"any may answer: 'isolation: per_client' for server '{self._name}' in "
                "servers.yaml gives the server its host's own capabilities)")
        return caller, exact

    async def _put(self, owner: tuple[FrontCall, bool], capability: str,
                   question: Callable[[FrontCall], Awaitable[Any]]) -> Any:
        """Ask the owner's host; withdrawn (an error upstream) when the call it belongs
        to ends first (attributed by timing: when none of the host's calls is left)."""
        caller, exact = owner
        pending = caller.asking() if exact else self._inflight.asking_host(caller.asked_as)
        start, paces = anyio.current_time(), list(caller.paces)
        for pace in paces:
            pace.asked(True, start)
        with pending as scope:
            try:
                return await question(caller)
            except MCPError as exc:
                return exc.error
            finally:
                for pace in paces:
                    pace.asked(False, anyio.current_time())
        assert scope.cancel_called
        return types.ErrorData(
            code=types.INVALID_REQUEST,
            message=f"the {capability} request was withdrawn: the call it belongs to ended "
            "(the host cancelled it or went away)",
        )

    async def on_sampling(
        self, ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> Any:
        owner = self._asker("sampling")
        if isinstance(owner, types.ErrorData):
            return owner
        if (refused := refusal(params, owner[0].declared_capabilities(), self._name)):
            return refused  # (sampling with tools, undeclared: upstream/ask_details.py)
        return await self._put(owner, "sampling", lambda c: c.create_message(params))

    async def on_elicitation(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> Any:
        owner = self._asker("elicitation")
        if isinstance(owner, types.ErrorData):
            return owner
        if (refused := refusal(params, owner[0].declared_capabilities(), self._name)):
            return refused  # (URL mode, undeclared: upstream/ask_details.py)
        self._inflight.url_asks.asked(params, owner[0], self._name)
        return await self._put(owner, "elicitation", lambda c: c.elicit(params))

    async def on_list_roots(self, ctx: ClientRequestContext) -> Any:
        owner = self._asker("roots")
        if isinstance(owner, types.ErrorData):
            if self._inflight:
                return owner  # never another host's roots
            if self._sole is None:   # a replica built outside a manager: no roots
                return types.ListRootsResult(roots=[])
            return await self._sole.answer(self._name, ctx.session)   # upstream/roots.py
        result = await self._put(owner, "roots", lambda c: c.list_roots())
        if self._sole is not None:
            self._sole.saw(owner[0], result)
        return result

    def session_callbacks(self, declares: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``ClientSession`` keyword arguments that route to these callbacks: of the
        asks ``declares`` names only, if given (the SDK declares an ask it has a callback
        for: a ``per_client`` session declares no more than its one host did; one asked
        anyway is refused by the SDK, as by a host without it)."""
        asks = {"sampling_callback": ("sampling", self.on_sampling),
                "elicitation_callback": ("elicitation", self.on_elicitation),
                "list_roots_callback": ("roots", self.on_list_roots)}
        return {"logging_callback": self.on_log, **{
            key: callback for key, (capability, callback) in asks.items()
            if declares is None or capability in declares},
            "sampling_capabilities": sampling_declared(declares)}  # (with tools: ask_details)
