"""The host side of an express lane call: what it sends the host besides the answer.

``LaneFront`` is the host request a lane call carries through the pipeline (both
lanes: stdio ``lane.py`` and ``http/lane.py``): progress to the host's own token,
logs at the levels the host asked for, and sampling / elicitation / roots requests
through its lane's ``wire.HostChannel``.  ``StdioChannel`` is that channel for the
stdio host (``StdioLane`` is one): lines written to stdout, notifications without
waiting, requests under the lane's own ids answered from the host's lines.  Apart
from ``lane.py``, which decides what the lane takes and serves its calls.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.front.wire import HostChannel, encode_line, progress_params
from fast_mcp_gateway.upstream.relay import FrontCall

if TYPE_CHECKING:
    from fast_mcp_gateway._compat import RoundStates
    from fast_mcp_gateway.front.stdio import LineWriter

ASK_PREFIX = "gw-ask-"
"""The start of the ids of the requests a stdio lane sends its host."""

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
    answers to its requests (``_take_answer``: whether the line was one) and keeps
    ``host_capabilities`` from the host's handshake.
    """

    def __init__(self) -> None:
        self._writer: LineWriter | None = None
        self._asks: dict[str, MemoryObjectSendStream[dict[str, Any]]] = {}
        self._ask_ids = itertools.count(1)

    def _take_answer(self, line: bytes) -> bool:
        try:
            message = json.loads(line)
            send = self._asks.get(message["id"]) if "method" not in message else None
        except (ValueError, KeyError, TypeError):
            return False
        if send is None:
            return False
        send.send_nowait(message)
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
        """Send the host a request under a lane id and wait for its answer."""
        ask_id = f"{ASK_PREFIX}{next(self._ask_ids)}"
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
                        "requestId": ask_id, "reason": "the call was cancelled"})
            raise
        finally:
            del self._asks[ask_id]
            send.close()
        if "error" in answer:
            raise MCPError.from_error_data(types.ErrorData.model_validate(answer["error"]))
        result = answer.get("result")
        return result if isinstance(result, dict) else {}
