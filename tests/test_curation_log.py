"""``serve`` logs the curation rules that did nothing (a misspelled rename, override or
exclude target, an include naming no tool): only ``mcp-gateway check`` and
``gateway_server_detail`` showed them, so an operator who edited servers.yaml and
reloaded heard nothing.  Each is said once at WARNING when the catalog that makes it
ineffective is built (start-up, reload), with the server, the rule and the closest name
the server has; not again on every rebuild while it stands; at INFO when it applies."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mcp_types as types
import pytest
from fastmcp import Client, Context

from tests.fixtures import alpha_server, make_gateway, memory_entry, until

pytestmark = pytest.mark.anyio


def write(config: Path, tools: dict[str, object]) -> dict[str, object]:
    entry = {**memory_entry("alpha"), "tools": tools}
    config.write_text(json.dumps({"servers": {"alpha": entry}}))
    return entry


def said(caplog: pytest.LogCaptureFixture, level: int, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == level and words in r.getMessage()]


async def test_rules_that_did_nothing_are_logged_once_and_when_they_apply(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "servers.yaml"
    caplog.set_level(logging.INFO)
    entry = write(config, {"rename": {"ad": "sum"}, "exclude": ["wipe_all"]})
    gateway = make_gateway({"alpha": entry}, {"alpha": alpha_server()}, config=config)
    async with Client(gateway.server) as client:
        assert "alpha_add" in {t.name for t in await client.list_tools()}
        warned = said(caplog, logging.WARNING, "a curation rule did nothing")
        assert sorted(warned) == sorted([
            "server alpha: a curation rule did nothing: tools.rename: no tool 'ad' on this "
            "server (closest: 'add') (the rule stays in force and applies once the name "
            "exists)",
            "server alpha: a curation rule did nothing: tools.exclude: 'wipe_all' matches "
            "no tool on this server (closest: 'wipe') (the rule stays in force and applies "
            "once the name exists)"]), caplog.text
        for _ in range(3):   # rebuilds with nothing changed say nothing again
            gateway.manager.refresh_catalog()
        assert len(said(caplog, logging.WARNING, "a curation rule did nothing")) == 2
        # The operator fixes the rename and mistypes an include: a reload says both.
        write(config, {"rename": {"add": "sum"}, "exclude": ["wipe_all"],
                       "include": ["add", "wpe", "fail", "media*"]})
        assert (await gateway.control.reload_config()).error is None
        assert "alpha_sum" in {t.name for t in await client.list_tools()}
        assert said(caplog, logging.INFO, "the curation rule applies now") == [
            "server alpha: the curation rule applies now (it did nothing: tools.rename: no "
            "tool 'ad' on this server (closest: 'add'))"]
        assert said(caplog, logging.WARNING, "tools.include: 'wpe' matches no tool on this "
                                             "server (closest: 'wipe')"), caplog.text
        assert len(said(caplog, logging.WARNING, "a curation rule did nothing")) == 3
        # gateway_server_detail lists the same lines.
        detail = await client.call_tool("gateway_server_detail", {"name": "alpha"})
        assert sorted(detail.structured_content["curation"]["problems"]) == sorted([
            "tools.exclude: 'wipe_all' matches no tool on this server (closest: 'wipe')",
            "tools.include: 'wpe' matches no tool on this server (closest: 'wipe')"])


async def test_a_list_that_changes_the_closest_name_logs_nothing_new(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A problem's closest name is its server's list's: on a server whose list changes
    # often it changed, and each change logged the rule "applies now" (it did not) and
    # warned of it again -- a line pair per list_changed.
    config = tmp_path / "servers.yaml"
    caplog.set_level(logging.INFO)
    entry = write(config, {"rename": {"adds": "sum"}})
    server = alpha_server()

    @server.tool
    async def grow(ctx: Context, name: str) -> str:
        server.tool(lambda: "new", name=name)
        await ctx.send_notification(types.ToolListChangedNotification())
        return "grown"

    gateway = make_gateway({"alpha": entry}, {"alpha": server}, config=config)
    async with Client(gateway.server) as client:
        await client.list_tools()
        assert said(caplog, logging.WARNING, "tools.rename: no tool 'adds' on this server "
                                             "(closest: 'add')"), caplog.text
        for name in ("addsx", "addsy"):   # now the closest name
            await client.call_tool("alpha_grow", {"name": name})
            await until(lambda name=name: gateway.manager.view.curation["alpha"].problems
                        == [f"tools.rename: no tool 'adds' on this server (closest: '{name}')"])
        assert len(said(caplog, logging.WARNING, "a curation rule did nothing")) == 1, \
            caplog.text
        assert not said(caplog, logging.INFO, "the curation rule applies now"), caplog.text
