"""Admin operations cancelled by their caller once their store write is made.

A host cancelling a ``tools/call``, an HTTP client gone from REST: the operation was cut
where the cancellation landed, after its store write -- a registration stored but not
running nor audited (this gateway skips its own changes in the change feed: applied only
at a reload or a restart), a server disabled in the store but still serving, a route
stored but not in the call path.  Now from its store write on an operation ends
(``admin.context.finishing``): applied and audited, and the cancellation lands after.
The store's write is followed by a checkpoint the test holds (as a PostgreSQL pool's
release, or anything after the statement, is), where the cancellation lands.  Real
SQLite files.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client, FastMCP

from fast_mcp_gateway.admin import routes, servers
from fast_mcp_gateway.admin.context import LIBRARY
from fast_mcp_gateway.store import Store
from fast_mcp_gateway.upstream.replica import UpstreamState
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry, until

pytestmark = pytest.mark.anyio


async def cancelled_after(store: Store, write: str, operation: Callable[[], Awaitable[Any]],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``operation`` and cancel it just after the store's ``write`` was made."""
    written, go_on = anyio.Event(), anyio.Event()
    original = getattr(store, write)

    async def then_a_checkpoint(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        written.set()
        await go_on.wait()  # where the caller's cancellation lands
        return result

    monkeypatch.setattr(store, write, then_a_checkpoint)
    async with anyio.create_task_group() as tg:
        tg.start_soon(operation)
        await written.wait()
        tg.cancel_scope.cancel()
        go_on.set()
    monkeypatch.setattr(store, write, original)


async def audited(store: Store) -> list[tuple[str, str | None]]:
    return [(e.action, e.target) for e in reversed(await store.audit())]


async def test_an_operation_cancelled_after_its_store_write_is_applied_and_audited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server(),
                            "beta2": beta_server()}, db=str(tmp_path / "g.db"))
    async with Client(gateway.server):
        control, store = gateway.control, gateway.store
        assert store is not None
        manager = control.manager

        await cancelled_after(store, "add_server", lambda: servers.add_server(
            control, LIBRARY, "beta", memory_entry("beta")), monkeypatch)
        assert [r.name for r in await store.servers()] == ["beta"]
        assert sorted(manager.services) == ["alpha", "beta"]  # running, as stored
        assert await audited(store) == [("add_server", "beta")]

        await cancelled_after(store, "put_server", lambda: servers.update_server(
            control, LIBRARY, "beta", memory_entry("beta2")), monkeypatch)
        assert manager.services["beta"].config.url == memory_entry("beta2")["url"]
        assert (await audited(store))[-1] == ("update_server", "beta")

        await cancelled_after(store, "set_server_enabled", lambda: servers.disable_server(
            control, LIBRARY, "alpha"), monkeypatch)
        await until(lambda: manager.services["alpha"].state is UpstreamState.DISABLED)
        assert (await audited(store))[-1] == ("disable_server", "alpha")

        await cancelled_after(store, "add_route", lambda: routes.add_route(
            control, LIBRARY, "alpha_add", "beta"), monkeypatch)
        rule = gateway.provider.pipeline.routes.rule_for("alpha_add")
        assert rule is not None and rule.target == "beta"  # in the call path
        assert (await audited(store))[-1] == ("add_route", "alpha_add")

        await cancelled_after(store, "delete_server", lambda: servers.remove_server(
            control, LIBRARY, "beta"), monkeypatch)
        assert sorted(manager.services) == ["alpha"]
        assert (await audited(store))[-1] == ("remove_server", "beta")


async def test_an_import_cancelled_after_its_first_store_write_imports_every_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``gateway_import_servers`` cut by a cancel after its first server was stored left
    that one imported and the others not (each consistent, the import not all or
    nothing): once begun, an import now finishes -- every server stored, running and
    audited -- and the cancellation lands after it."""
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server(),
                            "gamma": beta_server(), "delta": beta_server()},
                           db=str(tmp_path / "g.db"))
    names = ["beta", "gamma", "delta"]
    content = json.dumps({"servers": {name: memory_entry(name) for name in names}})
    async with Client(gateway.server):
        control, store = gateway.control, gateway.store
        assert store is not None
        await cancelled_after(store, "add_server", lambda: servers.import_servers(
            control, LIBRARY, content), monkeypatch)
        assert sorted(r.name for r in await store.servers()) == sorted(names)
        assert sorted(control.manager.services) == sorted(["alpha", *names])
        assert await audited(store) == [("add_server", name) for name in names]


async def test_a_drain_cancelled_while_it_waits_for_calls_in_flight_is_audited(
        tmp_path: Path) -> None:
    """The replica is out of the pool at once; the wait for its calls is what a caller
    may give up: the drain was done, and is audited."""
    gate = anyio.Event()
    held = FastMCP("held")

    @held.tool
    async def hold() -> str:
        await gate.wait()
        return "done"

    gateway = make_gateway({"held": memory_entry("held")}, {"held": held},
                           db=str(tmp_path / "g.db"))
    async with Client(gateway.server) as host, anyio.create_task_group() as calls:
        store = gateway.store
        assert store is not None
        service = gateway.control.manager.get("held")
        calls.start_soon(host.call_tool, "held_hold", {})
        await until(lambda: service.replicas[0].statistics().inflight == 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(servers.drain_replica, gateway.control, LIBRARY, "held", 0)
            await until(lambda: service.draining == {0})
            tg.cancel_scope.cancel()
        gate.set()
        assert await audited(store) == [("drain_replica", "held")]  # its label, one replica
