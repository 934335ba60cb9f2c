"""Parked calls (``front/mrtr.Parking``) are bounded per caller too: a caller whose calls
ask questions it never answers held every place for the question's timeout, and every
other caller's asking calls failed with "... calls are already waiting" meanwhile."""

from __future__ import annotations

import anyio
import pytest

from fast_mcp_gateway.errors import UpstreamError
from fast_mcp_gateway.front.mrtr import Parking
from fast_mcp_gateway.http.access import ANONYMOUS
from fast_mcp_gateway.principal import LOCAL, Principal
from tests.test_mrtr_parking import FakeCall, Upstream, host

pytestmark = pytest.mark.anyio

MALLORY = Principal(name="mallory", scopes=frozenset({"tools"}))
ALICE = Principal(name="alice", scopes=frozenset({"tools"}))


async def test_one_caller_cannot_hold_every_place() -> None:
    parking = Parking(ask_timeout=60, max_parked=8)  # 2 places a caller
    async with anyio.create_task_group() as tg:
        await tg.start(parking.run)
        for _ in range(2):
            await parking.send(FakeCall(host(), principal=MALLORY), Upstream())
        with pytest.raises(UpstreamError, match="2 calls of this caller are already "
                                                "waiting for its answers"):
            await parking.send(FakeCall(host(), principal=MALLORY), Upstream())
        await parking.send(FakeCall(host(), principal=ALICE), Upstream())  # still served
        assert len(parking) == 3
        tg.cancel_scope.cancel()


async def test_a_gateways_only_caller_has_every_place() -> None:
    """stdio's host and the anonymous caller (no ``auth``) are the only caller there is:
    a quarter of the places would protect nobody, only cut it to 2 of 8 here."""
    for only in (LOCAL, ANONYMOUS):
        parking = Parking(ask_timeout=60, max_parked=8)
        async with anyio.create_task_group() as tg:
            await tg.start(parking.run)
            for _ in range(8):
                await parking.send(FakeCall(host(), principal=only), Upstream())
            with pytest.raises(UpstreamError, match="8 calls are already waiting"):
                await parking.send(FakeCall(host(), principal=only), Upstream())
            tg.cancel_scope.cancel()
