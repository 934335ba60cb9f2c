"""One replica's resource subscriptions, as asked of its session.

A handshake-era session is sent ``resources/subscribe`` / ``resources/unsubscribe``; a
2026-07-28 one has no such requests: its listen stream is reopened with the new filter
(``ChangeTracker.relisten``) and, for a subscribe, awaited until it covers the URI.
Either way the URIs are kept by the ``ChangeTracker``, which replays them on each new
session of the replica (a reconnect, a restart after a crash), and ``keep`` seeds it
with the subscriptions a replica takes over before its first session (a restart with a
new config: ``Service.carry``).  An unsubscribe goes to a handshake-era session only
when that session was asked to subscribe (``ChangeTracker.was_asked``).
"""

from __future__ import annotations

from typing import Any

from mcp import ClientSession

from fast_mcp_gateway.errors import UpstreamRequestFailed, UpstreamUnavailable
from fast_mcp_gateway.upstream.changes import ChangeTracker, subscribe_on, unsubscribe_on
from fast_mcp_gateway.upstream.requests import Requests
from fast_mcp_gateway.upstream.supervisor import Supervisor


class ResourceSubscriptions:
    """``subscribe``/``unsubscribe`` on the session ``sup`` holds, kept in ``changes``."""

    def __init__(self, label: str, sup: Supervisor, changes: ChangeTracker,
                 requests: Requests, timeout: float) -> None:
        self._label = label
        self._sup = sup
        self._changes = changes
        self._requests = requests
        self._timeout = timeout

    def held(self) -> frozenset[str]:
        """The URIs subscribed (replayed on each session)."""
        return self._changes.subscriptions()

    def keep(self, uri: str) -> None:
        """Subscribe to ``uri`` from the next session on (asked of none now)."""
        self._changes.add(uri)

    async def subscribe(self, uri: str) -> None:
        sup, changes = self._sup, self._changes
        if sup.session is None:
            raise UpstreamUnavailable(self._label, sup.unavailable_reason())
        held = uri in changes.subscriptions()  # for another host: kept if this fails
        changes.add(uri)
        if sup.is_modern:
            changes.relisten()
            refused = await changes.wait_listening(uri, within=self._timeout)
            if refused is not None:
                if not held:
                    changes.discard(uri)
                raise UpstreamRequestFailed(
                    self._label, f"did not accept a subscription to '{uri}': {refused}")
            return

        async def op(session: ClientSession) -> Any:
            changes.asking(session, uri)
            return await subscribe_on(session, uri)

        try:
            await self._requests.bounded(f"resources/subscribe '{uri}'", None, op)
        except BaseException:
            if not held:
                changes.discard(uri)
            raise

    async def unsubscribe(self, uri: str) -> None:
        self._changes.discard(uri)
        if self._sup.is_modern:
            self._changes.relisten()
            return
        session = self._sup.session
        # Not asked of this session (none now, or a new one whose replay of the kept
        # subscriptions had not reached it): nothing to undo there, and the replay
        # skips it.  Sent anyway, a server was told to let go of what it never held.
        if session is None or not self._changes.was_asked(session, uri):
            return

        async def op(session: ClientSession) -> Any:
            return await unsubscribe_on(session, uri)

        await self._requests.bounded(f"resources/unsubscribe '{uri}'", None, op)
