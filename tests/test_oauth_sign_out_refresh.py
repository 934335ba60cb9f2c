"""Signing out (or removing the server) while a refresh of the same sign-in is under
way (upstream/bearer.py ``TokenSlot``'s sign-out generation, upstream/oauth_grant.py's
conditional save): the refresh's answer, come back after the sign-out, neither stores
the sign-in again nor puts its token back in use.  Real loopback authorization server
and protected MCP server (tests/oauth_servers.py), a real SQLite file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, running, sign_in, state_is

pytestmark = pytest.mark.anyio


class HeldToken:
    """While ``holding``, the token endpoint's answer waits (``arrived`` set) for
    ``release`` before it is sent: the refresh is done at the authorization server,
    its answer not yet back at the gateway."""

    def __init__(self) -> None:
        self.holding = False
        self.arrived, self.release = anyio.Event(), anyio.Event()

    def around(self, app: Any) -> Any:
        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if not (self.holding and scope["type"] == "http" and scope["path"] == "/token"):
                await app(scope, receive, send)
                return
            sent: list[Any] = []

            async def keep(message: Any) -> None:
                sent.append(message)

            await app(scope, receive, keep)
            self.arrived.set()
            await self.release.wait()
            for message in sent:
                await send(message)
        return asgi


@pytest.mark.parametrize("how", ["gateway_sign_out", "gateway_remove_server"])
async def test_a_refresh_under_way_does_not_undo_a_sign_out(tmp_path: Path, how: str) -> None:
    held = HeldToken()
    async with signing_upstream(fault=held) as (provider, url):  # type: ignore[arg-type]
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(client))
            await state_is(gw, UpstreamState.READY)
            held.holding = True
            provider.access_tokens.clear()  # 'expired': the next call refreshes
            done = anyio.Event()

            async def call() -> None:
                with contextlib.suppress(Exception):  # refused: signed out meanwhile
                    await client.call_tool("tickets_add", {"a": 1, "b": 1})
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await held.arrived.wait()  # the refresh is at the authorization server
                await client.call_tool(how, {"name": "tickets"})
                held.release.set()
                await done.wait()
            assert await gw.sign_ins.book.load("tickets") is None  # not stored again
            if how == "gateway_sign_out":
                await state_is(gw, UpstreamState.SIGNED_OUT)
            for slot in gw.sign_ins.book.slots.values():
                assert slot.token is None  # its token is not back in use
