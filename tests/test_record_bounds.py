"""What a call record keeps of a text an upstream chose is bounded: its error text is cut
past ``MAX_ERROR`` with a note, as its arguments are (``recorder.dumps_arguments``); an
upstream's megabyte error was stored whole in each record, and every page of records
read back whole."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ResourceError
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.store.sqlite import SQLiteStore
from fast_mcp_gateway.telemetry.recorder import MAX_ERROR
from tests.fixtures import make_gateway, memory_entry, serve_http

pytestmark = pytest.mark.anyio


def wordy_server() -> FastMCP[Any]:
    mcp: FastMCP[Any] = FastMCP("wordy")

    @mcp.resource("wordy://fail/{size}")
    def fail(size: int) -> str:  # answered as a JSON-RPC error with this message
        raise ResourceError("E" * size)

    return mcp


async def test_an_upstreams_error_text_is_kept_up_to_a_bound(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # FastMCP's own log of the upstream's error renders the whole text (seconds).
    caplog.set_level(logging.CRITICAL, logger="fastmcp")
    db = tmp_path / "gateway.db"
    gateway = make_gateway({"wordy": memory_entry("wordy")}, {"wordy": wordy_server()}, db=db)
    async with serve_http(gateway.http_app()) as base, Client(f"{base}/mcp") as client:
        for size in (200_000, 10):
            with pytest.raises(MCPError):
                await client.read_resource(f"wordy://wordy/fail/{size}")
    # The gateway stopped: its recorder wrote what it held.
    store = await SQLiteStore.open(db)
    try:
        (big, small), _ = await store.invocations(newest_first=False)
    finally:
        await store.close()
    assert big.error is not None and small.error is not None
    assert len(big.error) < MAX_ERROR + 100, len(big.error)
    assert big.error.startswith("EEEE")
    assert big.error.endswith(" characters in all]"), (len(big.error), big.error[-80:])
    assert "[cut by the gateway: " in big.error
    assert small.error.endswith("E" * 10) and "cut by the gateway" not in small.error
