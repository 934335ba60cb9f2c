"""The sign-in's callback listener (upstream/sign_in.py) takes no signal handlers: it
is a uvicorn without uvicorn's SIGINT/SIGTERM handlers (``sign_in_page.
callback_server``, as the dashboard's ``_QuietServer``).  uvicorn's own held them while
a sign-in waited: SIGTERM/Ctrl-C stopped the listener first and reached the gateway's
stop handling only once it had closed (re-raised), and sse-starlette, which finds "the"
server through the SIGTERM handler, read the listener's close at the end of every
sign-in as the gateway stopping (ending its SSE streams).  (A ``serve`` subprocess
with a sign-in pending stopped on either signal before and after: the listener
re-raised what it caught.)  Real loopback
authorization server and protected MCP server (tests/oauth_servers.py).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, running, sign_in, state_is

pytestmark = pytest.mark.anyio

SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def test_a_pending_sign_in_leaves_the_signal_handlers_alone(tmp_path: Path) -> None:
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            before = {sig: signal.getsignal(sig) for sig in SIGNALS}
            link = await sign_in(client)  # the listener serves from here
            for sig in SIGNALS:
                now = signal.getsignal(sig)
                assert now is before[sig], f"{sig.name}: {now!r} while a sign-in waits"
            await person_signs_in(link)
            await state_is(gw, UpstreamState.READY)
            assert {sig: signal.getsignal(sig) for sig in SIGNALS} == before
