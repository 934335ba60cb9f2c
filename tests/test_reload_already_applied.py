"""``gateway_reload_config`` after the file watcher applied the edit says so.

A user edited servers.yaml and called reload; the watcher had applied the edit within
its interval, so the reload found nothing to do and answered "no change": as if the
edit had not been taken.  Now the report says who applied the file as it reads now,
when, and what that changed (``admin/applied.py``).  A real gateway, its real watcher
on a real file, the tool called through MCP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from fast_mcp_gateway.admin.report import ChangeReport
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry, until

pytestmark = pytest.mark.anyio


def write(config: Path, *names: str) -> None:
    config.write_text(json.dumps({"servers": {n: memory_entry(n) for n in names}}))


async def reload(client: Client[Any]) -> ChangeReport:
    found = (await client.call_tool("gateway_reload_config", {})).structured_content
    report = ChangeReport.model_validate(found)
    assert report.error is None, report
    return report


async def test_a_reload_after_the_watcher_applied_the_edit_says_so(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    write(config, "alpha")
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           options={"admin": "full"}, config=config, reload_interval=0.05)
    async with Client(gateway.server, mode="legacy") as client:
        before = await reload(client)   # nothing applied yet: a plain "no change"
        assert before.already_applied is None and before.summary().startswith("no change (")
        write(config, "alpha", "beta")   # the user's edit, which the watcher applies
        await until(lambda: "beta" in gateway.manager.services)
        report = await reload(client)
        assert report.added == [] and report.already_applied is not None, report
        assert report.already_applied.by == "the config file watcher"
        assert report.already_applied.changes == ["added beta"]
        assert report.already_applied.at.endswith("+00:00")
        assert report.summary().startswith(
            "no change now: the file as it reads now was applied already, by the config "
            "file watcher at ")
        assert "(added beta); 2 server(s) unchanged" in report.summary()
        write(config, "beta")   # an edit the watcher has not applied yet, or has
        await until(lambda: "alpha" not in gateway.manager.services)
        again = await reload(client)
        assert again.already_applied is not None
        assert again.already_applied.changes == ["removed alpha"]
