"""A streamable-HTTP upstream that closes a call's SSE stream before its answer (SEP-1699).

    python polling_http.py PORTFILE

The MCP SDK's lowlevel ``Server`` with an event store and a ``retry`` hint, as a
server that polls does: its tool ``poll(text)`` reports one progress (when asked for),
closes the call's SSE stream (``close_sse_stream``) and answers; the answer is stored,
and a client gets it by reconnecting with ``GET`` and the ``Last-Event-ID`` of the last
event it read, after the ``retry`` interval (``RETRY_MS``).  ``count`` tells how many
calls it answered so (``polled``) and how many GETs resumed a stream (``resumed``), as
text.  Handshake era only: the SDK closes streams of 2025-11-25 sessions.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

import anyio
import mcp_types as types
from loopback_http import serve
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore

RETRY_MS = 50
_COUNTS = {"polled": 0, "resumed": 0}
_TOOLS = [
    types.Tool(name="poll", input_schema={
        "type": "object", "properties": {"text": {"type": "string"}}}),
    types.Tool(name="count", input_schema={"type": "object", "properties": {}}),
]


class MemoryEvents(EventStore):
    """Every event of every stream, kept in order (a test's few)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []  # (event id, stream id, message)
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: str, message: Any) -> str:
        event_id = f"e{next(self._ids)}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str,
                                  send_callback: EventCallback) -> str | None:
        ids = [event[0] for event in self.events]
        if last_event_id not in ids:
            return None
        at = ids.index(last_event_id)
        stream_id = self.events[at][1]
        _COUNTS["resumed"] += 1
        for event_id, stream, message in self.events[at + 1:]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=_TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name == "count":
        return types.CallToolResult(content=[types.TextContent(
            text=f"polled {_COUNTS['polled']} resumed {_COUNTS['resumed']}")])
    meta: Any = params.meta or {}
    token = meta.get("progress_token", meta.get("progressToken"))
    if token is not None:
        await ctx.session.send_progress_notification(token, 1, 2,
                                                     related_request_id=ctx.request_id)
    if ctx.close_sse_stream is not None:
        await ctx.close_sse_stream()
        _COUNTS["polled"] += 1
    text = (params.arguments or {}).get("text", "")
    return types.CallToolResult(content=[types.TextContent(text=f"polled: {text}")],
                                structured_content={"text": text})


server: Server[Any] = Server("polling", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    app = server.streamable_http_app(event_store=MemoryEvents(), retry_interval=RETRY_MS)
    await serve(app, sys.argv[1])


if __name__ == "__main__":
    anyio.run(main)
