"""An upstream's very long tool name (3000 characters) is quoted in log lines cut to its
head (``config/schema.logged_name``), as config errors quote a long server name: the
rename warning carried it whole, one 3 kB line per rename."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP

from tests.fixtures import make_gateway, memory_entry

pytestmark = pytest.mark.anyio

LONG = "x" * 3000


def long_named() -> FastMCP[Any]:
    mcp = FastMCP("long")

    def echo(text: str) -> str:
        return text

    mcp.tool(name=LONG)(echo)
    return mcp


async def test_a_long_upstream_tool_name_is_cut_in_log_lines(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    upstream = long_named()  # (the SDK warns of its name here, as the upstream's own)
    caplog.clear()
    caplog.set_level(logging.INFO)
    gateway = make_gateway({"long": memory_entry("long")}, {"long": upstream},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        names = [t.name for t in await client.list_tools()]
        assert any(n.startswith("long_xxx") and len(n) == 64 for n in names)
    renames = [r.getMessage() for r in caplog.records if "exposed as" in r.getMessage()]
    assert renames, caplog.text
    assert any(f"'{'x' * 100}... (3000 characters)' exposed as" in m for m in renames), renames
    for record in caplog.records:
        assert LONG not in record.getMessage(), (record.name, record.pathname,
                                                 record.getMessage()[:300])
