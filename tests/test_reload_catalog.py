"""A reload that restarts a server keeps its catalog listed until the new session's
first connect attempt ends.

A server whose entry changed in servers.yaml (an env var) is restarted: the manager
removed its service and added a new one with no catalog until it connected, so hosts
got a ``list_changed`` without its tools and another with them, and a host listing
meanwhile (2-5 s for an npx server) saw none.  Now the new service stands in with the
catalog hosts saw; its first attempt's success replaces it (``list_changed`` only if it
differs), its failure takes it away (the server is down: nothing listed as if served).
A real stdio server (``servers/slow_start.py --per-process``: the Nth process waits
for ``release.N``); every wait is on an event, the test's guard only bounds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway, parse_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import FAST_RESTART
from tests.test_startup import GUARD, Changes, slow_entry

pytestmark = pytest.mark.anyio


def _configure(config: Path, entry: dict[str, Any]) -> None:
    config.write_text(json.dumps({"servers": {"slow": entry}}))


def _answering(client: Client[Any], answers: dict[str, Any]) -> Any:
    """Calls a tool (no arguments) into ``answers[its name]``, an error result too."""
    async def call(name: str) -> None:
        answers[name] = await client.call_tool(name, {}, raise_on_error=False)
    return call


def _gateway(config: Path, entry: dict[str, Any]) -> Gateway:
    _configure(config, entry)
    return Gateway(parse_config(json.loads(config.read_text()), source=str(config)),
                   GatewaySettings(db=None, startup_wait=600.0, config=config),
                   restart=FAST_RESTART)


async def _listed(client: Client[Any]) -> tuple[set[str], set[str], set[str]]:
    return ({t.name for t in await client.list_tools()},
            {str(r.uri) for r in await client.list_resources()},
            {p.name for p in await client.list_prompts()})


async def _restarting(gateway: Gateway, old: Service, client: Client[Any],
                      listed: tuple[set[str], set[str], set[str]]) -> Service:
    """The service that replaced ``old`` (stopped by now), its process started and
    still warming up; ``listed`` all along."""
    previous = old.replicas[0]
    assert await previous.wait_until(lambda: previous.state is UpstreamState.STOPPED, GUARD)
    assert await _listed(client) == listed  # the old process gone, the new one not up
    new = gateway.manager.services.get("slow")
    assert new is not None and new is not old
    replica = new.replicas[0]
    assert await replica.wait_until(
        lambda: "still connecting" in (replica.last_error or ""), GUARD), replica.last_error
    assert replica.state is UpstreamState.STARTING
    return new


def _slow_gateway(tmp_path: Path, **extra: Any) -> tuple[Path, dict[str, Any], Gateway]:
    """A gateway of ``slow_start.py --per-process``: its first process starts at once
    (``release.1``), the next waits for ``release.2`` (the test creates it)."""
    (tmp_path / "release.1").touch()
    config = tmp_path / "servers.yaml"
    # A 1 s window, not slow_entry's 0.2 s: the process's activity is its stderr lines,
    # and a gateway loop held up for most of a 0.2 s window on a loaded machine (load
    # 10; less late than the half window ConnectWatch counts as a stall) read them only
    # after the window's check, which ended the attempt as idle, and the stand-in
    # catalog with it (seen once in a full run).
    extra.setdefault("timeouts", {"connect": 1.0})
    entry = slow_entry(tmp_path / "release", **extra)
    entry["args"].append("--per-process")
    return config, entry, _gateway(config, entry)


async def test_a_restarted_server_stays_listed_until_its_new_session_is_up(
        tmp_path: Path) -> None:
    config, entry, gateway = _slow_gateway(tmp_path, env={"SLOW_EDITION": "1"})
    changes = Changes()
    answers: dict[str, Any] = {}
    with anyio.fail_after(GUARD):
        async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
            before = await _listed(client)
            assert "slow_pid" in before[0] and "slow_greet" in before[2], before
            old = gateway.manager.services["slow"]
            first_pid = (await client.call_tool("slow_pid", {})).data
            _configure(config, {**entry, "env": {"SLOW_EDITION": "2"}})
            call = _answering(client, answers)
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "gateway_reload_config")
                new = await _restarting(gateway, old, client, before)
                # Its tools, resources and prompts, as hosts saw them, and no notice.
                assert await _listed(client) == before
                assert not any(e.is_set() for e in changes.seen.values())
                tg.start_soon(call, "slow_pid")  # waits for the new session
                (tmp_path / "release.2").touch()
            report = answers["gateway_reload_config"].structured_content
            assert report["restarted"] == ["slow"], report
            assert new.replicas[0].state is UpstreamState.READY
            pid = answers["slow_pid"].data
            assert pid != first_pid and pid == new.replicas[0].pid, answers["slow_pid"]
            # The new catalog is the old one: nothing to announce, nothing announced
            # (a round trip after the session came up: a notice would be here by now).
            assert await _listed(client) == before
            assert not any(e.is_set() for e in changes.seen.values()), changes.seen


async def test_a_restart_that_fails_takes_the_servers_tools_away(tmp_path: Path) -> None:
    config, entry, gateway = _slow_gateway(tmp_path)
    changes = Changes()
    answers: dict[str, Any] = {}
    with anyio.fail_after(GUARD):
        async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
            before = await _listed(client)
            assert "slow_pid" in before[0], before
            old = gateway.manager.services["slow"]
            _configure(config, {**entry, "args": [*entry["args"], "--fail"]})
            async with anyio.create_task_group() as tg:
                tg.start_soon(_answering(client, answers), "gateway_reload_config")
                new = await _restarting(gateway, old, client, before)
                assert await _listed(client) == before  # still listed while it starts
                assert not changes.seen["tools"].is_set()
                (tmp_path / "release.2").touch()  # ... and then its start fails
                await changes.all()  # tools, resources and prompts all went
            replica = new.replicas[0]
            assert replica.state is not UpstreamState.READY and replica.attempts >= 1
            assert "exited with code 3" in (replica.last_error or ""), replica.last_error
            tools, resources, prompts = await _listed(client)
            assert not {n for n in tools if n.startswith("slow_")}, tools
            assert not resources and not prompts, (resources, prompts)


async def test_with_replicas_the_catalog_stays_while_one_may_yet_come_up(
        tmp_path: Path) -> None:
    """Two replicas restarted: the first one's new process fails (for good: every
    restart fails), the second is still starting.  The catalog went as the first one
    failed, though the second might come up; now it stays until the second's first
    attempt ends (here: it comes up, and its catalog is the one listed)."""
    for release in ("a.1", "b.1", *(f"a.{n}" for n in range(2, 12))):
        (tmp_path / release).touch()  # process a.N (N >= 2) fails at once, b.2 waits

    def instance(base: str, *extra: str) -> dict[str, Any]:
        entry = slow_entry(tmp_path / base)
        return {"command": entry["command"], "args": [*entry["args"], "--per-process", *extra]}

    config = tmp_path / "servers.yaml"
    # 1 s, not 0.2 s: see ``_slow_gateway`` (a late read of its stderr ended an attempt).
    entry = {"instances": [instance("a"), instance("b")], "timeouts": {"connect": 1.0}}
    gateway = _gateway(config, entry)
    answers: dict[str, Any] = {}
    with anyio.fail_after(GUARD):
        async with Client(gateway.server, mode="legacy") as client:
            before = await _listed(client)
            assert "slow_pid" in before[0], before
            old = gateway.manager.services["slow"]
            _configure(config, {**entry, "instances": [instance("a", "--fail"), instance("b")]})
            async with anyio.create_task_group() as tg:
                tg.start_soon(_answering(client, answers), "gateway_reload_config")
                for replica in old.replicas:
                    assert await replica.wait_until(
                        lambda r=replica: r.state is UpstreamState.STOPPED, GUARD)
                new = gateway.manager.services["slow"]
                assert new is not old
                failing, starting = new.replicas
                assert await failing.wait_until(
                    lambda: failing.state is UpstreamState.FAILED, GUARD), failing.last_error
                assert starting.state is UpstreamState.STARTING
                assert await _listed(client) == before  # the second may yet come up
                (tmp_path / "b.2").touch()
            assert starting.state is UpstreamState.READY
            assert await _listed(client) == before
            assert (await client.call_tool("slow_pid", {})).data == starting.pid


async def test_a_call_to_a_tool_the_restarted_server_dropped_is_refused_by_the_gateway(
        tmp_path: Path) -> None:
    """A host calls a tool listed from the stand-in catalog while the server restarts,
    and the new session no longer offers it: the gateway refuses it saying so, rather
    than sending it to the server (which answered its own bare "Unknown tool")."""
    config, entry, gateway = _slow_gateway(tmp_path)
    answers: dict[str, Any] = {}
    with anyio.fail_after(GUARD):
        async with Client(gateway.server, mode="legacy") as client:
            before = await _listed(client)
            old = gateway.manager.services["slow"]
            _configure(config, {**entry, "env": {"SLOW_WITHOUT": "pid"}})
            call = _answering(client, answers)
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "gateway_reload_config")
                await _restarting(gateway, old, client, before)
                assert "slow_pid" in (await _listed(client))[0]
                tg.start_soon(call, "slow_pid")  # waits for the new session
                (tmp_path / "release.2").touch()
            assert "slow_pid" not in (await _listed(client))[0]
    refused = answers["slow_pid"]
    assert refused.is_error, refused
    text = refused.content[0].text
    assert "tool 'pid' is no longer offered: the server was restarted" in text, text
