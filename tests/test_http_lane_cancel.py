"""The HTTP lane's cancellation bookkeeping (``HttpLane._serve`` with ``HostGone``).

The host's leaving cancels the lane call's task once and the lane takes that cancel
back; any other cancellation (the server stopping) must go on, also when both come in
the same turn of the loop, and a host already gone leaves no cancel pending.  Each test
runs ``_serve`` on a fresh asyncio loop with the call itself replaced by an event.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from fast_mcp_gateway._compat import RoundStates
from fast_mcp_gateway.http.lane import HttpLane
from fast_mcp_gateway.http.slow_clients import HOST_GONE, HostGone


class _Lane(HttpLane):
    """``_serve`` as is; the call waits for ``release`` (or answers at once)."""

    def __init__(self) -> None:  # none of HttpLane's collaborators are reached
        self._loop = None
        self.states = RoundStates.ephemeral(None)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.answered = 0

    async def _answer(self, plan: Any, stream: Any, early: Any) -> tuple[int, bytes]:
        self.answered += 1
        self.entered.set()
        await self.release.wait()
        return 200, b"{}"


_PLAN: Any = SimpleNamespace(binding=None, request_id=7,  # what ``_serve`` reads of it
                             principal=SimpleNamespace(name="t"))


def _scope(gone: HostGone) -> dict[str, Any]:
    return {"type": "http", "extensions": {HOST_GONE: gone}}


async def _sent(messages: list[dict[str, Any]], message: dict[str, Any]) -> None:
    messages.append(message)


async def _serve(lane: _Lane, gone: HostGone, messages: list[dict[str, Any]]) -> None:
    await lane._serve(_PLAN, _scope(gone), _never, lambda m: _sent(messages, m))


async def _never() -> dict[str, Any]:
    raise AssertionError("the lane must not read receive() under HostGone")


def test_the_hosts_leaving_ends_the_call_quietly() -> None:
    async def main() -> int:
        lane, gone, messages = _Lane(), HostGone(), []
        task = asyncio.create_task(_serve(lane, gone, messages))
        await lane.entered.wait()
        gone.fire()
        await task  # returns: the lane's own cancel was taken back
        assert messages == [] and not task.cancelled()
        return task.cancelling()

    assert asyncio.run(main()) == 0


def test_an_outside_cancel_in_the_same_turn_as_the_leaving_goes_on() -> None:
    async def main() -> None:
        lane, gone, messages = _Lane(), HostGone(), []
        task = asyncio.create_task(_serve(lane, gone, messages))
        await lane.entered.wait()
        task.cancel()  # the server stopping ...
        gone.fire()    # ... and the host's connection lost, before the task runs again
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled() and messages == []

    asyncio.run(main())


def test_a_host_gone_before_the_call_leaves_no_cancel_pending() -> None:
    async def main() -> None:
        lane, gone, messages = _Lane(), HostGone(), []
        gone.fire()
        await _serve(lane, gone, messages)
        assert lane.answered == 0 and messages == []
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0)  # a pending cancel would be raised at this checkpoint

    asyncio.run(main())


def test_one_lane_serves_on_a_second_loop() -> None:
    lane = _Lane()

    async def main() -> list[dict[str, Any]]:
        lane.entered, lane.release = asyncio.Event(), asyncio.Event()
        lane.release.set()
        messages: list[dict[str, Any]] = []
        await _serve(lane, HostGone(), messages)
        return messages

    for _ in range(2):  # e.g. a test client that runs each request on its own loop
        messages = asyncio.run(main())
        assert messages[0]["status"] == 200 and messages[-1]["body"] == b"{}"
