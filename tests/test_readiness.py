"""Gateway.wait_ready: library users wait for the first connects, not for a fixed time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastmcp import Client

from fast_mcp_gateway import Gateway, GatewaySettings
from fast_mcp_gateway.errors import AdminError
from tests.fixtures import PY, make_gateway, stdio_entry

pytestmark = pytest.mark.anyio


async def test_wait_ready_reports_ready_failed_and_disabled_servers() -> None:
    gateway = make_gateway({
        "good": stdio_entry("well.py"),
        "broken": {"command": PY, "args": ["-c", "import sys; sys.exit(3)"]},
        "off": {**stdio_entry("well.py"), "enabled": False},
    }, startup_wait=0)
    async with Client(gateway.server) as client:
        ready = await gateway.wait_ready(within=None)
        assert ready.ready == ("good",)
        assert list(ready.failed) == ["broken"]
        assert "exited with code 3" in ready.failed["broken"]
        assert ready.disabled == ("off",) and ready.starting == ()
        assert not ready.all_ready
        names = [tool.name for tool in await client.list_tools()]
        assert any(name.startswith("good_") for name in names), names


async def test_wait_ready_outside_a_running_gateway_says_how_to_use_it() -> None:
    gateway = make_gateway({"good": stdio_entry("well.py")})
    with pytest.raises(AdminError, match="async with Client"):
        await gateway.wait_ready(within=1)


async def test_wait_ready_names_a_server_of_the_file_left_out_as_invalid(
        tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text(yaml.safe_dump({"servers": {
        "good": stdio_entry("well.py"), "typo": {"command": PY, "arg": ["x"]}}}))
    gateway = Gateway.from_file(config, GatewaySettings(db=None, startup_wait=600))
    async with Client(gateway.server):
        ready = await gateway.wait_ready(within=None)
    assert ready.ready == ("good",) and not ready.failed
    assert list(ready.invalid) == ["typo"] and "did you mean 'args'?" in ready.invalid["typo"]
    assert not ready.all_ready  # all_ready said True: one of the file's servers never runs
