"""Gateways on one store whose clocks disagree: lease ends and a taken round's deadline
are written and compared by the store's clock, never one gateway's against another's
(lease30).

The holder wrote its instance lease's end by its clock (+30 s) and the receiver of a
crossed round compared it with its own: a receiver 30 s ahead told every host "the
gateway instance ... is gone" for rounds that were fine; one behind waited its ask
timeout for a holder killed long before.  And a gateway ahead took a live lease over
(the alerts lease: two leaders).  Here the holder is a real ``serve`` whose wall clock
(``time.time``) is 60 s ahead or behind, the receiver a gateway with the true one, on a
real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
import yaml

from fast_mcp_gateway.admin import instance_lease
from fast_mcp_gateway.store import Store, open_store
from tests.fixtures import stdio_entry
from tests.pg import free_port
from tests.test_parked_rounds_crossing import ASKING, AUTH, answer, gateway
from tests.test_request_state import KEY, served
from tests.test_tasks import ALICE, post

pytestmark = pytest.mark.anyio
T = TypeVar("T")

SKEWS = [60.0, -60.0]  # the holder's clock ahead of the receiver's, and behind it
ASK = {"name": "asker_ask", "arguments": {"tag": "t"}}

# ``mcp-gateway`` with its wall clock ``argv[1]`` seconds off (every ``time.time()``).
SKEWED_CLI = [sys.executable, "-c",
              "import runpy, sys, time\n"
              "skew, real = float(sys.argv.pop(1)), time.time\n"
              "time.time = lambda: real() + skew\n"
              "runpy.run_module('fast_mcp_gateway', run_name='__main__', alter_sys=True)\n"]


@asynccontextmanager
async def skewed_holder(pg_url: str, tmp_path: Path, skew: float
                        ) -> AsyncIterator[tuple[subprocess.Popen[bytes], httpx2.AsyncClient]]:
    """A real ``serve`` (instance ``gw-a``) over HTTP on 127.0.0.1, its clock ``skew``
    seconds off, and a client of it; killed -9 at the end if it still runs."""
    config = tmp_path / "servers.yaml"
    entry = stdio_entry("asker.py", protocol="legacy")
    config.write_text(yaml.safe_dump({"gateway": {"auth": AUTH}, "servers": {"asker": entry}}))
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [*SKEWED_CLI, str(skew), "serve", "--transport", "http", "--port", str(port),
         "--config", str(config), "--db", pg_url, "--instance-id", "gw-a"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MCP_GATEWAY_REQUEST_STATE_KEYS": KEY}, start_new_session=True)
    try:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=90) as to_a:
            with anyio.fail_after(60):
                while True:
                    try:
                        if (await to_a.get("/health")).status_code == 200:
                            break
                    except httpx2.TransportError:
                        pass
                    assert proc.poll() is None, "the holder's serve exited"
                    await anyio.sleep(0.1)
            yield proc, to_a
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def asked_on(to_a: httpx2.AsyncClient) -> dict[str, Any]:
    asked = (await post(to_a, ALICE, "tools/call", ASK, ASKING))["result"]
    assert asked["resultType"] == "input_required", asked
    return dict(asked)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("skew", SKEWS)
async def test_crossed_rounds_are_served_whichever_clock_is_ahead(
        pg_url: str, tmp_path: Path, skew: float) -> None:
    """A round crossing to a holder 60 s ahead or behind is served (behind, the
    receiver read its lease as ended: "is gone"); the holder killed -9, the next round
    is told it is gone once its lease ends, within the receiver's ask timeout (ahead,
    the receiver read the lease as running 60 s longer: the ask timeout came first)."""
    entry = stdio_entry("asker.py", protocol="legacy")
    async with skewed_holder(pg_url, tmp_path, skew) as (holder, to_a):
        receiver = gateway("gw-b", pg_url, entry, ask_timeout=60)
        async with served(receiver, gateway("gw-c", pg_url, entry)) as (to_b, _):
            asked = await asked_on(to_a)
            done = await post(to_b, ALICE, "tools/call",
                              {**answer("asker_ask", asked, "Ada"), **ASK}, ASKING)
            assert done.get("result", {}).get("content", [{}])[0].get("text") \
                == "t:accept:Ada", done

            asked = await asked_on(to_a)
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
            told = json.dumps(await post(to_b, ALICE, "tools/call",
                                         {**answer("asker_ask", asked, "Eve"), **ASK},
                                         ASKING))
    assert "the gateway instance 'gw-a' that holds the question is gone" in told, told


@contextmanager
def clock_off(skew: float) -> Iterator[None]:
    """This process's wall clock ``skew`` seconds off meanwhile: another gateway's."""
    real = time.time
    time.time = lambda: real() + skew
    try:
        yield
    finally:
        time.time = real


async def with_clock_off(skew: float, call: Callable[[], Awaitable[T]]) -> T:
    with clock_off(skew):
        return await call()


@pytest.fixture(params=["sqlite", "postgres"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store gateways share: a SQLite file (one host) or a real PostgreSQL."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" \
        else f"sqlite://{tmp_path / 'gateway.db'}"
    opened = await open_store(url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.mark.parametrize("skew", SKEWS)
async def test_a_lease_runs_by_the_stores_clock(shared: Store, skew: float) -> None:
    """Gateway A holds a lease; B, its clock 60 s ahead, neither takes it over while it
    runs (it did: its now was past A's end) nor reads it as ended; B 60 s behind takes
    it once A stops renewing, when it ends (it waited 60 s more)."""
    store = shared
    assert await store.hold_lease("instance:gw-a", "gw-a", 30)
    assert await store.hold_lease("alerts", "gw-a", 30)
    assert not await with_clock_off(skew, lambda: store.hold_lease("alerts", "gw-b", 30))
    running = await with_clock_off(skew, lambda: instance_lease.others(store, "gw-b"))
    assert [lease.holder for lease in running] == ["gw-a"]

    assert await store.hold_lease("alerts", "gw-a", 0.5)  # A's last renewal: then gone
    with anyio.fail_after(20):
        while not await with_clock_off(  # noqa: ASYNC110 - a row: no event
                skew, lambda: store.hold_lease("alerts", "gw-b", 30)):
            await anyio.sleep(0.1)
    held = await store.lease("alerts")
    assert held is not None and held.holder == "gw-b" and held.expires_at > time.time() + 20


@pytest.mark.parametrize("skew", SKEWS)
async def test_a_taken_rounds_deadline_and_its_holders_lease_are_read_as_time_left(
        pg_url: str, skew: float) -> None:
    """The holder, its clock 60 s ahead or behind, holds its lease (30 s) and takes a
    round with 10 s left of its deadline: the receiver reads 30 s and 10 s left (at most)
    by the database's clock.  It compared the holder's times with its own clock: behind,
    the holder's lease read as ended and its deadline as missed."""
    from fast_mcp_gateway.store.postgres_rounds import rounds_of

    store = await open_store(pg_url)
    try:
        rounds = rounds_of(store)
        assert rounds is not None
        await with_clock_off(skew, lambda: store.hold_lease("instance:gw-a", "gw-a", 30))
        await rounds.post("round", "k1", "gw-a", "gw-b", "{}")
        taken = await with_clock_off(skew, lambda: rounds.take_round(
            "k1", "gw-a", lambda _payload: time.time() + 10))
        assert taken is not None
        state = await rounds.state("k1", "gw-a")
        assert not state.posted and not state.replied
        assert state.lease_left is not None and 0 < state.lease_left <= 30, state
        assert state.until_left is not None and 0 < state.until_left <= 10, state
        await rounds.clear("k1")
    finally:
        await store.close()
