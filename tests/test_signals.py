"""``ChangeSignal``: waiters wake on every change; nothing is made while nobody waits."""

from __future__ import annotations

import anyio
import pytest

from fast_mcp_gateway.upstream.signals import ChangeSignal

pytestmark = pytest.mark.anyio


async def test_a_waiter_wakes_on_the_change_that_makes_its_condition_hold() -> None:
    signal, state = ChangeSignal(), {"n": 0}
    signal.notify()  # nobody waits: nothing to wake, nothing kept
    assert signal._event is None
    results: list[bool] = []

    async def waiter(target: int) -> None:
        results.append(await signal.wait_until(lambda: state["n"] >= target, within=3600))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, 2)
        tg.start_soon(waiter, 1)
        await anyio.wait_all_tasks_blocked()
        for _ in range(2):
            state["n"] += 1
            signal.notify()
            await anyio.wait_all_tasks_blocked()
    assert results == [True, True]
    assert signal._event is None  # the last change woke the last waiter


async def test_a_condition_that_never_holds_gives_false_at_the_deadline() -> None:
    signal = ChangeSignal()
    assert await signal.wait_until(lambda: True, within=0) is True
    assert await signal.wait_until(lambda: False, within=0) is False
