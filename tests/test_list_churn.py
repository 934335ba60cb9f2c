"""A server that changes its tool list in a loop, with new names each time.

Pinning (warn) wrote a WARNING line and an audit row per new name (162 rows in 8 s), and
hosts got a ``tools/list_changed`` per upstream change (~20 a second).  Now a server's
findings are reported at most once per ``REPORT_WINDOW`` (one line, one row, naming the
count and the first few), and hosts get at most one ``list_changed`` per
``LIST_CHANGED_PAUSE``, the last change always delivered.  The tests hold the windows
open with a clock that stands still and a pause that waits for the test: nothing here
depends on how fast the machine is.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client, Context, FastMCP

from fast_mcp_gateway.routing.pin_reports import FindingReports, Report
from fast_mcp_gateway.routing.pinning import Finding
from tests.fixtures import make_gateway, memory_entry
from tests.test_pinning import ListChanges

pytestmark = pytest.mark.anyio
GUARD = 30  # seconds: a hang guard only
NEW = 20


def churning() -> FastMCP[Any]:
    """``grow(count)`` adds ``count`` tools with new names, one list_changed each
    (``every`` seconds apart)."""
    server: FastMCP[Any] = FastMCP("churn")
    made = 0

    def run() -> str:
        return "ran"

    @server.tool
    async def grow(ctx: Context, count: int, every: float = 0.0) -> int:
        nonlocal made
        for _ in range(count):
            made += 1
            server.tool(run, name=f"t{made}")
            await ctx.send_notification(types.ToolListChangedNotification())
            if every:   # a pace, for benchmarks/ measurements only
                await anyio.sleep(every)
        return made

    return server


class Gate:
    """A pause that waits for the test: ``opened`` lets it (and later ones) through."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.opened = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.entered.set()
        await self.opened.wait()


async def test_a_churning_server_is_reported_and_announced_once_per_window(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gateway = make_gateway({"ch": memory_entry("ch", pinning="warn")}, {"ch": churning()},
                           db=tmp_path / "g.db")
    now = [0.0]
    book = gateway.manager.pins
    book.reports.clock = lambda: now[0]   # stands still: the window stays open
    changes = ListChanges()
    manager = gateway.manager
    async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
        assert {t.name for t in await client.list_tools()} >= {"ch_grow"}   # pinned
        caplog.clear()
        # The hub's clock stands still an hour ahead: the first change goes out at once
        # (nothing was announced within the pause), and the pause then waits for the test.
        gate, later = Gate(), time.monotonic() + 3600
        gateway.hub.clock, gateway.hub.pause = (lambda: later), gate
        await client.call_tool("ch_grow", {"count": NEW})
        assert await manager.changed.wait_until(
            lambda: f"ch_t{NEW}" in manager.view.tools, GUARD)
        await changes.after(1)   # the first change at once, then the pause holds the rest
        with anyio.fail_after(GUARD):
            await gate.entered.wait()
        assert changes.count == 1
        gate.opened.set()
        await changes.after(2)   # the rest in one, after the pause
        assert f"ch_t{NEW}" in {t.name for t in await client.list_tools()}
        assert changes.count == 2 and not gateway.hub.lists_pending

        # Pinning: the first finding(s) at once, the rest held until the window passed.
        reports = book.reports
        assert await book.written.wait_until(lambda: book.audited >= 1 and reports.reported
                                             + sum(map(len, reports.held.values())) == NEW,
                                             GUARD)
        rows_expected = 1 + bool(reports.held)
        now[0] += FindingReports.window
        book.nudge()
        assert await book.written.wait_until(lambda: book.audited == rows_expected, GUARD)
        audit = (await client.call_tool("gateway_audit", {"limit": 100})
                 ).structured_content["entries"]
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("pinning")
             or "pinning" in r.getMessage()]
    rows = [e for e in audit if e["actor"] == "pinning"]
    assert len(lines) == len(rows) <= 2, (lines, rows)
    assert sum(json.loads(r["arguments"]).get("count", 1) for r in rows) == NEW, rows
    assert _counted(caplog) == NEW, lines
    if len(rows) == 2:
        assert "new tools" in lines[-1] and "and" in lines[-1], lines[-1]


def _counted(caplog: pytest.LogCaptureFixture) -> int:
    """How many findings the pinning lines covered (one, or the count they name)."""
    total = 0
    for record in caplog.records:
        message = record.getMessage()
        if not message.startswith("pinning: "):
            continue
        head = message.split(": ", 2)[1]
        total += int(head.split()[0]) if head.split()[0].isdigit() else 1
    return total


def _finding(server: str, name: str, state: Any = "new", held: bool = False) -> Finding:
    return Finding(server, "tool", name, state, {"name": name}, "d", None, (), held)


@pytest.mark.parametrize(("events", "expected"), [
    # (at, server, name) -> what is reported when: (at, server, count)
    ([(0, "a", "x")], [(0, "a", 1)]),
    ([(0, "a", "x"), (1, "a", "y"), (2, "a", "z")], [(0, "a", 1), (5, "a", 2)]),
    ([(0, "a", "x"), (1, "b", "y"), (2, "a", "z")], [(0, "a", 1), (1, "b", 1), (5, "a", 1)]),
    ([(0, "a", "x"), (6, "a", "y")], [(0, "a", 1), (6, "a", 1)]),
])
def test_findings_are_reported_once_per_server_per_window(
        events: list[tuple[float, str, str]], expected: list[tuple[float, str, int]]) -> None:
    now = [0.0]
    reports = FindingReports(clock=lambda: now[0])
    seen: list[tuple[float, str, int]] = []
    for at in sorted({e[0] for e in events} | {x[0] for x in expected}):
        now[0] = at
        reports.add([_finding(s, n) for t, s, n in events if t == at])
        seen += [(at, r.server, len(r.findings)) for r in reports.due()]
    assert seen == expected
    assert not reports.held


def test_a_report_of_many_names_the_count_and_the_first_few() -> None:
    report = Report("ch", tuple(_finding("ch", f"t{i}") for i in range(1, 163)))
    assert report.summary() == (
        "162 findings of server 'ch': 162 new tools (t1, t2, t3, t4, t5 and 157 more); "
        "gateway_pin_status lists them")
    assert report.action == "pin_new"
    assert report.arguments()["count"] == 162 and len(report.arguments()["names"]) == 10
    mixed = Report("ch", (_finding("ch", "a", "changed", held=True), _finding("ch", "b")))
    assert mixed.action == "pin_findings"
    assert mixed.summary() == (
        "2 findings of server 'ch': 1 changed tool (a), 1 new tool (b); "
        "gateway_pin_status lists them (1 held until approved)")
    single = Report("ch", (_finding("ch", "a"),))
    assert single.summary() == "tool 'a' of server 'ch' is new since the server's " \
                               "definitions were pinned"
    assert single.arguments() == {"kind": "tool", "name": "a", "held": False, "markers": []}


def test_a_report_line_is_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    Report("ch", (_finding("ch", "a"),)).log()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
