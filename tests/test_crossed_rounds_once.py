"""A crossed round the holder hears of twice is served once and its holder keeps going
(front/crossing.py).

The holder hears of a round by its ``NOTIFY`` and by reading the rounds left
(``PgRounds.waiting``: on listening, then every ``CHECK_SECONDS``); a round posted as
that read runs is heard of both ways, and two tasks try to take it.  Each registered the
round's cancel scope under its key before taking it (review29): the one that found it
taken already deleted the other's, and the other's own deletion then raised
``KeyError``, which ended the instance's background tasks -- the holder gateway stopped
serving (``BackgroundTaskFailed``), and a host's cancel of the round was heard by no
one.  Two real gateways on a real PostgreSQL (tests/pg.py), served over HTTP on
127.0.0.1, as in tests/test_crossed_rounds_served.py."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from fast_mcp_gateway.front import crossing as crossing_module
from fast_mcp_gateway.store.postgres_rounds import PgRounds
from tests.fixtures import memory_entry
from tests.test_parked_rounds_crossing import (
    ALICE,
    ASKING,
    answer,
    asked_of,
    asking_upstream,
    gateway,
    listening,
    post,
    rows_left,
)
from tests.test_request_state import served

pytestmark = pytest.mark.anyio


async def test_a_round_heard_of_twice_is_served_once_and_the_holder_goes_on(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's first take of the round waits until it hears of the round again
    (its rounds left read again, as a ``NOTIFY`` and that read cross), so two takes
    run at once: one serves it, the other finds it taken.  The host is answered, and
    the holder still serves and still hears a cancel (it stopped, ``KeyError``)."""
    monkeypatch.setattr(crossing_module, "CHECK_SECONDS", 0.05)  # rounds left read again
    take_round, waiting = PgRounds.take_round, PgRounds.waiting
    taking: list[str] = []
    again = anyio.Event()

    async def crossed(self: PgRounds, key: str, *args: Any) -> Any:
        if not taking:  # the first take waits until the round is heard of again
            taking.append(key)
            await again.wait()
        return await take_round(self, key, *args)

    async def left(self: PgRounds, to: str) -> list[str]:
        keys: list[str] = await waiting(self, to)
        if taking and taking[0] in keys:  # (not taken yet: still left)
            again.set()
        return keys

    monkeypatch.setattr(PgRounds, "take_round", crossed)
    monkeypatch.setattr(PgRounds, "waiting", left)
    entry = memory_entry("asker", protocol="legacy")
    upstream = asking_upstream()
    first, second = (gateway(name, pg_url, entry, {"asker": upstream})
                     for name in ("gw-a", "gw-b"))
    async with served(first, second) as (to_a, to_b):
        await listening(first, second)
        asked = await asked_of(to_a, "asker_ask")
        with anyio.fail_after(60):
            done = await post(to_b, ALICE, "tools/call", answer("asker_ask", asked, "Ada"),
                              ASKING)
        assert done["result"]["content"][0]["text"] == "hello Ada", done
        assert again.is_set()
        crossing = first.parking.crossing
        assert crossing is not None
        with anyio.fail_after(60):  # (each take of it has ended)
            while crossing._serving:  # noqa: ASYNC110 - a dict: no event
                await anyio.sleep(0.02)
        assert first.failure is None, first.failure  # the holder still serves
        asked = await asked_of(to_a, "asker_ask")
        with anyio.fail_after(60):
            done = await post(to_b, ALICE, "tools/call", answer("asker_ask", asked, "Bo"),
                              ASKING)
        assert done["result"]["content"][0]["text"] == "hello Bo", done
        first.parking.stop()
    assert await rows_left(pg_url) == 0
