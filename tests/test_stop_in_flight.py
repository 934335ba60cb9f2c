"""Admin operations still running when the gateway stops: waited for, then spilled.

An operation runs from its store write through its audit in ``finishing`` (shielded),
and uvicorn does not wait for a request it cancelled at a stop: such an operation went
on while the gateway closed its store, and its audit entry was dropped without a word
(``ControlPlane.audit`` with no store).  Now the stop waits for it (bounded:
``InFlight.grace``), names what is still running in one line, spills its entry as
unfinished when the store closes, and spills its own entry when it ends after that:
the next start with the store writes both.  In process, on a real SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.admin import history
from fast_mcp_gateway.admin.context import Actor
from fast_mcp_gateway.admin.in_flight import UNFINISHED
from fast_mcp_gateway.gateway import Gateway
from fast_mcp_gateway.store import open_store
from tests.fixtures import WITHIN, alpha_server, make_gateway, memory_entry, until

pytestmark = pytest.mark.anyio

OPS = Actor("ops", surface="rest")


def _gateway(db: Path) -> Gateway:
    return make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                        db=str(db), instance_id="gw-1")


def _spilled(folder: Path) -> list[dict[str, Any]]:
    """The audit entries of every spool file in ``folder``."""
    entries = []
    for path in sorted(folder.glob("held-*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if isinstance(record.get("audit"), dict):  # the first line counts them
                entries.append(record["audit"])
    return entries


async def test_an_operation_outliving_the_stop_is_named_and_spilled_then_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway")
    spool = tmp_path / "spool"
    monkeypatch.setenv("MCP_GATEWAY_SPOOL_DIR", str(spool))
    db = tmp_path / "g.db"
    gateway = _gateway(db)
    gateway.control.in_flight.grace = 0  # the stop does not wait: the test holds it
    written, go_on, done = anyio.Event(), anyio.Event(), anyio.Event()
    outcome: list[Any] = []

    async def clear() -> None:
        try:
            outcome.append(await history.inspector_clear(gateway.control, OPS))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)
        done.set()

    async with anyio.create_task_group() as tg:
        async with gateway.server._lifespan_manager():
            store = gateway.store
            assert store is not None
            clear_inspections = store.clear_inspections

            async def then_held(server: str | None) -> int:
                removed = await clear_inspections(server)
                written.set()
                await go_on.wait()  # the operation outlives the stop here
                return removed

            monkeypatch.setattr(store, "clear_inspections", then_held)
            tg.start_soon(clear)
            await written.wait()
        # Stopped, the store closed, the operation still running: named, and spilled.
        try:
            assert not done.is_set()
            said = [r.getMessage() for r in caplog.records]
            still = [m for m in said if "still running after 0 s" in m]
            assert len(still) == 1 and "inspector_clear by ops" in still[0], said
            assert [(e["action"], e["actor"], e["result"]) for e in _spilled(spool)] == [
                ("inspector_clear", "ops", UNFINISHED)]
        finally:
            go_on.set()  # shielded (``finishing``): the task group waits for it
        await done.wait()
    # It ended after the store closed: its own entry is spilled at once, not dropped.
    assert outcome == [{"removed": 0}]
    assert [(e["action"], e["result"]) for e in _spilled(spool)] == [
        ("inspector_clear", UNFINISHED), ("inspector_clear", "0 entries removed")]
    assert any("an admin operation ended after the store closed; spilled" in r.getMessage()
               for r in caplog.records)
    # The next start with the store writes both (the spool's replay: a background task).
    again = _gateway(db)
    async with again.server._lifespan_manager():
        store = again.store
        assert store is not None
        with anyio.fail_after(WITHIN):
            while len(await store.audit()) < 2:  # noqa: ASYNC110 - no event tells us
                await anyio.sleep(0.02)
    check = await open_store(db)
    try:
        entries = await check.audit()
    finally:
        await check.close()
    assert sorted((e.action, e.actor, e.result) for e in entries) == [
        ("inspector_clear", "ops", "0 entries removed"), ("inspector_clear", "ops", UNFINISHED)]
    assert not list(spool.glob("held-*.jsonl"))


async def test_an_operation_that_ends_within_the_grace_is_written_before_the_store_closes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway")
    spool = tmp_path / "spool"
    monkeypatch.setenv("MCP_GATEWAY_SPOOL_DIR", str(spool))
    db = tmp_path / "g.db"
    gateway = _gateway(db)
    gateway.control.in_flight.grace = 600  # a bound only: the operation ends first
    written, go_on = anyio.Event(), anyio.Event()

    async with anyio.create_task_group() as tg, gateway.server._lifespan_manager():
        store = gateway.store
        assert store is not None
        clear_inspections = store.clear_inspections

        async def then_held(server: str | None) -> int:
            removed = await clear_inspections(server)
            written.set()
            await go_on.wait()
            return removed

        monkeypatch.setattr(store, "clear_inspections", then_held)
        tg.start_soon(history.inspector_clear, gateway.control, OPS)
        await written.wait()

        async def release_once_waited() -> None:
            waiting = ("stopping: waiting up to 600 s for 1 admin operation(s) in flight: "
                       "inspector_clear by ops")
            try:  # the stop's line, logged as it starts waiting
                await until(lambda: any(waiting in r.getMessage() for r in caplog.records))
            finally:
                go_on.set()

        tg.start_soon(release_once_waited)
        # The stop waited for it: written into the store, nothing spilled.
    assert not list(spool.glob("held-*.jsonl"))
    assert not any("still running" in r.getMessage() for r in caplog.records)
    check = await open_store(db)
    try:
        entries = await check.audit()
    finally:
        await check.close()
    assert [(e.action, e.actor, e.result) for e in entries] == [
        ("inspector_clear", "ops", "0 entries removed")]


async def test_an_operation_spilled_by_the_hard_exit_is_not_spilled_again_by_the_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve's hard-exit backstop (a thread, at three ``stop_grace``) spills an operation
    still running as unfinished while the event loop may still be stopping: the stop's
    own spill, when the store closed next, held the same operation again (a new uid),
    and the next start wrote two 'unfinished' entries of one operation (found in
    review).  Whoever spills it first spills it; the other does not."""
    from fast_mcp_gateway.cli.serve import _spill_in_flight

    spool = tmp_path / "spool"
    monkeypatch.setenv("MCP_GATEWAY_SPOOL_DIR", str(spool))
    gateway = _gateway(tmp_path / "g.db")
    gateway.control.in_flight.grace = 0  # neither waits: the test holds the operation
    written, go_on, done = anyio.Event(), anyio.Event(), anyio.Event()

    async def clear() -> None:
        with contextlib.suppress(Exception):
            await history.inspector_clear(gateway.control, OPS)
        done.set()

    async with anyio.create_task_group() as tg:
        async with gateway.server._lifespan_manager():
            store = gateway.store
            assert store is not None
            clear_inspections = store.clear_inspections

            async def then_held(server: str | None) -> int:
                removed = await clear_inspections(server)
                written.set()
                await go_on.wait()
                return removed

            monkeypatch.setattr(store, "clear_inspections", then_held)
            tg.start_soon(clear)
            await written.wait()
            # The backstop's thread spills it while the loop has not stopped yet.
            assert await anyio.to_thread.run_sync(_spill_in_flight, gateway) == 1
            assert [e["result"] for e in _spilled(spool)] == [UNFINISHED]
        try:
            assert [e["result"] for e in _spilled(spool)] == [UNFINISHED]  # once
        finally:
            go_on.set()
        await done.wait()


def test_one_setting_sets_every_grace_of_a_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``stop_grace`` (``MCP_GATEWAY_STOP_GRACE``) is the wait for admin operations in
    flight and uvicorn's for HTTP requests; the hard exit comes after three of them.
    They were two constants of 5 s and one of 15 s, set apart."""
    from fast_mcp_gateway.cli import serve
    from fast_mcp_gateway.config.settings import GatewaySettings
    from fast_mcp_gateway.http.serving import uvicorn_server

    monkeypatch.setenv("MCP_GATEWAY_STOP_GRACE", "2")
    assert GatewaySettings().stop_grace == 2
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           stop_grace=2.0)
    assert gateway.control.in_flight.grace == 2
    server = uvicorn_server(gateway.http_app(), gateway.settings)
    assert server.config.timeout_graceful_shutdown == 2
    assert serve.hard_exit_after(gateway.settings) == 6


@pytest.mark.parametrize("grace", [0.2, 0.5, 1.0, 2.5, 5.0])
def test_the_hard_exit_comes_after_both_graces_of_a_stop(grace: float) -> None:
    """The hard exit leaves the rest of the stop time after uvicorn's grace (whole
    seconds) and the wait for admin operations: at ``3 * stop_grace`` a value under a
    second (0.2) made it the stop itself, cutting requests uvicorn still waited for."""
    from fast_mcp_gateway.cli import serve
    from fast_mcp_gateway.http.serving import uvicorn_server

    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           stop_grace=grace)
    requests = uvicorn_server(gateway.http_app(), gateway.settings).config
    waited = requests.timeout_graceful_shutdown + gateway.control.in_flight.grace
    assert serve.hard_exit_after(gateway.settings) >= waited + grace


async def test_one_stop_waits_one_grace_for_admin_operations(tmp_path: Path) -> None:
    """A stop asks twice (over HTTP as the MCP sessions end, then the provider's
    ``before_stop``; over stdio at the host's EOF, then ``before_stop``): the second
    waited ``grace`` again, so an operation outliving the servers' stop held the stop
    for two graces after uvicorn's, and the hard exit came as the second ended.  Here
    the grace is raised after the first wait: the second takes only what is left of
    the first's bound (none), where it waited 600 s."""
    gateway = _gateway(tmp_path / "g.db")
    in_flight = gateway.control.in_flight
    in_flight.grace = 0.01
    with in_flight.running(OPS, "add_server", "slow"):  # never ends within the stop
        with anyio.fail_after(WITHIN):
            assert [r.action for r in await in_flight.ended()] == ["add_server"]
            in_flight.grace = 600
            assert [r.action for r in await in_flight.ended()] == ["add_server"]
    # Once none is running, a later stop waits its own grace again: it sees one end.
    left: list[list[Any]] = []

    async def stop() -> None:
        left.append(await in_flight.ended())

    with anyio.fail_after(WITHIN):
        async with anyio.create_task_group() as tg:
            with in_flight.running(OPS, "remove_server", "slow"):
                tg.start_soon(stop)
                await anyio.wait_all_tasks_blocked()  # the stop is waiting
    assert left == [[]]
