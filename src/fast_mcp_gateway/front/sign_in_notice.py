"""A stdio gateway's host told, once, that a server is signed out (``auth:``).

A server with no usable sign-in at start-up is ``signed_out`` (upstream/sign_in.py): it
does not connect, and only the gateway's stderr said so -- which a desktop host keeps
in a log file nobody reads.  ``SignInNotices`` sends the host one
``notifications/message`` at ``warning`` per server (logger ``<server>.sign_in``)
in plain words (``notice_text``: the server, that someone must sign in, why, and how:
the ``gateway_sign_in`` tool, ``mcp-gateway login``; not the log's state change
"starting -> signed_out: ..."), once the host made its first request
(``FrontHub.host_known``: before it, a notice would reach nobody).  Told again only
after the server was signed in meanwhile.  Over HTTP there is no one host to tell: the
status surfaces say it (``upstream/sign_in_status.py``).
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import mcp_types as types

from fast_mcp_gateway.errors import SignInRequired
from fast_mcp_gateway.upstream.relay import STDIO_HOST

LOGGER = "sign_in"


def notice_text(server: str, why: str | None) -> str:
    """The host's words: plain, for a person (never the state change the log line
    says, "starting -> signed_out: ..."): which server, that someone must sign in, why
    when known, and the two ways."""
    return (f"The server '{server}' needs someone to sign in before the gateway can "
            f"connect to it{f' ({why})' if why else ''}.  To sign in, call the "
            f"gateway_sign_in tool with server '{server}' and open the link it returns, "
            f"or run 'mcp-gateway login {server}' in a terminal.")


class SignInNotices:
    """The notices of one gateway (module docstring); ``run`` in its task group."""

    def __init__(self, hub: Any, manager: Any) -> None:
        self._hub, self._manager = hub, manager
        self._told: set[str] = set()  # servers told of (until signed in again)
        self._due: dict[str, str] = {}  # server -> the words, not sent yet
        self._wake = anyio.Event()
        manager.on_transition(self._transition)

    def _transition(self, server: str, replica: str, status: str, detail: str | None) -> None:
        service = self._manager.services.get(server)
        if service is None or service.config.auth is None:
            return
        if status == "ready":
            self._told.discard(server)
            self._due.pop(server, None)
        elif status == "signed_out" and server not in self._told:
            self._told.add(server)
            self._due[server] = notice_text(server, SignInRequired.why_in(detail))
            self._wake.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        await self._hub.host_known.wait()
        while True:
            due, self._due = self._due, {}
            for server, text in due.items():
                self._hub.log(server, types.LoggingMessageNotificationParams(
                    level="warning", logger=LOGGER, data=text), STDIO_HOST)
            await self._wake.wait()
            self._wake = anyio.Event()
