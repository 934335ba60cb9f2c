"""A reload that changes a ``gateway:`` option read only at start says so.

The routing manager and the catalog keep the options they started with (naming,
timeouts, the default protocol, pinning, exposure, search, profiles).  A reload that
changes one of them reports it in ``restart_needed`` and logs it, on every reload until
the gateway runs with it; options that follow a reload (``admin``) are not reported.
A real gateway reloading a real config file through ``gateway_reload_config``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from tests.fixtures import alpha_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio

ENTRY = json.dumps(memory_entry("alpha"))


def write(config: Path, options: str) -> None:
    config.write_text(f"gateway: {{{options}}}\nservers: {{alpha: {ENTRY}}}\n")


async def reload(client: Client[Any]) -> dict[str, Any]:
    report = (await client.call_tool("gateway_reload_config", {})).structured_content
    assert report is not None and report["error"] is None
    return report


async def test_a_reload_reports_the_options_that_need_a_restart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "servers.yaml"
    write(config, "exposure: all")
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options={"exposure": "all"}, config=config)
    async with Client(gateway.server, mode="legacy") as client:
        assert (await reload(client))["restart_needed"] == []

        write(config, 'exposure: search, separator: "__", timeouts: {call: 5}')
        with caplog.at_level(logging.WARNING, logger="fast_mcp_gateway.admin.control"):
            report = await reload(client)
        changed = ["gateway.separator", "gateway.timeouts", "gateway.exposure"]
        assert report["restart_needed"] == changed
        assert any(", ".join(changed) in r.getMessage() and "restarted" in r.getMessage()
                   for r in caplog.records)
        # The gateway runs on as it started: every tool listed, under the old separator.
        assert "alpha_add" in {t.name for t in await client.list_tools()}
        # Still pending on the next reload: the running values did not change.
        assert (await reload(client))["restart_needed"] == changed

        # An option that follows a reload is no restart's business; back to the
        # started values, nothing is pending.
        write(config, 'exposure: all, admin: "full"')
        assert (await reload(client))["restart_needed"] == []
