"""Two gateways on one SQLite file: the default store is every gateway's given no
``--db`` (Claude Desktop's, and one started in a terminal with another config file).

The second one freed the first one's exposed names at its start, as names of servers
"removed while no gateway ran", while the first served them; and nothing said that the
two share runtime registrations, routes, names, the call log and alerts.  Now each
gateway holds its instance lease on any store, naming its config file: one that finds
another gateway running frees nothing, and warns when that one serves another file."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway, GatewaySettings
from fast_mcp_gateway.admin.instance_lease import TTL_SECONDS, _hold, holder_of, pid_space
from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.telemetry.recorder import Recorder
from tests.fixtures import alpha_server, beta_server, memory_entry, memory_transports

pytestmark = pytest.mark.anyio


def _gateway(db: Path, source: Path, name: str, instance: str) -> Gateway:
    config = parse_config({"servers": {name: memory_entry(name)}}, source=str(source))
    return Gateway(config, GatewaySettings(db=db, instance_id=instance, startup_wait=600.0),
                   transport_factory=memory_transports({"alpha": alpha_server(),
                                                        "beta": beta_server()}))


async def _bound(db: Path) -> set[str]:
    store = await open_store(str(db))
    try:
        return {binding.server for binding in await store.name_bindings()}
    finally:
        await store.close()


async def test_a_second_gateway_on_the_file_frees_none_of_the_first_ones_names(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "gateway.db"
    first = _gateway(db, tmp_path / "claude_desktop_config.json", "alpha", "desktop")
    async with Client(first.server) as host:
        await host.list_tools()
        assert await first.manager.names.flushed(30)
        await first.control.lease_tried.wait()
        assert "alpha" in await _bound(db)
        second = _gateway(db, tmp_path / "trial.yaml", "beta", "terminal")
        with caplog.at_level(logging.INFO):
            async with Client(second.server) as other:
                await other.list_tools()
                assert await second.manager.names.flushed(30)
        assert "alpha" in await _bound(db), "the second gateway freed the first one's names"
        assert "freed the exposed names" not in caplog.text
        (warning,) = [r.getMessage() for r in caplog.records
                      if "another gateway runs on" in r.getMessage()]
        assert "claude_desktop_config.json" in warning and "--db PATH" in warning
        assert "alpha_" in str([t.name for t in await host.list_tools()])


async def test_a_gateway_alone_on_its_file_frees_the_names_of_servers_gone_from_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The release it does when no other gateway runs is kept (a server removed from the
    file while no gateway ran), and a second one on the same file makes no warning."""
    db = tmp_path / "gateway.db"
    source = tmp_path / "servers.yaml"
    one = _gateway(db, source, "alpha", "one")
    async with Client(one.server) as host:
        await host.list_tools()
        assert await one.manager.names.flushed(30)
    assert "alpha" in await _bound(db)
    with caplog.at_level(logging.INFO):
        async with Client(_gateway(db, source, "beta", "two").server) as host:
            await host.list_tools()
    assert "freed the exposed names of server(s) alpha" in caplog.text
    assert "alpha" not in await _bound(db)
    assert "another gateway runs on" not in caplog.text


async def test_two_gateways_starting_together_on_the_file_free_none_of_each_others_names(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Claude Desktop starts every server of its config at once: two gateways on the
    default file.  The first had taken the store (its attach: names adopted, routes and
    registrations read) but not yet its instance lease (a background task, started
    after): the second found no other gateway and freed the first one's names."""
    db = tmp_path / "gateway.db"
    desktop = tmp_path / "claude_desktop_config.json"
    earlier = _gateway(db, desktop, "alpha", "desktop")
    async with Client(earlier.server) as host:
        await host.list_tools()  # an earlier run bound alpha's names
        assert await earlier.manager.names.flushed(30)
    assert "alpha" in await _bound(db)
    first = _gateway(db, desktop, "alpha", "desktop")
    store = await open_store(str(db))
    try:
        await first.control.attach(store, Recorder(store))  # its start, up to its tasks
        with caplog.at_level(logging.INFO):
            async with Client(_gateway(db, tmp_path / "trial.yaml", "beta",
                                       "terminal").server) as other:
                await other.list_tools()
        assert "alpha" in await _bound(db), "the second gateway freed the first one's names"
        assert "freed the exposed names" not in caplog.text
    finally:
        first.control.detach()
        await store.close()


async def test_an_instance_id_held_elsewhere_is_a_warning_and_its_return_news(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holding this gateway's --instance-id is a problem, said once at
    WARNING however many renewals find it; the id being this gateway's again is a
    recovery, said once at INFO (it was a WARNING, as 'store back' was)."""
    caplog.set_level(logging.INFO, "fast_mcp_gateway")
    other, mine, name = "host h pid 1 config /a.yaml #abcdef", "host h pid 2", "instance:gw-1"
    store = await open_store(str(tmp_path / "gateway.db"))
    try:
        assert await store.hold_lease(name, other, TTL_SECONDS)
        clash = False
        for _ in range(3):  # three renewals while the other holds it
            clash = await _hold(store, name, mine, "gw-1", clash)
            assert clash
        await store.release_lease(name, other)
        for _ in range(2):
            clash = await _hold(store, name, mine, "gw-1", clash)
            assert not clash
    finally:
        await store.close()
    said = [r for r in caplog.records if "--instance-id gw-1" in r.getMessage()]
    assert [r.levelname for r in said] == ["WARNING", "INFO"], [r.getMessage() for r in said]
    assert said[0].getMessage().startswith("another gateway runs with --instance-id gw-1 (")
    assert said[1].getMessage() == "--instance-id gw-1 is this gateway's alone again"


@pytest.mark.parametrize("space", ["this", "another"])
async def test_a_predecessor_killed_on_this_host_leaves_no_warning_behind(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, space: str) -> None:
    """A gateway killed (``kill -9``, the OOM killer) keeps its instance lease until it
    runs out: the supervisor's restart logged "another gateway runs with --instance-id
    gw-1 (host <this> pid <dead>...)" after every crash, and freed no names meanwhile.
    A holder on this host whose pid no longer runs is now taken over at the start --
    in this pid namespace only: a gateway in another container on host networking (or
    on a machine cloned with this host name) names this host too, and its pid, alive
    there, runs no process here.  Taken over, the clash it is went unsaid, and this
    gateway, finding no other running, freed names that may be that one's."""
    caplog.set_level(logging.INFO, "fast_mcp_gateway")
    db = tmp_path / "gateway.db"
    done = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    pid = done.stdout.decode().strip()
    # As that process wrote it (holder_of), there or in another pid namespace.
    where = pid_space() if space == "this" else "0123456789ab"
    assert (where is not None and where != "0123456789ab") or space == "another"
    dead = f"host {socket.gethostname()} pid {pid} ns {where} config /a.yaml #abcdef"
    store = await open_store(str(db))
    try:
        assert await store.hold_lease("instance:gw-1", dead, TTL_SECONDS)
    finally:
        await store.close()
    gateway = _gateway(db, tmp_path / "servers.yaml", "alpha", "gw-1")
    async with Client(gateway.server) as host:
        await host.list_tools()
        await gateway.control.lease_tried.wait()
        store = await open_store(str(db))
        try:
            held = await store.lease("instance:gw-1")
        finally:
            await store.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records
            if "--instance-id gw-1" in r.getMessage()]
    if space == "this":
        assert held is not None and held.holder == gateway.control.holder
        assert said == [("INFO", f"--instance-id gw-1: taken over from pid {pid} "
                                 "on this host, which no longer runs (it stopped without a "
                                 "clean stop: killed or crashed)")], said
    else:
        assert held is not None and held.holder == dead
        assert [level for level, _ in said] == ["WARNING"], said
        assert said[0][1].startswith(f"another gateway runs with --instance-id gw-1 ({dead}")


def test_a_holder_names_where_its_pid_is_one() -> None:
    holder = holder_of("/nowhere.yaml")
    assert holder.startswith(f"host {socket.gethostname()} pid {os.getpid()} "
                             f"ns {pid_space()} config /nowhere.yaml #"), holder
