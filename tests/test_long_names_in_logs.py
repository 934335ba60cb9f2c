"""An upstream's very long tool name (3000 characters) is quoted in log lines cut to its
head (``config/names.logged_name``), as config errors quote a long server name: the
rename warning carried it whole, one 3 kB line per rename."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

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


async def test_a_long_resource_uri_is_cut_in_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """A host's URI (``subscriptions/listen``) and a subscribed URI replayed on a new
    upstream session are a host's to choose: quoted cut, as tool names are."""
    from types import SimpleNamespace

    from mcp.shared.exceptions import MCPError

    from fast_mcp_gateway.front.listen import SubscribingListen
    from fast_mcp_gateway.principal import Standing
    from fast_mcp_gateway.upstream.changes import ChangeTracker
    from fast_mcp_gateway.upstream.signals import ChangeSignal

    uri = "res://" + LONG
    caplog.set_level(logging.DEBUG)

    def unknown(asked: str, visible: Any) -> Any:
        raise MCPError(code=-32002, message="Unknown resource")

    async def unsubscribe_old(asked: str, home: Any) -> None:
        raise AssertionError("nothing held")

    listen = SubscribingListen(cast(Any, SimpleNamespace(bus=None)), unknown,
                               lambda: (Standing(lambda: None), lambda server: True),
                               lambda server: None, unsubscribe_old)
    assert await listen._subscribe(uri, lambda server: True) is None

    class Refusing:
        async def send_request(self, request: Any, result_type: Any) -> None:
            raise RuntimeError("no subscriptions here")

    async def fetch(session: Any) -> Any:
        raise AssertionError("not fetched")

    tracker = ChangeTracker("up", timeout=5, fetch=fetch, on_catalog=lambda c: None,
                            on_resource_updated=lambda u: None, changed=ChangeSignal(),
                            notify=lambda: None)
    tracker.add(uri)
    await tracker._resubscribe(cast(Any, Refusing()))
    said = [r.getMessage() for r in caplog.records if "subscrib" in r.getMessage()]
    assert len(said) == 2 and all("... (3006 characters)" in m for m in said), said
    assert not any(LONG in r.getMessage() for r in caplog.records)
