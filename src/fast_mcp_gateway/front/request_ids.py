"""The stdio host's requests in flight, by id: a duplicate is answered with an error
(over stateful streamable HTTP: ``http/request_ids.py``).

JSON-RPC 2.0 lets a client match each response to its request by id, and MCP says a
request id "MUST NOT have been previously used by the requestor within the same
session".  The SDK's dispatcher does not check (``JSONRPCDispatcher._dispatch_request``:
"duplicate ids blind-overwrite (v1/TS parity)"): it ran both requests and answered the
id twice, and a cancellation reached only the second.  ``RequestIds`` keeps the ids of
the host's requests until their answers are written (or the host cancels them): a
request under an id still in flight is answered with -32600 and never runs.  Ids are
compared as the SDK correlates them (``coerce_request_id``: ``7`` and ``"7"`` are one).

Its cost per message: a set lookup for each request read, and for each line written a
prefix check and the decoding of the id alone (every answer, the SDK's and the express
lane's, begins ``{"jsonrpc":"2.0","id":``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mcp_types as types

if TYPE_CHECKING:
    from fast_mcp_gateway.upstream.relay import FrontCall

_PREFIX = '{"jsonrpc":"2.0","id":'
_ANSWER = _PREFIX.encode()
_ID_SPAN = 4096  # an id longer than this is not tracked (no host sends one)
_decoder = json.JSONDecoder()


def duplicate_message(request_id: Any) -> str:
    return (f"Invalid request: id {json.dumps(request_id)} is already used by a request "
            "of this session still in flight; each request needs an id of its own "
            "(MCP: a request id MUST NOT be reused within a session). Send it again "
            "under a new id")


class RequestIds:
    """Ids of the host's requests not answered yet (see the module docstring)."""

    __slots__ = ("_open", "reasons")

    def __init__(self) -> None:
        self._open: set[Any] = set()
        # The host's reason for each request it cancelled (the latest 256), read as the
        # cancellation goes upstream (``reason_of``; ``deadline.HOST_REASON``).
        self.reasons: dict[Any, str] = {}

    def reason_of(self, request_id: Any) -> Callable[[], str | None]:
        """The host's reason for cancelling ``request_id``, when it has."""
        key = id_key(request_id)
        return lambda: self.reasons.get(key)

    def enter(self, message: types.JSONRPCMessage) -> str | None:
        """``message`` was read: None, or (a request under an id in flight) the error
        to answer it with instead of running it."""
        if isinstance(message, types.JSONRPCRequest):
            key = id_key(message.id)
            if key is None:
                return None
            if key in self._open:
                return duplicate_message(message.id)
            self._open.add(key)
            self.reasons.pop(key, None)
        elif isinstance(message, types.JSONRPCNotification) \
                and message.method == "notifications/cancelled" \
                and isinstance(message.params, dict):
            key = id_key(message.params.get("requestId"))
            if key is not None:  # no answer will come: the id may be used again
                if key in self._open and isinstance(message.params.get("reason"), str):
                    self.reasons[key] = message.params["reason"]
                    if len(self.reasons) > 256:
                        del self.reasons[next(iter(self.reasons))]
                self._open.discard(key)
        return None

    def written(self, line: bytes | str) -> None:
        """``line`` went to the host: an answer frees its id."""
        if not self._open:
            return
        start = len(_PREFIX)
        if isinstance(line, str):
            if not line.startswith(_PREFIX):
                return
            text = line[start:start + _ID_SPAN]
        else:
            if not line.startswith(_ANSWER):
                return
            text = line[start:start + _ID_SPAN].decode("utf-8", errors="replace")
        try:
            request_id, end = _decoder.raw_decode(text)
        except ValueError:
            return
        if text.startswith((',"result"', ',"error"'), end):
            key = id_key(request_id)
            if key is not None:
                self._open.discard(key)


def id_key(request_id: Any) -> Any:
    """``request_id`` as the SDK's ``coerce_request_id`` correlates it (a string of an
    int is that int; ``tests/test_request_ids.py`` holds the two equal), written here:
    importing ``mcp.shared.dispatcher`` loads the SDK's package, which the stdio front
    must not before its upstreams are spawned (``tests/test_import_budget.py``)."""
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    if isinstance(request_id, str):
        try:
            return int(request_id)
        except ValueError:
            return request_id
    return request_id


STDIO: list[RequestIds] = []
"""The stdio host's ``RequestIds`` while the stdio front serves (one host a process)."""


def follow_cancel(front: FrontCall) -> FrontCall:
    """In the task of a full-path call of the stdio host (``front``, its ``FrontCall``),
    the host's reason, should it cancel the call, goes upstream with the cancellation
    (``deadline.HOST_REASON``; the express lane sets its own, ``front/lane.py``)."""
    from fast_mcp_gateway.upstream.deadline import HOST_REASON
    from fast_mcp_gateway.upstream.relay import STDIO_HOST

    if front.host is STDIO_HOST and STDIO and front.request_id is not None:
        HOST_REASON.set(STDIO[0].reason_of(front.request_id))
    return front
