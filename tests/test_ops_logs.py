"""The log as an operator reads it (a team's HTTP gateway): a replica is named as
``gateway_health`` names it, a crash is one WARNING line, a breaker's trips and
recoveries are said once each, a fresh session's health does not start with
"UNHEALTHY -> UNKNOWN", and a reload is one readable line (not a dict's repr)."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway, GatewaySettings
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.policies import HealthStatus
from fast_mcp_gateway.upstream.stats import ReplicaAccounting
from tests.fixtures import (
    FAST_RESTART,
    PY,
    SERVERS,
    interactive_server,
    make_gateway,
    memory_entry,
    serve_http,
    stdio_entry,
    until,
)

pytestmark = pytest.mark.anyio


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == name]


def accounting(**breaker: float) -> tuple[ReplicaAccounting, list[float]]:
    now = [1000.0]
    config = ServerConfig(name="rep", command="x", circuit_breaker=breaker)
    return ReplicaAccounting(config, "rep#1", clock=lambda: now[0]), now


def test_a_breaker_trip_and_its_recovery_are_logged_once_each(
        caplog: pytest.LogCaptureFixture) -> None:
    """The breaker opened and closed in silence (the style: breaker transitions at
    INFO/WARNING): an operator saw calls refused "circuit open" with no line saying
    when or why it opened."""
    caplog.set_level(logging.DEBUG, logger="fast_mcp_gateway.upstream.stats")
    stats, now = accounting(failure_threshold=2, window=30, open_for=5)
    for _ in range(5):  # two open it; the rest, still ending after, say nothing more
        stats.record(False, now[0])
    now[0] += 6
    assert stats.breaker.allow(now[0])  # half-open: one probe
    stats.record(False, now[0])  # the probe failed: open again
    now[0] += 6
    assert stats.breaker.allow(now[0])
    stats.record(True, now[0])  # closed
    said = lines(caplog, "fast_mcp_gateway.upstream.stats")
    assert [level for level, _ in said] == [logging.WARNING, logging.WARNING, logging.INFO]
    assert said[0][1] == ("upstream rep#1: circuit breaker open (2 failed call(s) within "
                          "30s): calls skip it for 5s, then a probe call tests it "
                          "(gateway_reset_breaker closes it now)")
    assert "circuit breaker open (its probe call failed)" in said[1][1]
    assert said[2][1] == "upstream rep#1: circuit breaker closed: its probe call succeeded"


def test_a_new_sessions_health_starts_unknown_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each start and restart logged "health UNHEALTHY -> UNKNOWN" (a replica without a
    session is UNHEALTHY in silence), and a later "UNHEALTHY -> HEALTHY" for a replica
    no line had called unhealthy."""
    caplog.set_level(logging.DEBUG, logger="fast_mcp_gateway.upstream.stats")
    stats, now = accounting()
    assert stats.status(ready=False) is HealthStatus.UNHEALTHY  # starting
    assert stats.status(ready=True) is HealthStatus.UNKNOWN  # ready, no call yet
    for _ in range(3):
        stats.record(True, now[0])
    assert stats.status(ready=True) is HealthStatus.HEALTHY
    assert stats.status(ready=False) is HealthStatus.UNHEALTHY  # crashed: restarting
    stats.new_session(0.1)
    assert stats.status(ready=True) is HealthStatus.UNKNOWN
    assert lines(caplog, "fast_mcp_gateway.upstream.stats") == [
        (logging.INFO, "upstream rep#1: health UNKNOWN -> HEALTHY")]


async def test_a_replica_crash_is_one_warning_naming_the_replica(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With ``replicas: 2`` every state line said "upstream rep: ..." (which one?), and a
    crash was two lines: "process exited" (WARNING) and "ready -> reconnecting (the
    server process exited with code 3 ...)" at INFO."""
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.upstream.supervisor")
    gateway = make_gateway({"rep": stdio_entry("well.py", replicas=2)})
    async with Client(gateway.server) as client:
        replicas = gateway.manager.services["rep"].replicas
        await until(lambda: all(str(r.statistics().state) == "ready" for r in replicas))
        assert (await client.call_tool("rep_crash", {}, raise_on_error=False)).is_error
        await until(lambda: sum(
            "reconnecting -> ready" in m for _, m in
            lines(caplog, "fast_mcp_gateway.upstream.supervisor")) == 1)
    said = lines(caplog, "fast_mcp_gateway.upstream.supervisor")
    assert sorted(m for _, m in said if "starting -> ready" in m) == [
        "upstream rep#0: starting -> ready", "upstream rep#1: starting -> ready"]
    crashed = [(level, m) for level, m in said if "ready -> reconnecting" in m]
    assert len(crashed) == 1 and crashed[0][0] == logging.WARNING, said
    assert crashed[0][1].startswith(("upstream rep#0: ready -> reconnecting (",
                                     "upstream rep#1: ready -> reconnecting (")), said
    assert "exited with code 3" in crashed[0][1]
    assert not [m for _, m in said if m.endswith("process exited")], said


async def test_a_reload_is_one_line_naming_what_changed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reload logged ``ChangeReport``'s dict (every unchanged server by name, empty
    fields, a quoted copy of the invalid entry's error) at INFO, even when an entry was
    invalid."""
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway.admin.control")
    path = tmp_path / "servers.yaml"
    well = f"    command: {PY}\n    args: ['{SERVERS / 'well.py'}']\n"
    path.write_text(f"servers:\n  a:\n{well}  b:\n{well}  c:\n{well}")
    gateway = Gateway(load_config(path), GatewaySettings(config=path, db=None,
                                                         reload_interval=0),
                      restart=FAST_RESTART)
    async with Client(gateway.server):
        path.write_text(f"servers:\n  a:\n{well}  b:\n{well}    replicas: two\n"
                        f"  c:\n{well}    description: C\n  d:\n{well}"
                        "  e:\n    command: /nonexistent/bin\n")
        report = await gateway.reload_on_signal("SIGHUP")
        assert report.invalid and report.added == ["d", "e"]
        path.write_text(f"servers:\n  a:\n{well}  b:\n{well}  c:\n{well}"
                        "    description: C\n  d:\n{well}".replace("{well}", well)
                        + "  e:\n    command: /nonexistent/bin\n")
        await gateway.reload_on_signal("SIGHUP")
    reloads = [(level, m) for level, m in lines(caplog, "fast_mcp_gateway.admin.control")
               if m.startswith("config reloaded")]
    assert [level for level, _ in reloads] == [logging.WARNING, logging.INFO], reloads
    first = reloads[0][1]
    # e's state (reconnecting, or failed once its restarts gave up) and why.
    assert first.startswith("config reloaded (signal:SIGHUP): added d, e; updated in place "
                            "c; first connect failed: e: "), first
    assert "command not found: /nonexistent/bin does not exist" in first
    assert first.endswith("; invalid entries (logged above; fix and save): b; 1 server(s) "
                          "unchanged"), first
    assert reloads[1][1] == "config reloaded (signal:SIGHUP): no change (5 server(s) unchanged)"


async def test_a_call_cut_by_the_stop_is_recorded_as_the_stops(tmp_path: Path) -> None:
    """SIGTERM with a call in flight: its record said "the host cancelled it or went
    away", sending the operator to look at the host."""
    events = {"started": anyio.Event(), "cancelled": anyio.Event()}
    gateway = make_gateway({"inter": memory_entry("inter")},
                           {"inter": interactive_server(events)},
                           db=str(tmp_path / "store.db"))
    async with serve_http(gateway.http_app("http")) as base:
        async with Client(f"{base}/mcp") as client, anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool_mcp, "inter_wait_for_cancel", {})
            with anyio.fail_after(30):
                await events["started"].wait()
            gateway.request_stop()  # what SIGTERM does; uvicorn then cuts the call
            tg.cancel_scope.cancel()
        async with httpx2.AsyncClient(base_url=base) as http:
            with anyio.fail_after(30):
                # Queued as the cancellation passes the pipeline: polled over REST.
                while not (calls := (await http.get(  # noqa: ASYNC110
                        "/api/v1/logs/invocations", params={"status": "cancelled"})
                        ).json()["calls"]):
                    await anyio.sleep(0.05)
    assert calls[0]["error"] == (
        "cancelled before it finished: the gateway was stopping (a restart or a deploy), "
        "not the host; it may have run upstream")


def test_a_connection_lost_under_a_write_is_said_in_words() -> None:
    """PostgreSQL restarted mid-traffic: the outage line said "(cannot call
    Transaction.__aexit__(): the underlying connection is closed)", asyncpg's words."""
    import asyncpg

    from fast_mcp_gateway.store.postgres_feed import _reason

    lost = asyncpg.InterfaceError(
        "cannot call Transaction.__aexit__(): the underlying connection is closed")
    assert _reason(lost) == ("the server closed the connection: it stopped, restarted or "
                             "ended the session")
    other = asyncpg.InterfaceError("cannot perform operation: another operation is in "
                                   "progress")
    assert _reason(other) == str(other)
