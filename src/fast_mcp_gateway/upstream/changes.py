"""Change tracking for one replica: ``list_changed`` and catalog refresh, and the
resource subscriptions hosts made (kept across reconnects, replayed on each session).

Handshake-era sessions push notifications to ``on_message``; 2026-07-28 sessions
deliver them only on a ``subscriptions/listen`` stream, reopened whenever the set of
subscribed resources changes (a stream's filter is fixed when it opens).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from mcp import ClientSession

from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.upstream.model import Catalog, describe_error
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)


class ChangeTracker:
    """Refreshes the catalog when told it changed, and owns resource subscriptions.

    ``fetch`` lists the catalog on a session; ``on_catalog`` receives each refreshed
    one; ``on_resource_updated`` each updated upstream URI; ``changed`` is the
    replica's change signal (waiters re-check their condition when it fires).
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float,
        fetch: Callable[[ClientSession], Awaitable[Catalog]],
        on_catalog: Callable[[Catalog], None],
        on_resource_updated: Callable[[str], None],
        changed: ChangeSignal,
        notify: Callable[[], None],
    ) -> None:
        self._name = name
        self._timeout = timeout
        self._fetch = fetch
        self._on_catalog = on_catalog
        self._on_resource_updated = on_resource_updated
        self._changed = changed
        self._notify = notify
        self._dirty = anyio.Event()
        self._subscriptions: set[str] = set()
        # What was asked of the handshake-era session ``_asked_of`` (a host's subscribe,
        # the replay): all an unsubscribe there has to undo.
        self._asked_of: ClientSession | None = None
        self._asked: set[str] = set()
        self._listen_acked: frozenset[str] | None = None  # what the listen stream covers
        self._listen_error: str | None = None
        self._relisten = anyio.Event()

    # -- subscriptions ----------------------------------------------------------

    def is_subscribed(self, uri: str) -> bool:
        return uri in self._subscriptions

    def subscriptions(self) -> frozenset[str]:
        return frozenset(self._subscriptions)

    def add(self, uri: str) -> None:
        self._subscriptions.add(uri)

    def discard(self, uri: str) -> None:
        self._subscriptions.discard(uri)

    def asking(self, session: ClientSession, uri: str) -> None:
        """``session`` is being asked to subscribe to ``uri`` (before the request goes:
        an unsubscribe that follows it must go too)."""
        if session is not self._asked_of:
            self._asked_of, self._asked = session, set()
        self._asked.add(uri)

    def was_asked(self, session: ClientSession, uri: str) -> bool:
        """Whether ``session`` was asked to subscribe to ``uri`` (forgotten now): a URI
        its replay had not reached when a host let go of it was never subscribed there."""
        if session is not self._asked_of or uri not in self._asked:
            return False
        self._asked.discard(uri)
        return True

    def listening(self, uri: str) -> bool:
        """Whether the session's listen stream covers ``uri`` now (2026-07-28)."""
        return self._listen_acked is not None and uri in self._listen_acked

    def relisten(self) -> None:
        """Reopen the listen stream with the current subscriptions (2026-07-28)."""
        self._relisten.set()

    async def wait_listening(self, uri: str, within: float) -> str | None:
        """Wait until the listen stream covers ``uri``; the reason when it does not."""
        acked = await self._changed.wait_until(
            lambda: self._listen_error is not None
            or (self._listen_acked is not None and uri in self._listen_acked),
            within=within,
        )
        if self._listen_error is not None:
            return self._listen_error
        return None if acked else "no acknowledgement in time"

    # -- while a session is held --------------------------------------------------

    def serve(self, session: ClientSession, tg: anyio.abc.TaskGroup, modern: bool) -> None:
        """Start this session's change tasks in ``tg`` (cancelled with the session)."""
        tg.start_soon(self._refresh_loop, session)
        if modern:
            tg.start_soon(self._listen_for_changes, session)
        elif self._subscriptions:
            tg.start_soon(self._resubscribe, session)

    async def on_message(self, message: Any) -> None:
        """The session's message handler (runs in its receive loop: never blocks)."""
        if isinstance(message, Exception):
            logger.debug("upstream %s transport notice: %s", self._name, message)
            return
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            self._dirty.set()
        elif isinstance(message, types.ResourceUpdatedNotification):
            self._on_resource_updated(str(message.params.uri))

    async def _refresh_loop(self, session: ClientSession) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            try:
                with anyio.fail_after(self._timeout):
                    catalog = await self._fetch(session)
            except Exception as exc:  # noqa: BLE001 - keep the previous catalog
                logger.warning("upstream %s: catalog refresh failed: %s", self._name,
                               describe_error(exc))
                continue
            self._on_catalog(catalog)
            self._notify()

    async def _listen_for_changes(self, session: ClientSession) -> None:
        caps = session.server_capabilities or types.ServerCapabilities()
        tools = bool(caps.tools and caps.tools.list_changed)
        prompts = bool(caps.prompts and caps.prompts.list_changed)
        resources = bool(caps.resources and caps.resources.list_changed)
        try:
            await self._listen(session, tools, prompts, resources)
        finally:
            self._listen_acked = None   # the session ended: its stream covers nothing

    async def _listen(self, session: ClientSession, tools: bool, prompts: bool,
                      resources: bool) -> None:
        from mcp.client.subscriptions import ResourceUpdated, listen

        while True:
            self._relisten = anyio.Event()
            uris = frozenset(self._subscriptions)
            if not (tools or prompts or resources or uris):
                await self._relisten.wait()
                continue
            try:
                async with anyio.create_task_group() as tg:

                    async def reopen_when_asked(scope: anyio.CancelScope) -> None:
                        await self._relisten.wait()
                        scope.cancel()

                    tg.start_soon(reopen_when_asked, tg.cancel_scope)
                    async with listen(session, tools_list_changed=tools,
                                      prompts_list_changed=prompts,
                                      resources_list_changed=resources,
                                      resource_subscriptions=sorted(uris)) as subscription:
                        self._listen_acked, self._listen_error = uris, None
                        self._notify()
                        async for event in subscription:
                            if isinstance(event, ResourceUpdated):
                                self._on_resource_updated(str(event.uri))
                            else:
                                self._dirty.set()
                    tg.cancel_scope.cancel()
            except Exception as exc:  # noqa: BLE001 - the upstream does not offer listen
                self._listen_acked, self._listen_error = None, describe_error(exc)
                self._notify()
                logger.debug("upstream %s: no listen stream: %s", self._name,
                             self._listen_error)
                await self._relisten.wait()

    async def _resubscribe(self, session: ClientSession) -> None:
        """Replay hosts' resource subscriptions on a new handshake-era session (one let
        go of meanwhile is not: its unsubscription may have gone first)."""
        for uri in sorted(self._subscriptions):
            if uri not in self._subscriptions:
                continue
            try:
                self.asking(session, uri)
                with anyio.fail_after(self._timeout):
                    await subscribe_on(session, uri)
            except Exception as exc:  # noqa: BLE001 - one URI must not stop the others
                logger.warning("upstream %s: could not resubscribe to %s: %s", self._name,
                               logged_name(uri), describe_error(exc))


async def subscribe_on(session: ClientSession, uri: str) -> None:
    """``resources/subscribe`` on a handshake-era session, sent as the typed request:
    the SDK's ``subscribe_resource`` is marked deprecated (the method does not exist at
    2026-07-28) and its warning reached ``serve``'s stderr, advice for no user."""
    await session.send_request(
        types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri)),
        types.EmptyResult)


async def unsubscribe_on(session: ClientSession, uri: str) -> None:
    """``resources/unsubscribe`` on a handshake-era session (as ``subscribe_on``)."""
    await session.send_request(
        types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri)),
        types.EmptyResult)
