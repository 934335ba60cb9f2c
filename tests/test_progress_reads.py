"""A resource read or prompt get that reports progress is alive, as a tool call is
(``upstream/deadline.py``): each progress gives it ``timeouts.call`` again, up to
``timeouts.max_total``, and the host that asked for progress gets it.

Both had a fixed ``timeouts.call`` (``Requests.bounded``): the gateway sent no progress
token, so the upstream reported nothing, and a read that took longer than the call
timeout was cut off (and, being idempotent, run again) however steadily it progressed.

The upstream is ``tests/servers/ticker.py`` (a real process): its ``ticker://work``
resource and ``work`` prompt report progress n only once the test writes ``tick-n``.
No sleeps and no measured times: a ``clock_hang`` call ending in its 1 s timeout is the
proof that 1 s passed; three pass while the read (``timeouts.call`` 2.5 s) runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client

from tests.fixtures import WITHIN, make_gateway, stdio_entry, until
from tests.test_progress_deadline import events

pytestmark = pytest.mark.anyio

NO_RETRY = {"attempts": 1}


def gateway_of(tmp: Path) -> Any:
    for name in ("work", "clock"):
        (tmp / name).mkdir()
    return make_gateway({
        "work": {**stdio_entry("ticker.py", str(tmp / "work")), "timeouts": {"call": 2.5},
                 "retry": NO_RETRY},
        "clock": {**stdio_entry("ticker.py", str(tmp / "clock")), "timeouts": {"call": 1},
                  "retry": NO_RETRY},
    })


Send = Callable[[Client[Any], Callable[..., Awaitable[None]]], Awaitable[Any]]


async def read(client: Client[Any], on_progress: Callable[..., Awaitable[None]]) -> Any:
    return await client.session.send_request(
        types.ReadResourceRequest(params=types.ReadResourceRequestParams(
            uri="ticker://work/work")),
        types.ReadResourceResult, progress_callback=on_progress)


async def get(client: Client[Any], on_progress: Callable[..., Awaitable[None]]) -> Any:
    return await client.session.send_request(
        types.GetPromptRequest(params=types.GetPromptRequestParams(name="work_work")),
        types.GetPromptResult, progress_callback=on_progress)


@pytest.mark.parametrize("send", [read, get], ids=["resources/read", "prompts/get"])
async def test_progress_keeps_a_read_alive_and_reaches_its_host(tmp_path: Path,
                                                                send: Send) -> None:
    gateway = gateway_of(tmp_path)
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    answer: list[Any] = []
    async with Client(gateway.server) as client:
        async def reading() -> None:
            answer.append(await send(client, on_progress))

        with anyio.fail_after(WITHIN):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reading)
                await until(lambda: "started" in events(tmp_path / "work"))
                for n in (1, 2, 3):
                    (tmp_path / "work" / f"tick-{n}").touch()
                    await until(lambda n=n: n in seen)  # relayed: the deadline moved
                    result = await client.call_tool_mcp("clock_hang", {})  # 1 s passes
                    assert result.is_error
                    assert "did not answer within 1s" in result.content[0].text  # type: ignore[union-attr]
                (tmp_path / "work" / "finish").touch()
    (result,) = answer
    text = (result.contents[0].text if isinstance(result, types.ReadResourceResult)
            else result.messages[0].content.text)
    assert text == "finished after 3 ticks", result
    assert events(tmp_path / "work") == ["started", "progressed 1", "progressed 2",
                                         "progressed 3"]


async def test_a_read_that_stops_reporting_ends_at_its_call_timeout(tmp_path: Path) -> None:
    gateway = gateway_of(tmp_path)
    (tmp_path / "work" / "tick-1").touch()  # one progress, then nothing
    async with Client(gateway.server) as client:
        with anyio.fail_after(WITHIN), pytest.raises(Exception) as failed:
            await client.read_resource_mcp("ticker://work/work")
    assert "resources/read 'ticker://work' reported progress 1 time, then nothing for " \
           "2.5s (timeouts.call;" in str(failed.value), failed.value
    await until(lambda: "cancelled" in events(tmp_path / "work"))


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

        with anyio.fail_after(WITHIN):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool_mcp, "work_work", {})
                await until(lambda: "started" in events(tmp_path / "work"))
                tg.start_soon(drain)
                await until(lambda: gateway.manager.get("work").draining == {0})
                for n in (1, 2, 3):  # 3 s in all: past the call timeout of 2.5 s
                    (tmp_path / "work" / f"tick-{n}").touch()
                    await until(lambda n=n: f"progressed {n}" in events(tmp_path / "work"))
                    assert (await client.call_tool_mcp("clock_hang", {})).is_error  # 1 s
                await anyio.lowlevel.checkpoint()
                assert not drained, drained  # still waiting for the call
                assert replica.statistics().inflight == 1
                (tmp_path / "work" / "finish").touch()
    (status,) = drained
    assert status.draining and status.inflight == 0, status
