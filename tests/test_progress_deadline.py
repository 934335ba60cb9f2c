"""A call that reports progress is alive: each progress pushes its deadline out by
``timeouts.call``, up to ``timeouts.max_total`` (upstream/deadline.py).

Found with server-everything's ``trigger-long-running-operation``: a read-only call that
kept reporting progress was ended at ``timeouts.call`` and run again by the retry policy,
three times.  Each test runs on one path: the full path (the SDK's session), the stdio
express lane (``serve``; the stdio tap) and the HTTP lane (the HTTP tap to a 2026-07-28
upstream).  The upstream is ``tests/servers/ticker.py`` (a real process): its ``work``
reports progress n only once the test writes ``tick-n``.

No sleeps and no measured times, and no window that must hold against the machine's
speed but one each step of progress must arrive within (2 s or more for a round trip of
a few ms): the test writes each tick as soon as the last was reported, so the upstream
progresses as fast as the machine lets it.  The only proof that time passed is a window
that expires: ``work`` runs beside a twin, ``stall``, with the same ``timeouts.call``,
which reports once and then nothing, so it times out; ``work`` is still running when
the twin's two attempts have timed out (twice its call timeout), so progress extended it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from fast_mcp_gateway.config.timeouts import max_total_for
from fast_mcp_gateway.http.lane import HttpLane
from fast_mcp_gateway.policies.retry import FailureKind, RetryPolicy
from fast_mcp_gateway.upstream.http_tap import HttpTap
from tests import npm_tools
from tests.fixtures import PY, SERVERS, WITHIN, make_gateway, serve_http, stdio_entry, until
from tests.test_asks_routing import http_process
from tests.test_ecosystem import everything_entry
from tests.test_http_lane import body_of, headers_of

pytestmark = pytest.mark.anyio

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
Call = Callable[[str, Progress | None], Awaitable[tuple[bool, str]]]
NO_RETRY = {"attempts": 1}


def entries(tmp: Path, target: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The three servers, each a ticker with its own folder (``folders``): ``work``
    (call 2.5 s), its twin ``stall`` (call 2.5 s, two attempts), ``total`` (call 2 s,
    max_total 2.5 s, the default three attempts).  A window that must not expire (a
    step of progress) is 2 s or more: a loaded machine's hiccups stay inside it."""
    return {
        "work": {**target(tmp / "work"), "timeouts": {"call": 2.5}, "retry": NO_RETRY},
        "stall": {**target(tmp / "stall"), "timeouts": {"call": 2.5},
                  "retry": {"attempts": 2, "backoff": {"initial": 0.01, "max": 0.01}}},
        "total": {**target(tmp / "total"), "timeouts": {"call": 2, "max_total": 2.5},
                  "retry": {"backoff": {"initial": 0.01, "max": 0.01}}},
    }


def folders(tmp: Path) -> list[Path]:
    made = [tmp / name for name in ("work", "stall", "total")]
    for folder in made:
        folder.mkdir()
    return made


def events(folder: Path) -> list[str]:
    path = folder / "events"
    return path.read_text().splitlines() if path.exists() else []


async def exercise(call: Call, tmp: Path) -> None:
    """The three rules, through ``call`` (one host on one path)."""
    # 1. Progress keeps a call alive past its timeouts.call: ``work`` reports a step as
    # soon as the last was relayed, and runs on while its twin ``stall`` (same
    # timeouts.call, started after it) reports once, then nothing, and times out twice.
    # 2. That is the stalled call's end: timeouts.call after its last progress, saying
    # so, and retried like any timed-out read-only call.
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    answer: list[tuple[bool, str]] = []
    stalled: list[tuple[bool, str]] = []

    async def work() -> None:
        answer.append(await call("work_work", on_progress))

    async def stall() -> None:
        stalled.append(await call("stall_work", None))

    (tmp / "stall" / "tick-1").touch()  # each attempt reports once, then nothing
    n = 0
    with anyio.fail_after(WITHIN):
        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            await until(lambda: "started" in events(tmp / "work"))  # its deadline runs
            tg.start_soon(stall)
            while not stalled:  # the next step once the last was relayed
                n += 1
                (tmp / "work" / f"tick-{n}").touch()
                await until(lambda n=n: n in seen or answer)
                assert not answer, answer  # ended before its twin: progress did not count
            (tmp / "work" / "finish").touch()
    assert answer == [(False, f"finished after {n} ticks")], answer
    assert events(tmp / "work") == ["started", *(f"progressed {i}" for i in range(1, n + 1))]
    ((is_error, text),) = stalled
    assert is_error, text
    assert "tools/call 'work' reported progress 1 time, then nothing for 2.5s " \
           "(timeouts.call;" in text, text
    assert text.endswith("(the last of 2 attempts: timeout, timeout)"), text
    await until(lambda: events(tmp / "stall").count("cancelled") == 2)
    assert events(tmp / "stall").count("started") == 2

    # 3. One that keeps reporting ends at timeouts.max_total, saying so, and is not
    # run again (a retry would start it over).
    outcome: list[tuple[bool, str]] = []

    async def total() -> None:
        outcome.append(await call("total_work", None))
        tg.cancel_scope.cancel()

    with anyio.fail_after(WITHIN):
        async with anyio.create_task_group() as tg:
            (tmp / "total" / "tick-1").touch()
            tg.start_soon(total)
            n = 1
            while True:  # the next tick once the last was reported
                await until(lambda n=n: f"progressed {n}" in events(tmp / "total"))
                n += 1
                (tmp / "total" / f"tick-{n}").touch()
    ((is_error, text),) = outcome
    assert is_error, text
    assert "tools/call 'work' was still reporting progress when it reached the server's " \
           "timeouts.max_total of 2.5s (the request was cancelled upstream); if it needs " \
           "longer, raise timeouts.max_total" in text, text
    assert "attempts" not in text, text
    await until(lambda: "cancelled" in events(tmp / "total"))
    assert events(tmp / "total").count("started") == 1


def text_of(result: Any) -> tuple[bool, str]:
    return bool(result.is_error), result.content[0].text


def stdio_target(folder: Path) -> dict[str, Any]:
    return stdio_entry("ticker.py", str(folder))


async def test_on_the_full_path(tmp_path: Path) -> None:
    folders(tmp_path)
    gateway = make_gateway(entries(tmp_path, stdio_target))
    async with Client(gateway.server) as client:
        async def call(name: str, on_progress: Progress | None) -> tuple[bool, str]:
            return text_of(await client.call_tool_mcp(name, {},
                                                      progress_handler=on_progress))

        await exercise(call, tmp_path)


async def test_on_the_stdio_express_lane(tmp_path: Path) -> None:
    folders(tmp_path)
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": entries(tmp_path, stdio_target)}))
    transport = StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config",
                                    str(config), "--startup-wait", "30", "--no-db"],
                               env={**os.environ, "MCP_GATEWAY_LOG_LEVEL": "DEBUG"},
                               keep_alive=False, log_file=tmp_path / "gateway.log")
    async with Client(transport, mode="legacy") as client:
        async def call(name: str, on_progress: Progress | None) -> tuple[bool, str]:
            return text_of(await client.call_tool_mcp(name, {},
                                                      progress_handler=on_progress))

        assert "work_work" in {t.name for t in await client.list_tools()}
        await exercise(call, tmp_path)
    log = (tmp_path / "gateway.log").read_text()
    assert "express lane: tools/call work_work " in log, log[-2000:]


# Three upstream processes start one after the other, then a gateway: on a loaded
# two-core machine that alone took most of the default 60 s.
@pytest.mark.timeout(180)
async def test_on_the_http_lane(tmp_path: Path) -> None:
    urls: dict[Path, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        for folder in folders(tmp_path):  # a process each: its own events
            port = folder.with_suffix(".port")
            urls[folder] = await stack.enter_async_context(
                http_process(port, SERVERS / "ticker.py", folder, "http", port))

        def target(folder: Path) -> dict[str, Any]:
            return {"url": urls[folder], "protocol": "2026-07-28"}

        gateway = make_gateway(entries(tmp_path, target), http_express_lane=True)
        app = gateway.http_app("http")
        lane = getattr(app.mcp_entry, "app", None)
        assert isinstance(lane, HttpLane) and lane.enabled
        async with serve_http(app) as base, \
                httpx2.AsyncClient(base_url=base, timeout=WITHIN) as http:
            async def call(name: str, on_progress: Progress | None) -> tuple[bool, str]:
                meta = {"progressToken": "p"} if on_progress is not None else None
                async with http.stream("POST", "/mcp", headers=headers_of(name, token=None),
                                       content=json.dumps(body_of(name, {}, meta))) as response:
                    async for line in response.aiter_lines():
                        data = line[len("data: "):] if line.startswith("data: ") else line
                        if not data.startswith("{"):
                            continue
                        message = json.loads(data)
                        if message.get("method") == "notifications/progress":
                            assert on_progress is not None
                            await on_progress(message["params"]["progress"], None, None)
                        elif "result" in message:
                            result = message["result"]
                            return bool(result.get("isError")), result["content"][0]["text"]
                raise AssertionError(f"no result for {name}")

            before = lane.served
            await exercise(call, tmp_path)
            assert lane.served > before
            tap = gateway.manager.services["work"].replicas[0]._sup.tap
            assert isinstance(tap, HttpTap) and tap.served >= 1


def test_a_max_total_below_call_is_refused_naming_both(tmp_path: Path) -> None:
    from fast_mcp_gateway.config.loader import parse_config
    from fast_mcp_gateway.errors import ConfigError

    with pytest.raises(ConfigError) as own:
        parse_config({"servers": {"s": {"command": "x", "timeouts": {"call": 30,
                                                                     "max_total": 10}}}})
    assert "timeouts.max_total (10s) is below timeouts.call (30s)" in str(own.value)
    assert "set it to 30 or more" in str(own.value)
    with pytest.raises(ConfigError) as inherited:
        parse_config({"gateway": {"timeouts": {"call": 60}},
                      "servers": {"s": {"command": "x", "timeouts": {"max_total": 20}}}})
    text = str(inherited.value)
    assert "'s'" in text and "timeouts.max_total" in text, text
    assert "(20s) is below gateway.timeouts.call (60s)" in text, text
    with pytest.raises(ConfigError) as shared:
        parse_config({"gateway": {"timeouts": {"max_total": 60}},
                      "servers": {"s": {"command": "x", "timeouts": {"call": 120}}}})
    assert "(60s, from gateway.timeouts) is below timeouts.call (120s)" in str(shared.value)
    # Equal turns the extension off; the default is ten calls.
    parse_config({"servers": {"s": {"command": "x", "timeouts": {"call": 5,
                                                                 "max_total": 5}}}})
    assert max_total_for(30, None, None) == 300
    assert max_total_for(30, None, 60) == 60      # gateway.timeouts.max_total
    assert max_total_for(30, 45, 60) == 45        # the server's own first
    assert max_total_for(90, None, 60) == 90      # never below the call timeout


def test_a_call_still_reporting_progress_is_never_retried() -> None:
    policy = RetryPolicy(attempts=3)
    assert policy.decide(1, FailureKind.TIMEOUT, idempotent=True).retry
    stopped = policy.decide(1, FailureKind.TIMEOUT, idempotent=True, still_running=True)
    assert not stopped.retry and "timeouts.max_total" in stopped.reason


@pytest.fixture(scope="module")
def npm_folder() -> Path:
    folder = npm_tools.ensure()
    if folder is None:
        pytest.skip("npm is not installed: cannot fetch the ecosystem's reference servers")
    return folder


async def test_server_everythings_long_running_operation_runs_to_its_end(
        npm_folder: Path) -> None:
    """The trial's case: 4 s in 8 steps of progress behind ``timeouts.call: 2`` (each step
    well inside it), read-only, so it used to be killed at 2 s and run again, 3 times."""
    entry = {**everything_entry(npm_folder), "timeouts": {"call": 2}}
    gateway = make_gateway({"everything": entry})
    steps: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append(progress)

    with anyio.fail_after(WITHIN):
        async with Client(gateway.server, mode="legacy") as client:
            result = await client.call_tool_mcp(
                "everything_trigger-long-running-operation", {"duration": 4, "steps": 8},
                progress_handler=on_progress)
            await until(lambda: len(steps) >= 8)  # the handler runs as its own task
    assert not result.is_error, result.content
    assert "Duration: 4 seconds, Steps: 8" in result.content[0].text  # type: ignore[union-attr]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
