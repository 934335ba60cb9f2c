"""Retrying while the store is unreachable (``store/retry.py``): the backoff, the
callback, what ends the loop; and the call recorder holding a batch through an outage.
Waits are recorded by a stand-in ``anyio.sleep`` (no time is measured)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from fast_mcp_gateway.store import StoreUnavailable
from fast_mcp_gateway.store import retry as retry_module
from fast_mcp_gateway.store.retry import while_unavailable
from fast_mcp_gateway.telemetry.recorder import BatchWriter
from tests.fixtures import write_through

pytestmark = pytest.mark.anyio


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds ``while_unavailable`` asked to wait, in order (it does not wait)."""
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(retry_module, "anyio", SimpleNamespace(sleep=sleep))
    return asked


async def test_it_retries_with_doubling_waits_up_to_the_cap(waits: list[float]) -> None:
    attempts: list[int] = []
    seen: list[tuple[str, int]] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) <= 6:
            raise StoreUnavailable(f"down {len(attempts)}")
        return "written"

    result = await while_unavailable(flaky, first=0.1, most=1.0,
                                     before_wait=lambda e, n: seen.append((str(e), n)))
    assert result == "written" and len(attempts) == 7
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert seen == [(f"down {n}", n) for n in range(1, 7)]


async def test_other_errors_end_it_at_once(waits: list[float]) -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await while_unavailable(broken, first=0.1, most=2.0,
                                before_wait=lambda e, n: pytest.fail("not an outage"))
    assert calls == 1 and waits == []


async def test_a_long_outage_never_overflows_the_wait(waits: list[float]) -> None:
    left = 5000  # 2 ** 5000 would overflow a float

    async def down_for_long() -> None:
        nonlocal left
        left -= 1
        if left:
            raise StoreUnavailable("down")

    await while_unavailable(down_for_long, first=0.1, most=2.0)
    assert max(waits) == 2.0 and len(waits) == 4999


async def test_the_writer_holds_a_batch_through_an_outage(
        waits: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway")
    written: list[list[int]] = []
    outage = 3

    async def write(batch: list[int]) -> None:
        nonlocal outage
        if outage:
            outage -= 1
            raise StoreUnavailable("database at test is unreachable")
        written.append(list(batch))

    writer = BatchWriter[int](write, what="numbers", flush_interval=0)
    await write_through(writer, 1, 2)
    assert written == [[1, 2]] and writer.written == 2 and writer.failed_writes == 0
    assert len(waits) == 3 and not writer.store_unavailable
    # One warning for the outage (not one per attempt), one line (INFO: a recovery is
    # no problem) when the store is back.
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [m for m in said if "numbers held until the store is back" in m[1]] == [
        (logging.WARNING, "numbers held until the store is back: database at test is "
         "unreachable")], said
    assert (logging.INFO, "the store is back: writing numbers again") in said, said


async def test_the_change_feed_says_once_that_it_lost_the_store_and_reconnects(
        waits: list[float], caplog: pytest.LogCaptureFixture) -> None:
    """A database going away: one line saying what (the store's own words) and that the
    feed reconnects, then one when it is back; the feed keeps following."""
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway")
    import anyio

    from fast_mcp_gateway.store.records import ChangeBatch
    from tests.fixtures import make_gateway

    control = make_gateway({}).control
    outage = 3
    lost = ("PostgreSQL at gw@db:5432/gateway is unreachable (the server closed the "
            "connection: it stopped, restarted or ended the session); is the server "
            "running and the address right?")

    class Shared:
        """A shared store whose database is away for three attempts."""

        shared = True

        async def changes(self, since: int = 0, *, wait: float = 0.0) -> ChangeBatch:
            nonlocal outage
            if outage:
                outage -= 1
                raise StoreUnavailable(lost)
            if "store back after" in caplog.text:
                await anyio.sleep_forever()  # a long poll with nothing new
            return ChangeBatch(cursor=since)

        async def routes(self) -> list[object]:
            return []

        async def servers(self) -> list[object]:
            return []

        async def name_bindings(self) -> list[object]:
            return []

    control.store = Shared()  # type: ignore[assignment]
    async with anyio.create_task_group() as tg:
        await tg.start(control.follow_changes)
        assert await control.remote_applied.wait_until(
            lambda: "store back after" in caplog.text, 30)
        tg.cancel_scope.cancel()
    levels = [r.levelno for r in caplog.records if r.name == "fast_mcp_gateway.store"]
    assert levels == [logging.WARNING, logging.INFO], levels  # a recovery is no problem
    said = [r.getMessage() for r in caplog.records if r.name == "fast_mcp_gateway.store"]
    assert len(said) == 2, said  # the gateway's one line each way, not the feed's own
    assert said[0].startswith("store unreachable since ") and lost in said[0], said
    assert "retrying with backoff" in said[0] and "holds the call records" in said[0]
    assert said[1].startswith("store back after ") and "reconciling" in said[1], said
    assert len(waits) == 3  # one backoff wait per failed attempt
