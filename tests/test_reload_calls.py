"""Editing servers.yaml while calls flow: calls made while a reload restarts their
server wait for it, as calls made while the gateway starts do; a file emptied by a save
in progress keeps the running config.

A reload that changes how a server is started or timed replaces its session: the new one
had no catalog until it connected, so its tools left the catalog for that while, and a
call made then was refused at once ("not offering it now: it is still starting"): an edit
of ``servers.yaml`` (an env var of one server) failed the calls that came in the next
second or two.  The call then waited for the name to be offered again; now the new
session stands in with the catalog hosts saw until its first attempt ends
(``tests/test_reload_catalog.py``), and a call made meanwhile waits for that attempt, as
one made while the gateway starts does.  In-memory upstreams; the restarted server's
connect is held on an event, so the call is made while it is still starting.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import ClientTransport, FastMCPTransport

from fast_mcp_gateway import Gateway, parse_config
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.config.settings import GatewaySettings
from tests.fixtures import FAST_RESTART, alpha_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio


class HeldTransport(FastMCPTransport):
    """Connects only once ``gate`` is set (``asked`` is set when it is asked to)."""

    def __init__(self, server: Any, gate: anyio.Event, asked: anyio.Event) -> None:
        super().__init__(server)
        self.gate, self.asked = gate, asked

    @contextlib.asynccontextmanager
    async def connect_session(self, **kwargs: Any) -> AsyncIterator[Any]:
        self.asked.set()
        await self.gate.wait()
        async with super().connect_session(**kwargs) as session:
            yield session


class Restarting:
    """A gateway of one in-memory server, ``alpha``, read from ``servers.yaml``; once the
    file gives alpha a 29 s call timeout (the reloaded config), its new session connects
    through ``held`` (held until ``gate`` is set; ``asked`` is set when it tries)."""

    def __init__(self, tmp_path: Path, held: type[HeldTransport] = HeldTransport) -> None:
        self.config = tmp_path / "servers.yaml"
        self.entry = memory_entry("alpha")
        self.config.write_text(json.dumps({"servers": {"alpha": self.entry}}))
        server = alpha_server()
        self.gate, self.asked = anyio.Event(), anyio.Event()

        def factory(server_config: ServerConfig, stderr: TextIO | None) -> ClientTransport:
            if server_config.timeouts.call == 29:  # the reloaded config
                return held(server, self.gate, self.asked)
            return FastMCPTransport(server)

        self.gateway = Gateway(
            parse_config(json.loads(self.config.read_text()), source=str(self.config)),
            GatewaySettings(db=None, startup_wait=600.0, config=self.config),
            transport_factory=factory, restart=FAST_RESTART)

    def edit(self, **changes: Any) -> None:
        """Give alpha the 29 s call timeout (and ``changes``) in the file."""
        self.config.write_text(json.dumps({"servers": {"alpha": {
            **self.entry, "timeouts": {"call": 29}, **changes}}}))

    async def call_while_restarting(
            self, client: Client[Any], name: str, arguments: dict[str, Any],
            meanwhile: Callable[[dict[str, Any]], Awaitable[None]], within: float = 60,
    ) -> dict[str, Any]:
        """Reload, call ``name`` while alpha's new session is held connecting, run
        ``meanwhile`` (on the answers so far) once every task waits, then let it connect;
        the answers of the reload and the call.  ``within``: a guard only, every wait is
        on an event."""
        answers: dict[str, Any] = {}

        async def call(tool: str, args: dict[str, Any]) -> None:
            answers[tool] = await client.call_tool(tool, args, raise_on_error=False)

        with anyio.fail_after(within):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "gateway_reload_config", {})
                await self.asked.wait()  # the restarted server is connecting, not offering
                tg.start_soon(call, name, arguments)
                await anyio.wait_all_tasks_blocked()
                await meanwhile(answers)
                self.gate.set()
        return answers


async def test_a_call_while_a_reload_restarts_its_server_waits_for_it(tmp_path: Path) -> None:
    restarting = Restarting(tmp_path)
    async with Client(restarting.gateway.server, mode="legacy") as client:
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        restarting.edit()

        async def waiting(answers: dict[str, Any]) -> None:
            assert "alpha_add" not in answers, answers["alpha_add"]  # waiting, not refused

        answers = await restarting.call_while_restarting(
            client, "alpha_add", {"a": 2, "b": 3}, waiting)
        report = answers["gateway_reload_config"].structured_content
        assert report["restarted"] == ["alpha"], report
        result = answers["alpha_add"]
        assert not result.is_error and result.data == 5, result


async def test_a_rule_the_reload_adds_applies_while_its_server_restarts(
        tmp_path: Path) -> None:
    """The restarting server's stand-in catalog is curated by the new config: a tool its
    new ``tools.exclude`` hides is refused at once, with the rule, not after the wait."""
    restarting = Restarting(tmp_path)
    async with Client(restarting.gateway.server, mode="legacy") as client:
        await client.list_tools()
        restarting.edit(tools={"exclude": ["wipe"]})

        async def refused_at_once(answers: dict[str, Any]) -> None:
            result = answers["alpha_wipe"]  # answered while the server still starts
            assert result.is_error and "exclude" in result.content[0].text, result
            assert "alpha_add" in {t.name for t in await client.list_tools()}

        await restarting.call_while_restarting(client, "alpha_wipe", {}, refused_at_once)


class FailingTransport(HeldTransport):
    """Fails to connect once ``gate`` is set."""

    @contextlib.asynccontextmanager
    async def connect_session(self, **kwargs: Any) -> AsyncIterator[Any]:
        self.asked.set()
        await self.gate.wait()
        raise RuntimeError("the restarted server failed to start")
        yield  # (a generator)


async def test_a_call_waiting_for_a_restart_that_fails_is_refused_with_the_state(
        tmp_path: Path) -> None:
    """The wait ends with the failed attempt, not at the call timeout (29 s here)."""
    restarting = Restarting(tmp_path, FailingTransport)
    async with Client(restarting.gateway.server, mode="legacy") as client:
        await client.list_tools()
        restarting.edit()

        async def waiting(answers: dict[str, Any]) -> None:
            assert "alpha_add" not in answers

        answers = await restarting.call_while_restarting(  # well before the 29 s timeout
            client, "alpha_add", {"a": 2, "b": 3}, waiting, within=20)
        result = answers["alpha_add"]
        assert result.is_error, result
        # Refused with the server's state and why its start failed.
        assert "the restarted server failed to start" in result.content[0].text, result
        # So is a later call (trial8: it was told "gateway_list_servers says why" only).
        later = await client.call_tool("alpha_add", {"a": 2, "b": 3}, raise_on_error=False)
        assert later.is_error and "not offering it now" in later.content[0].text, later
        assert "the restarted server failed to start" in later.content[0].text, later


@pytest.mark.parametrize("blank", ["", "\n  \n", "# Fast MCP Gateway configuration.\n# See\n"])
async def test_a_file_emptied_by_a_save_in_progress_keeps_the_running_config(
        tmp_path: Path, blank: str) -> None:
    """An editor writing in place (or ``cat > servers.yaml``) truncates the file first:
    read then, it was "no servers" and every server was stopped until the save ended.
    ``servers: {}`` still removes them all."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"alpha": memory_entry("alpha")}}))
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           config=config)
    async with Client(gateway.server, mode="legacy") as client:
        config.write_text(blank)
        report = (await client.call_tool("gateway_reload_config", {})).structured_content
        assert report is not None and report["removed"] == [], report
        assert report["error"] == (f"{config}: the file is empty (a save in progress?); "
                                   "keeping the running config. To run no servers from it, "
                                   "write 'servers: {}'"), report
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        config.write_text("servers: {}\n")
        report = (await client.call_tool("gateway_reload_config", {})).structured_content
        assert report is not None and report["removed"] == ["alpha"], report
