"""The host side of an express lane call: what it sends the host besides the answer.

``LaneFront`` is the host request a lane call carries through the pipeline (both
lanes: stdio ``lane.py`` and ``http/lane.py``): progress to the host's own token,
logs at the levels the host asked for, and sampling / elicitation / roots requests
through its lane's ``wire.HostChannel``.  ``StdioChannel`` is that channel for the
stdio host (``StdioLane`` is one): lines written to stdout, notifications without
waiting, requests under ids the SDK's dispatcher of the host's connection mints
(``_compat_sessions.next_request_id``: 1, 2, ..., the counter the SDK's own requests
to the host take theirs from), answered from the host's lines read as the SDK reads
them.  Apart from ``lane.py``, which decides what the lane takes and serves its calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp_types import JSONRPCError, JSONRPCResponse, jsonrpc_message_adapter
from pydantic import ValidationError

from fast_mcp_gateway._compat import connection_of
from fast_mcp_gateway._compat_sessions import next_request_id
from fast_mcp_gateway.front.wire import HostChannel, encode_line, progress_params
from fast_mcp_gateway.upstream.relay import FrontCall

if TYPE_CHECKING:
    from fast_mcp_gateway._compat import RoundStates
    from fast_mcp_gateway.front.stdio import LineWriter

_encode = encode_line


@dataclass(eq=False)
class LaneFront(FrontCall):
    """The host request of a lane call: replies go out through the lane."""

    observed_after_answer = True  # its answer is written before its task yields
    lane: HostChannel | None = None
    progress_token: Any = None
    log_levels: frozenset[str] = field(default_factory=frozenset)
    capabilities: dict[str, Any] | None = None  # a 2026-07-28 request's own envelope
    # Answers this request from another task (MRTR parks a call lazily: mrtr.Answering).
    reply: Callable[[bytes], Awaitable[None]] | None = field(default=None, repr=False)

    @property
    def reachable(self) -> bool:
        return self.lane is not None

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.lane is not None and self.progress_token is not None:
            await self.lane.progress(self.progress_token, progress, total, message)

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if self.lane is not None and params.level in self.log_levels:
            await self.lane.notify("notifications/message", params.model_dump(
                by_alias=True, mode="json", exclude_none=True))

    def seal_state(self, params: dict[str, Any], state: str) -> str:
        """The ``requestState`` of an asking round answering the host's ``tools/call``
        ``params`` (its own name and arguments), sealed as the full path seals it, so
        that any path of any gateway sharing the keys opens it (``lane.open_state``)."""
        # Kept by the lane's channel (``StdioLane``; the HTTP lane's per-call ``_Reply``,
        # with its caller's binding), not in fields of this: nothing per plain call.
        lane = self.lane
        states: RoundStates | None = getattr(lane, "states", None)
        if states is None:
            raise RuntimeError("an express lane call without the full path's requestState "
                               "seal cannot answer an asking round")
        return states.seal(params, getattr(lane, "binding", None), state)

    def declared_capabilities(self) -> dict[str, Any] | None:
        """A 2026-07-28 request's own envelope's, else the host's handshake's."""
        caps = self.capabilities if self.is_modern else getattr(self.lane, "host_capabilities",
                                                                  None)
        return caps if isinstance(caps, dict) else None

    def declares(self, capability: str) -> bool:
        """Whether the host declared ``capability`` (MRTR asks a 2026-07-28 host only then)."""
        return (self.declared_capabilities() or {}).get(capability) is not None

    def can_ask(self, capability: str) -> bool:
        return self.lane is not None and not self.is_modern and self.declares(capability)

    async def create_message(self, params: types.CreateMessageRequestParams) -> Any:
        result_type: Any = (
            types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        )
        return result_type.model_validate(await self._ask("sampling/createMessage", params))

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult.model_validate(await self._ask("elicitation/create", params))

    async def list_roots(self) -> types.ListRootsResult:
        return types.ListRootsResult.model_validate(await self._ask("roots/list", None))

    async def _ask(self, method: str, params: Any) -> dict[str, Any]:
        assert self.lane is not None
        body = None if params is None else params.model_dump(by_alias=True, mode="json",
                                                             exclude_none=True)
        return await self.lane.ask(method, body)


def open_state(states: RoundStates, params: dict[str, Any],
               binding: str | None) -> dict[str, Any] | None:
    """A continuation's ``tools/call`` ``params`` with its ``requestState`` opened as the
    full path opens it (``RoundStates.open``: whichever path or gateway sharing the keys
    sealed it), or None: a state that does not open (forged, altered, expired, another
    caller's or tool's) is left to the full path, which refuses it in the SDK's words."""
    try:
        opened = states.open(params, binding)
    except MCPError:
        return None
    return {**params, "requestState": opened}


class StdioChannel:
    """The stdio host as its lane calls' ``wire.HostChannel`` (see the module doc).

    Its lane (``lane.StdioLane``) sets ``_writer`` while it runs, hands it the host's
    lines while a question is pending (``_take_answer``: whether the line was an
    answer to one) and keeps ``host_capabilities`` from the host's handshake; an SDK
    server middleware (``watch_connection``) gives it the host's connection.
    """

    def __init__(self) -> None:
        self._writer: LineWriter | None = None
        self._asks: dict[int | str, MemoryObjectSendStream[dict[str, Any]]] = {}
        # The SDK's dispatcher of the host's connection (its request ids), once known.
        self._outbound: Any = None
        self._connected: anyio.Event | None = None  # set with ``_outbound``

    async def watch_connection(self, ctx: ServerRequestContext[Any, Any],
                               call_next: CallNext) -> HandlerResult:
        """An SDK server middleware: the connection of a handshake-era host, from its
        ``initialize`` (the SDK serves a 2026-07-28 host's requests without one, and
        the lane never asks that host)."""
        if ctx.method == "initialize" and (found := connection_of(ctx.session)) is not None:
            self._outbound = found.outbound
            if self._connected is not None:
                self._connected.set()
        return await call_next(ctx)

    async def _ask_id(self) -> int:
        """The next id of the host's connection: the SDK read the host's ``initialize``
        before the lane took a call (it relays the host's lines in order), but may
        not have served it yet (the host answered early: ``early.py``)."""
        while self._outbound is None:
            if self._connected is None:
                self._connected = anyio.Event()
            await self._connected.wait()
        return next_request_id(self._outbound)

    def _take_answer(self, line: bytes) -> bool:
        """Whether ``line`` answered a pending question, read as the SDK's dispatcher
        reads it (``line`` passed the SDK's parser: ``stdio.screen``): a response
        whose id is one asked (``"7"`` is 7), other members ignored, an error over a
        result."""
        try:
            message = jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValidationError:
            return False
        if not isinstance(message, JSONRPCResponse | JSONRPCError) or message.id is None:
            return False
        send = self._asks.get(coerce_request_id(message.id))
        if send is None:
            return False  # the answer to one of the SDK's own requests, or to none
        with contextlib.suppress(anyio.WouldBlock):  # answered twice: the first counts
            send.send_nowait(message.model_dump(by_alias=True, exclude_unset=True))
        return True

    async def _write(self, line: bytes) -> None:
        if self._writer is None:
            return
        await self._writer.write_bytes(line)

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification without waiting for the host to read it: a host that
        stops reading must not stall the upstream session relaying its progress."""
        if self._writer is not None:
            self._writer.write_nowait(_encode({"jsonrpc": "2.0", "method": method,
                                               "params": params}))

    async def progress(self, token: Any, progress: float, total: float | None,
                       message: str | None) -> None:
        await self.notify("notifications/progress",
                          progress_params(token, progress, total, message))

    async def ask(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """Send the host a request under an id of its connection's (``_ask_id``) and
        wait for its answer."""
        ask_id = await self._ask_id()
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](1)
        self._asks[ask_id] = send
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": ask_id, "method": method}
        if params is not None:
            request["params"] = params
        written = False
        try:
            await self._write(_encode(request))
            written = True
            with receive:
                answer = await receive.receive()
        except anyio.get_cancelled_exc_class():
            if written:  # the call is gone: withdraw the question, as the SDK would
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await self.notify("notifications/cancelled", {
                        "requestId": ask_id, "reason": "caller cancelled"})
            raise
        finally:
            del self._asks[ask_id]
            send.close()
        if "error" in answer:
            raise MCPError.from_error_data(types.ErrorData.model_validate(answer["error"]))
        result = answer.get("result")
        return result if isinstance(result, dict) else {}
