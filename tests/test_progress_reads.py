"""A resource read or prompt get that reports progress is alive, as a tool call is
(``upstream/deadline.py``): each progress gives it ``timeouts.call`` again, up to
``timeouts.max_total``, and the host that asked for progress gets it.

Both had a fixed ``timeouts.call`` (``Requests.bounded``): the gateway sent no progress
token, so the upstream reported nothing, and a read that took longer than the call
timeout was cut off (and, being idempotent, run again) however steadily it progressed.

The upstream is ``tests/servers/ticker.py`` (a real process): its ``ticker://work``
resource and ``work`` prompt report progress n only once the test writes ``tick-n``.
No sleeps and no measured times, and no window that must hold against the machine's
speed but one each step of progress must arrive within (2.5 s for a round trip of a few
ms): the test writes each tick as soon as the last was relayed.  The proof that time
passed is a window that expires: a twin on the server ``stall`` (the same
``timeouts.call``), started after the read, reports once, then nothing, and times out
while the read runs on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from tests.fixtures import WITHIN, make_gateway, stdio_entry, until
from tests.test_progress_deadline import events

pytestmark = pytest.mark.anyio

NO_RETRY = {"attempts": 1}


def gateway_of(tmp: Path) -> Any:
    """``work`` and its twin ``stall``: tickers with the same ``timeouts.call``, 2.5 s."""
    for name in ("work", "stall"):
        (tmp / name).mkdir()
    return make_gateway({name: {**stdio_entry("ticker.py", str(tmp / name)),
                                "timeouts": {"call": 2.5}, "retry": NO_RETRY}
                         for name in ("work", "stall")})


async def outlive_the_twin(tmp: Path, twin: Callable[[], Awaitable[Any]],
                           seen: Callable[[int], bool],
                           ended: Callable[[], object]) -> tuple[int, str]:
    """Ticks ``work`` (each step once ``seen(n)``) until ``twin()`` -- started now, on
    ``stall``, reporting once and then nothing -- has ended at its timeouts.call; fails
    if ``ended()`` first.  Returns the number of ticks and the twin's error.  The caller
    lets ``work`` finish at once: it has no more progress than the twin now."""
    (tmp / "stall" / "tick-1").touch()
    failed: list[BaseException] = []

    async def run_twin() -> None:
        try:
            await twin()
        except MCPError as exc:  # the twin's timeout, as the host sees it
            failed.append(exc)
        else:
            failed.append(AssertionError("the twin answered"))

    n = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_twin)
        while not failed:  # the next step once the last was relayed
            n += 1
            (tmp / "work" / f"tick-{n}").touch()
            await until(lambda n=n: seen(n) or ended())
            assert not ended(), "the progressing request ended before its stalled twin"
    (error,) = failed
    assert "reported progress 1 time, then nothing for 2.5s (timeouts.call;" in str(error), \
        error
    return n, str(error)


Send = Callable[[Client[Any], Callable[..., Awaitable[None]], str], Awaitable[Any]]


async def read(client: Client[Any], on_progress: Callable[..., Awaitable[None]],
               server: str) -> Any:
    return await client.session.send_request(
        types.ReadResourceRequest(params=types.ReadResourceRequestParams(
            uri=f"ticker://{server}/work")),
        types.ReadResourceResult, progress_callback=on_progress)


async def get(client: Client[Any], on_progress: Callable[..., Awaitable[None]],
              server: str) -> Any:
    return await client.session.send_request(
        types.GetPromptRequest(params=types.GetPromptRequestParams(name=f"{server}_work")),
        types.GetPromptResult, progress_callback=on_progress)


@pytest.mark.parametrize("send", [read, get], ids=["resources/read", "prompts/get"])
async def test_progress_keeps_a_read_alive_and_reaches_its_host(tmp_path: Path,
                                                                send: Send) -> None:
    """The read outlives its twin, which stops reporting and ends at its timeouts.call."""
    gateway = gateway_of(tmp_path)
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def ignore(progress: float, total: float | None, message: str | None) -> None:
        pass

    answer: list[Any] = []
    async with Client(gateway.server) as client:
        async def reading() -> None:
            answer.append(await send(client, on_progress, "work"))

        with anyio.fail_after(WITHIN):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reading)
                await until(lambda: "started" in events(tmp_path / "work"))  # it runs
                n, stalled = await outlive_the_twin(tmp_path, lambda: send(client, ignore, "stall"),
                                           lambda n: n in seen,  # relayed: deadline moved
                                           lambda: answer)
                (tmp_path / "work" / "finish").touch()
    (result,) = answer
    text = (result.contents[0].text if isinstance(result, types.ReadResourceResult)
            else result.messages[0].content.text)
    assert text == f"finished after {n} ticks", result
    what = "resources/read 'ticker://work'" if send is read else "prompts/get 'work'"
    assert f"{what} reported progress 1 time, then nothing for 2.5s" in stalled, stalled
    await until(lambda: "cancelled" in events(tmp_path / "stall"))
    assert events(tmp_path / "work") == ["started",
                                         *(f"progressed {i}" for i in range(1, n + 1))]


async def test_a_drain_waits_for_a_call_that_progress_keeps_alive(tmp_path: Path) -> None:
    """``gateway_drain_replica`` waits for the replica's calls in flight: it gave up at
    ``timeouts.call`` and answered with a call still in flight that was alive and
    allowed to run up to ``timeouts.max_total``."""
    from fast_mcp_gateway.admin import servers
    from fast_mcp_gateway.admin.context import LIBRARY

    gateway = gateway_of(tmp_path)
    drained: list[Any] = []
    async with Client(gateway.server) as client:
        replica = gateway.manager.get("work").replicas[0]

        async def drain() -> None:
            drained.append(await servers.drain_replica(gateway.control, LIBRARY, "work", 0))

        async def ignore(progress: float, total: float | None, message: str | None) -> None:
            pass

        with anyio.fail_after(WITHIN):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool_mcp, "work_work", {})
                await until(lambda: "started" in events(tmp_path / "work"))
                tg.start_soon(drain)
                await until(lambda: gateway.manager.get("work").draining == {0})
                # timeouts.call passes (the twin, started now, ends at its own) while the
                # call runs on, progressing
                await outlive_the_twin(
                    tmp_path, lambda: read(client, ignore, "stall"),
                    lambda n: f"progressed {n}" in events(tmp_path / "work"),
                    lambda: replica.statistics().inflight == 0)
                await anyio.lowlevel.checkpoint()
                assert not drained, drained  # still waiting for the call
                assert replica.statistics().inflight == 1
                (tmp_path / "work" / "finish").touch()
    (status,) = drained
    assert status.draining and status.inflight == 0, status
