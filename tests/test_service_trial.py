"""Defects found trying the service half as a demanding team would (session 12, trial 2).

Each test reproduces one finding over real HTTP on 127.0.0.1 with the demo upstreams as
real stdio subprocesses and a real store; it fails until the defect is fixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_admin_restricted import AUTH, NOTES_ADMIN
from tests.test_rest import OPS, demo, serving

pytestmark = pytest.mark.anyio


async def test_a_restricted_admin_cannot_route_another_servers_tools_over_rest(
        tmp_path: Path) -> None:
    """README: "a change beyond one server: an import, a reload, a route or an alert rule,
    needs a token without `servers`"; gateway_add_route refuses carol over MCP, but
    POST /api/v1/routes took her rule, and a wildcard on clock's names sent every
    caller's clock calls (arguments included) to her server."""
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")},
                       auth=False, options={"auth": AUTH}) as (api, _):
        hijack = {"pattern": "clock_*", "match": "wildcard", "target": "notes",
                  "priority": 100}
        added = await api("POST", "/routes", NOTES_ADMIN, json=hijack)
        assert added.status_code == 403, added.text
        assert "without a 'servers' list" in added.json()["error"]["message"]
        # Nor may she rewrite or delete a rule an unrestricted admin made for her server.
        rid = (await api("POST", "/routes", OPS, json={"pattern": "notes_x",
                                                        "target": "notes"})).json()["id"]
        changed = await api("PUT", f"/routes/{rid}", NOTES_ADMIN, json=hijack)
        assert changed.status_code == 403, changed.text
