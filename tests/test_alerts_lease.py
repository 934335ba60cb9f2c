"""The alerts lease is released at a clean stop (every backend), so the next gateway on
the store leads at once; while another gateway holds it, the log says who and until when."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator  # noqa: F401
from pathlib import Path

import pytest

from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.config.alerts import AlertsConfig
from fast_mcp_gateway.store import Store, open_store
from tests.stdio_gateway import stdio_gateway
from tests.test_store_contract import store  # noqa: F401 - every backend, opened


@pytest.mark.anyio
async def test_a_released_lease_is_free_for_the_next_holder_at_once(store: Store) -> None:  # noqa: F811
    assert await store.hold_lease("alerts", "gw-a", 60) is True
    assert await store.hold_lease("alerts", "gw-b", 60) is False
    held = await store.lease("alerts")
    assert held is not None and held.holder == "gw-a" and held.expires_at > time.time() + 50
    await store.release_lease("alerts", "gw-b")  # not b's: left alone
    assert await store.hold_lease("alerts", "gw-b", 60) is False
    await store.release_lease("alerts", "gw-a")
    assert await store.lease("alerts") is None
    assert await store.hold_lease("alerts", "gw-b", 60) is True
    assert await store.lease("nothing") is None


@pytest.mark.anyio
async def test_leases_by_prefix(store: Store) -> None:  # noqa: F811
    for name in ("instance:gw_1", "instance:gw%2", "alerts", "instancex"):
        assert await store.hold_lease(name, f"h-{name}", 60)
    found = await store.leases("instance:")
    assert [(lease.name, lease.holder) for lease in found] == [
        ("instance:gw%2", "h-instance:gw%2"), ("instance:gw_1", "h-instance:gw_1")]
    assert await store.leases("instance:gw_") == found[1:]  # no wildcards
    assert await store.leases("none:") == []


@pytest.mark.anyio
async def test_the_log_names_the_holder_and_when_its_lease_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await open_store(str(tmp_path / "gateway.db"))  # noqa: F811
    try:
        assert await store.hold_lease("alerts", "gw-elsewhere", 60)
        engine = AlertEngine(AlertsConfig, dict, lambda: store, instance_id="gw-here")
        with caplog.at_level(logging.INFO, logger="fast_mcp_gateway.alerts"):
            await engine.evaluate()
        assert engine.leading is False
        (line,) = [r.getMessage() for r in caplog.records if "lease" in r.getMessage()]
        expires = (await store.lease("alerts")).expires_at  # type: ignore[union-attr]
        assert "gateway gw-elsewhere holds" in line and "gw-here" in line
        # (read again: this gateway's now plus what the store's clock says is left)
        assert any(time.strftime("%H:%M:%S", time.localtime(expires + d)) in line
                   for d in (-1, 0, 1))
        assert "leaves to another gateway" not in line

        # A clean stop of the holder; this one takes over and says so.
        await store.release_lease("alerts", "gw-elsewhere")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="fast_mcp_gateway.alerts"):
            await engine.evaluate()
        assert engine.leading is True
        assert any("gw-here) now holds" in r.getMessage() for r in caplog.records)
    finally:
        await store.close()


def _lease_rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT name, holder FROM leases"))


def test_a_gateway_started_after_a_stopped_one_leads_at_once(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\nalerts:\n  evaluate_every: 600s\n")
    args = ("--config", str(config), "--db", str(db))

    def evaluated(status: dict[str, object]) -> bool:
        return int(status["evaluations"]) >= 1  # type: ignore[call-overload]

    with stdio_gateway(*args) as first:
        status = first.wait_for("gateway_alerts", evaluated)
        assert status["leading"] is True
        holder = first.proc.pid
        assert [n for n, h in _lease_rows(db) if h.endswith(f"-{holder}")] == ["alerts"]
        err = first.stop()  # SIGTERM, as a host quitting
    assert first.proc.returncode == 0, err
    assert _lease_rows(db) == []

    # Seconds later (a host restart): no other gateway runs, so this one leads.
    with stdio_gateway(*args) as second:
        status = second.wait_for("gateway_alerts", evaluated)
        assert status["leading"] is True
        err = second.stop()
    assert "holds the store's alerts lease" not in err and "leaves to" not in err
    assert _lease_rows(db) == []
