"""Connected hosts, and what the gateway pushes to them when the catalog changes."""

from __future__ import annotations

import weakref
from typing import Any

import anyio
import anyio.abc
from mcp.server.connection import Connection
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS


class FrontHub:
    """Connected hosts, and what to push to them when the catalog changes.

    Handshake-era hosts get ``notifications/*/list_changed`` and
    ``notifications/resources/updated`` on their connection; 2026-07-28 hosts get
    the same events on their ``subscriptions/listen`` streams (via ``bus``).
    """

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._subscribers: dict[str, weakref.WeakSet[Connection]] = {}
        self._listening: dict[str, int] = {}  # 2026-07-28 listen streams per URI
        self._pending: set[str] = set()
        self._updated: list[str] = []
        self._wake = anyio.Event()

    def track(self, connection: Connection | None) -> None:
        if connection is not None and connection.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._connections.add(connection)

    def subscribe(self, uri: str, connection: Connection | None) -> None:
        if connection is not None:
            self._subscribers.setdefault(uri, weakref.WeakSet()).add(connection)

    def unsubscribe(self, uri: str, connection: Connection | None) -> bool:
        """Drop one subscriber; True when nobody is subscribed to ``uri`` any more."""
        subs = self._subscribers.get(uri)
        if subs is not None and connection is not None:
            subs.discard(connection)
        if subs is not None and not subs:
            del self._subscribers[uri]
        return uri not in self._subscribers and uri not in self._listening

    def listen(self, uri: str) -> None:
        """A 2026-07-28 listen stream covers ``uri`` (its events come from ``bus``)."""
        self._listening[uri] = self._listening.get(uri, 0) + 1

    def unlisten(self, uri: str) -> bool:
        """A listen stream ended; True when nobody is subscribed to ``uri`` any more."""
        left = self._listening.get(uri, 0) - 1
        if left > 0:
            self._listening[uri] = left
        else:
            self._listening.pop(uri, None)
        return uri not in self._subscribers and uri not in self._listening

    def changed(self, kinds: set[str]) -> None:
        self._pending |= kinds
        self._wake.set()

    def resource_updated(self, uri: str) -> None:
        self._updated.append(uri)
        self._wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            kinds, self._pending = self._pending, set()
            updated, self._updated = self._updated, []
            await self._broadcast(kinds, updated)

    async def _broadcast(self, kinds: set[str], updated: list[str]) -> None:
        events: list[Any] = []
        if "tools" in kinds:
            events.append(ToolsListChanged())
        if "prompts" in kinds:
            events.append(PromptsListChanged())
        if "resources" in kinds:
            events.append(ResourcesListChanged())
        events += [ResourceUpdated(uri=uri) for uri in updated]
        for event in events:
            await self.bus.publish(event)
        for connection in list(self._connections):
            try:
                if "tools" in kinds:
                    await connection.send_tool_list_changed()
                if "prompts" in kinds:
                    await connection.send_prompt_list_changed()
                if "resources" in kinds:
                    await connection.send_resource_list_changed()
            except Exception:  # noqa: BLE001 - a gone host must not stop the others
                self._connections.discard(connection)
        for uri in updated:
            for connection in list(self._subscribers.get(uri, ())):
                try:
                    await connection.send_resource_updated(uri)
                except Exception:  # noqa: BLE001 - a gone host must not stop the others
                    self._subscribers[uri].discard(connection)
