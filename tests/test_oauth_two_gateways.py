"""Two ``Gateway`` objects in one process (a library user's, or tests'), each on its own
store, signed in to the same server (upstream/bearer.py token slots, oauth_grant.py
``BOOK``): each keeps its own token and sign-in -- one signed out, the other is not;
one made after the other does not take over the first one's store.  Real loopback
authorization server and protected MCP server (tests/oauth_servers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, replica, sign_in, state_is

pytestmark = pytest.mark.anyio


async def test_two_gateways_in_one_process_keep_their_own_sign_ins(tmp_path: Path) -> None:
    async with signing_upstream() as (_provider, url):
        first = gateway(url, tmp_path / "first.db", free_port())
        second = gateway(url, tmp_path / "second.db", free_port())  # made after the first
        async with Client(first.server) as one:
            await state_is(first, UpstreamState.SIGNED_OUT)
            await person_signs_in(await sign_in(one))
            await state_is(first, UpstreamState.READY)  # its own store, not the second's
            assert (await one.call_tool("tickets_add", {"a": 1, "b": 1})).data == 2
            async with Client(second.server) as two:
                await state_is(second, UpstreamState.SIGNED_OUT)  # nobody signed it in
                await person_signs_in(await sign_in(two))
                await state_is(second, UpstreamState.READY)
                await one.call_tool("gateway_sign_out", {"name": "tickets"})
                await state_is(first, UpstreamState.SIGNED_OUT)
                assert replica(second).state is UpstreamState.READY  # not the second
                assert (await two.call_tool("tickets_add", {"a": 2, "b": 2})).data == 4
