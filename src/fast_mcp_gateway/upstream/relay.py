"""Relaying what an upstream says *during* a call back to the host that made the call.

A ``FrontCall`` is captured in the request task of the host's request (FastMCP sets
request-scoped ContextVars there, and nowhere else) and holds that request's own
``ServerSession``.  Upstream callbacks run in the upstream session's receive loop,
so they never read ContextVars; they use a ``FrontCall`` instead.

Attribution:

* progress is exact: each upstream request gets its own progress callback;
* logs and server-initiated requests (sampling, elicitation, roots) carry no request
  id on a shared upstream session, so ``InFlight`` attributes them to the one call in
  flight on that upstream.  With several callers in flight the owner is unknowable:
  logs are then kept out of every host (never sent to the wrong one) and requests
  go to the earliest caller whose host can answer them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp.client.session import ClientRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

logger = logging.getLogger(__name__)

# The SDK marks server logging deprecated as of 2026-07-28 (SEP-2577), yet it still
# delivers per-request logs to hosts that opted in, and older hosts rely on them.
# Relaying an upstream's log is exactly that use, so call the undecorated method.
_send_log_message = getattr(
    ServerSession.send_log_message, "__wrapped__", ServerSession.send_log_message
)

# Request `_meta` keys that belong to one negotiated connection; never forwarded.
_CONNECTION_META_KEYS = frozenset(
    {
        types.PROTOCOL_VERSION_META_KEY,
        types.CLIENT_INFO_META_KEY,
        types.CLIENT_CAPABILITIES_META_KEY,
        "progressToken",
    }
)


@dataclass(eq=False)
class FrontCall:
    """The host request an upstream operation is serving."""

    session: ServerSession | None
    request_id: Any = None
    meta: dict[str, Any] | None = None
    input_responses: Any = None
    request_state: str | None = None
    client_id: str = "stdio"
    protocol_version: str | None = None

    @property
    def reachable(self) -> bool:
        """Whether anything (progress, logs, asks) can be sent to this host."""
        return self.session is not None

    @property
    def is_modern(self) -> bool:
        """A 2026-07-28 host: it answers asks itself (``InputRequiredResult``)."""
        return self.protocol_version in MODERN_PROTOCOL_VERSIONS

    @classmethod
    def from_context(cls, ctx: Any) -> FrontCall:
        """Capture the current FastMCP ``Context`` (call only in the request task)."""
        if ctx is None or ctx.request_context is None:
            return cls(session=None)
        rc = ctx.request_context
        raw_meta = dict(rc.meta or {}) if getattr(rc, "meta", None) else {}
        meta = {k: v for k, v in raw_meta.items() if k not in _CONNECTION_META_KEYS} or None
        client_id = "stdio"
        with suppress(Exception):  # no client id on this transport
            client_id = ctx.client_id or client_id
        return cls(
            session=ctx.session,
            request_id=ctx.request_id,
            meta=meta,
            input_responses=ctx.input_responses,
            request_state=ctx.request_state,
            client_id=client_id,
            protocol_version=getattr(rc, "protocol_version", None),
        )

    def _related(self) -> ServerMessageMetadata | None:
        if self.request_id is None:
            return None
        return ServerMessageMetadata(related_request_id=self.request_id)

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.session is not None:
            await self.session.report_progress(progress, total, message)

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if self.session is not None:
            await _send_log_message(
                self.session, params.level, params.data, params.logger,
                related_request_id=self.request_id,
            )

    def can_ask(self, capability: str) -> bool:
        """Whether this host declared ``sampling`` / ``elicitation`` / ``roots``."""
        if self.session is None:
            return False
        try:
            caps = self.session.client_capabilities
        except Exception:  # noqa: BLE001 - sessionless era: no declared capabilities
            return False
        return caps is not None and getattr(caps, capability, None) is not None

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

    @contextmanager
    def track(self, call: FrontCall | None) -> Iterator[None]:
        if call is None or not call.reachable:
            yield
            return
        key = next(self._ids)
        self._calls[key] = call
        try:
            yield
        finally:
            del self._calls[key]

    def __len__(self) -> int:
        return len(self._calls)

    def sole(self) -> FrontCall | None:
        """The caller, when exactly one is in flight."""
        if len(self._calls) == 1:
            return next(iter(self._calls.values()))
        return None

    def first_able(self, capability: str) -> FrontCall | None:
        """The earliest caller whose host can answer a ``capability`` request."""
        for call in self._calls.values():
            if call.can_ask(capability):
                return call
        return None

    def any_session(self) -> FrontCall | None:
        return next(iter(self._calls.values()), None)


class SoleHost:
    """The one host of a stdio gateway, asked for what an upstream requests outside any
    call (``roots/list``: a filesystem server narrows itself to the host's roots).

    Unset (HTTP, library use), such a request is answered ``[]``: with several hosts
    on one shared upstream session no answer can be attributed with certainty.
    """

    def __init__(self) -> None:
        self.front: Callable[[], FrontCall | None] | None = None

    def get(self) -> FrontCall | None:
        return self.front() if self.front is not None else None


class HostRelay:
    """The callbacks an upstream session makes to its client, relayed to the host of
    the call in flight (see the module docstring for attribution).  They run in the
    session's receive loop, so they only forward; they never wait on the upstream."""

    def __init__(self, name: str, inflight: InFlight, sole: SoleHost | None = None) -> None:
        self._name = name
        self._inflight = inflight
        self._sole = sole

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        caller = self._inflight.sole()
        if caller is not None:
            with contextlib.suppress(Exception):
                await caller.log(params)
            return
        logger.debug("upstream %s log [%s]: %s", self._name, params.level, params.data)

    def _asker(self, capability: str) -> FrontCall | types.ErrorData:
        caller = self._inflight.sole() or self._inflight.first_able(capability)
        if caller is None or not caller.can_ask(capability):
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"the gateway has no connected host that supports {capability} "
                "for this request",
            )
        return caller

    async def on_sampling(
        self, ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> Any:
        caller = self._asker("sampling")
        if isinstance(caller, types.ErrorData):
            return caller
        try:
            return await caller.create_message(params)
        except MCPError as exc:
            return exc.error

    async def on_elicitation(
        self, ctx: ClientRequestContext, params: types.ElicitRequestParams
    ) -> Any:
        caller = self._asker("elicitation")
        if isinstance(caller, types.ErrorData):
            return caller
        try:
            return await caller.elicit(params)
        except MCPError as exc:
            return exc.error

    async def on_list_roots(self, ctx: ClientRequestContext) -> Any:
        caller = self._asker("roots")
        if isinstance(caller, types.ErrorData):
            # Outside any call: the stdio gateway's one host, else no roots (SoleHost).
            sole = self._sole.get() if self._sole is not None and not self._inflight else None
            if sole is None or not sole.can_ask("roots"):
                return types.ListRootsResult(roots=[])
            caller = sole
        try:
            return await caller.list_roots()
        except MCPError as exc:
            return exc.error

    def session_callbacks(self) -> dict[str, Any]:
        """The ``ClientSession`` keyword arguments that route to these callbacks."""
        return {
            "sampling_callback": self.on_sampling,
            "elicitation_callback": self.on_elicitation,
            "list_roots_callback": self.on_list_roots,
            "logging_callback": self.on_log,
        }
