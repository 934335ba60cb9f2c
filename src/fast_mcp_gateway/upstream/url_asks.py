"""Where an upstream's ``notifications/elicitation/complete`` goes: the host it asked.

A server that elicits in URL mode (MCP 2025-11-25: the user opens a link, the flow
goes on in the browser) may tell the client when that flow is done with
``notifications/elicitation/complete`` naming the ``elicitationId``, so that a host
closes its "waiting for the browser" view or retries the call.  The gateway relayed the
question and dropped the notification: nothing handled it (the SDK hands it to the
session's message handler, which knew list changes and resource updates only), so a
host connected directly was told and one behind the gateway never was
(``tests/test_url_elicitation_complete.py``, trial14).

``UrlAsks`` keeps, per replica (on its ``InFlight``), the host each URL-mode
question went to, by its id: an ``elicitation/create`` (``asked``, from
``HostRelay.on_elicitation``) or the ``elicitations`` of a call answered -32042, URL
elicitation required (``required``, from ``Requests.request``), and sends the
notification to that host alone (``completed``; ``handler`` wraps the session's message
handler): one whose id it never relayed, or whose host is gone, is dropped, never sent
to another host (the spec has clients ignore unknown ids; it is best effort).  At most
``LIMIT`` ids are kept (the oldest forgotten first: a server that never completes its
flows does not grow it).  A 2026-07-28 host has no stream to be told on outside its
request: its questions are not kept.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp.server.session import ServerSession

logger = logging.getLogger(__name__)

LIMIT = 256  # ids kept per upstream session's relay
TELL_WITHIN = 1.0  # the bound of telling a host

Tell = Callable[[str], Awaitable[None]]


class FrontCall(Protocol):
    """What of ``relay.FrontCall`` (which imports this) is used: the host it came from
    (an express lane call's has a ``lane`` too)."""

    @property
    def is_modern(self) -> bool: ...

    session: ServerSession | None


def teller(caller: FrontCall) -> Tell | None:
    """How to send ``caller``'s host the notification for an id; ``None`` when it has
    no stream for it (a 2026-07-28 host, or nothing to reach)."""
    if caller.is_modern:
        return None
    lane = getattr(caller, "lane", None)
    if lane is not None:  # the express lane's host: a line of its own
        async def by_lane(elicitation_id: str) -> None:
            await lane.notify("notifications/elicitation/complete",
                              {"elicitationId": elicitation_id})
        return by_lane
    session = caller.session
    if session is None:
        return None

    async def by_session(elicitation_id: str) -> None:
        await session.send_notification(types.ElicitCompleteNotification(
            params=types.ElicitCompleteNotificationParams(elicitation_id=elicitation_id)))
    return by_session


class UrlAsks:
    """The hosts asked in URL mode by one replica's sessions (module doc); kept by its
    ``InFlight``, which its relay and its requests share."""

    def __init__(self) -> None:
        self._hosts: OrderedDict[str, Tell] = OrderedDict()

    def asked(self, params: types.ElicitRequestParams, caller: FrontCall, label: str) -> None:
        """``caller``'s host is asked ``params``: kept if a URL-mode question."""
        if isinstance(params, types.ElicitRequestURLParams) and params.elicitation_id:
            self._keep(params.elicitation_id, caller, label)

    def required(self, data: Any, caller: FrontCall, label: str) -> None:
        """``caller``'s call was answered -32042 (URL elicitation required) with ``data``:
        each of its ``elicitations`` is kept, as the host opens them from the error."""
        asks = data.get("elicitations") if isinstance(data, dict) else None
        for ask in asks if isinstance(asks, list) else []:
            if isinstance(ask, dict) and isinstance(ask.get("elicitationId"), str):
                self._keep(ask["elicitationId"], caller, label)

    def _keep(self, elicitation_id: str, caller: FrontCall, label: str) -> None:
        tell = teller(caller)
        if tell is None:
            return
        self._hosts[elicitation_id] = tell
        self._hosts.move_to_end(elicitation_id)
        while len(self._hosts) > LIMIT:
            self._hosts.popitem(last=False)
        logger.debug("upstream %s: a host is asked URL elicitation %r", label,
                     elicitation_id[:100])

    async def completed(self, elicitation_id: str) -> None:
        """The server says the flow of ``elicitation_id`` is done: its host is told."""
        tell = self._hosts.pop(elicitation_id, None)
        if tell is None:
            logger.debug("elicitation %r completed, which no host here was asked; not "
                         "relayed", elicitation_id[:100])
            return
        # (on the session's reader: a host not reading holds it TELL_WITHIN at most)
        with contextlib.suppress(Exception), anyio.move_on_after(TELL_WITHIN):
            await tell(elicitation_id)  # (a host gone: nothing to tell)

    def handler(self, then: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """A session message handler: completions here, every other message to ``then``."""
        async def on_message(message: Any) -> None:
            if isinstance(message, types.ElicitCompleteNotification):
                await self.completed(message.params.elicitation_id)
            else:
                await then(message)
        return on_message
