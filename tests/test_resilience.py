"""Replicas, balancing, failover, breakers, limits and fallbacks, end to end."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.upstream.replica import RestartPolicy, UpstreamState
from tests.fixtures import WITHIN, make_gateway, replica_server, stdio_entry

pytestmark = pytest.mark.anyio


def instances(*tags: str, weights: tuple[int, ...] = ()) -> list[dict[str, object]]:
    return [{"url": f"http://127.0.0.1:9/in-memory/{tag}",
             **({"weight": weights[i]} if weights else {})} for i, tag in enumerate(tags)]


async def test_round_robin_over_replicas() -> None:
    memory = {"a": replica_server("a"), "b": replica_server("b")}
    gateway = make_gateway({"svc": {"instances": instances("a", "b")}}, memory)
    async with Client(gateway.server) as client:
        seen = [(await client.call_tool("svc_whoami", {})).data for _ in range(6)]
    assert seen == ["a", "b", "a", "b", "a", "b"]


async def test_weighted_replicas() -> None:
    memory = {"a": replica_server("a"), "b": replica_server("b")}
    gateway = make_gateway({"svc": {"instances": instances("a", "b", weights=(3, 1)),
                                    "balance": "weighted"}}, memory)
    async with Client(gateway.server) as client:
        seen = Counter([(await client.call_tool("svc_whoami", {})).data for _ in range(8)])
    assert seen == {"a": 6, "b": 2}


async def test_hash_balancing_is_sticky_per_argument() -> None:
    memory = {t: replica_server(t) for t in "abc"}
    gateway = make_gateway({"svc": {"instances": instances("a", "b", "c"), "balance": "hash",
                                    "hash_key": "arguments.user_id"}}, memory)
    async with Client(gateway.server) as client:
        homes = {}
        for user in ("ann", "bob", "cyd", "dan", "eve"):
            answers = {(await client.call_tool("svc_whoami", {"user_id": user})).data
                       for _ in range(4)}
            assert len(answers) == 1, f"{user} moved between replicas: {answers}"
            homes[user] = answers.pop()
        assert len(set(homes.values())) > 1


async def test_a_down_replica_leaves_the_pool() -> None:
    calls: list[str] = []
    memory = {"a": replica_server("a", calls), "b": replica_server("b", calls)}
    gateway = make_gateway({"svc": {"instances": instances("a", "b")}}, memory)
    async with Client(gateway.server) as client:
        service = gateway.manager.get("svc")
        service.replicas[0].set_enabled(False)
        assert await service.replicas[0].wait_until(
            lambda: service.replicas[0].state is UpstreamState.DISABLED, 10)
        seen = {(await client.call_tool("svc_write", {"value": str(i)})).data for i in range(4)}
        assert seen == {"b"}
        assert calls == ["b:0", "b:1", "b:2", "b:3"]


async def test_an_open_breaker_fails_fast_and_says_when() -> None:
    memory = {"a": replica_server("a")}
    gateway = make_gateway({"svc": {
        # 1.5 s: the two slow calls run it out; the whoami after the reset must answer
        # inside it on a loaded machine (0.2 s left a hiccup's worth).
        "instances": instances("a"), "timeouts": {"call": 1.5},
        "circuit_breaker": {"failure_threshold": 2, "open_for": 60},
        "retry": {"attempts": 1},
    }}, memory)
    async with Client(gateway.server) as client:
        for _ in range(2):
            timed_out = await client.call_tool_mcp("svc_slow", {"seconds": 60})
            assert "did not answer within 1.5s" in timed_out.content[0].text
        fast = await client.call_tool_mcp("svc_whoami", {})
        assert fast.is_error
        assert "circuit open for" in fast.content[0].text
        assert "next probe in" in fast.content[0].text
        health = (await client.call_tool("gateway_health", {})).structured_content
        assert health["servers"][0]["replicas"][0]["breaker"] == "open"
        await client.call_tool("gateway_reset_breaker", {"name": "svc"})
        after = await client.call_tool_mcp("svc_whoami", {})
        if after.is_error:  # a loaded machine's hiccup past 1.5 s: a timeout, not the breaker
            assert "did not answer within 1.5s" in after.content[0].text, after.content
            after = await client.call_tool_mcp("svc_whoami", {})  # one failure: still closed
        assert not after.is_error and after.structured_content == {"result": "a"}, after


async def test_rate_limits_per_server_and_tool() -> None:
    memory = {"a": replica_server("a")}
    gateway = make_gateway({"svc": {
        "instances": instances("a"),
        "rate_limit": {"per_second": 1000, "burst": 1000,
                       "tools": {"write": {"per_second": 0.5, "burst": 2}}},
    }}, memory)
    async with Client(gateway.server) as client:
        for i in range(2):
            assert (await client.call_tool("svc_write", {"value": str(i)})).data == "a"
        limited = await client.call_tool_mcp("svc_write", {"value": "x"})
        assert limited.is_error
        text = limited.content[0].text
        assert "rate limited: tool 'write' allows 0.5 calls/s (burst 2); retry after" in text
        assert (await client.call_tool("svc_whoami", {})).data == "a"  # other tools unaffected


async def test_stale_results_of_read_only_tools_when_every_replica_fails() -> None:
    memory = {"a": replica_server("a")}
    gateway = make_gateway({"svc": {"instances": instances("a"),
                                    "fallback": {"stale_cache_ttl": 300},
                                    "retry": {"attempts": 1}}}, memory)
    async with Client(gateway.server) as client:
        fresh = await client.call_tool_mcp("svc_whoami", {"user_id": "u1"})
        assert "io.github.fast-mcp-gateway/stale" not in (fresh.meta or {})
        # Every replica unusable (here: the only one drained) while the server stays listed.
        await client.call_tool("gateway_drain_replica", {"name": "svc", "replica": 0})
        stale = await client.call_tool_mcp("svc_whoami", {"user_id": "u1"})
        assert not stale.is_error and stale.content[0].text == "a"
        assert stale.meta["io.github.fast-mcp-gateway/stale"]["age_seconds"] >= 0
        other = await client.call_tool_mcp("svc_write", {"value": "v"})
        assert other.is_error  # not read-only: never served from the cache
        assert "is draining" in other.content[0].text


def _append_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_non_idempotent_calls_never_run_twice_when_a_replica_dies(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    gateway = make_gateway({"svc": stdio_entry("replica.py", replicas=2)},
                           db=tmp_path / "gateway.db")
    async with Client(gateway.server) as client:
        service = gateway.manager.get("svc")
        async with anyio.create_task_group() as tg:
            results: list[object] = []

            async def call() -> None:
                results.append(await client.call_tool_mcp(
                    "svc_append", {"path": str(ledger), "delay": 30}))

            tg.start_soon(call)
            with anyio.fail_after(WITHIN):   # a call through a stdio replica's process
                while not _append_lines(ledger):  # noqa: ASYNC110 - file written by another process
                    await anyio.sleep(0.02)
            victim = int(_append_lines(ledger)[0])
            os.kill(victim, signal.SIGKILL)
        (result,) = results
        assert result.is_error  # type: ignore[attr-defined]
        assert "connection closed" in result.content[0].text  # type: ignore[attr-defined]
        assert _append_lines(ledger) == [str(victim)], "the call ran again elsewhere"
        page = (await client.call_tool("gateway_calls", {"tool": "svc_append"})).data
        (record,) = page.calls
        assert record.status == "error" and record.retries == 0
        assert record.route == [{"replica": record.replica, "outcome": "error"}]
        assert len(service.replicas) == 2


async def test_idempotent_calls_keep_succeeding_while_a_replica_is_killed() -> None:
    gateway = make_gateway({"svc": stdio_entry("replica.py", replicas=2,
                                               retry={"attempts": 3,
                                                      "backoff": {"initial": 0.01, "max": 0.05}})})
    async with Client(gateway.server) as client:
        service = gateway.manager.get("svc")
        pids = {r.pid for r in service.replicas}
        assert len(pids) == 2 and None not in pids
        ok = failed = 0
        killed = anyio.Event()

        async def caller() -> None:
            nonlocal ok, failed
            for _ in range(15):
                result = await client.call_tool_mcp("svc_read", {"delay": 0.02})
                ok, failed = (ok + 1, failed) if not result.is_error else (ok, failed + 1)

        async def killer() -> None:
            while ok < 40:  # noqa: ASYNC110 - wait until the load is running
                await anyio.sleep(0.01)
            os.kill(service.replicas[0].pid or 0, signal.SIGKILL)
            killed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(killer)
            for _ in range(16):
                tg.start_soon(caller)
        assert killed.is_set()
        assert failed == 0 and ok == 16 * 15
        first = service.replicas[0]
        assert await first.wait_until(lambda: first.state is UpstreamState.READY
                                      and first.connects >= 2, 20)
        assert first.pid not in pids  # restarted as a new process


async def test_a_retried_read_only_call_waits_for_its_crashed_server_to_restart(
        tmp_path: Path) -> None:
    """The server died during a read-only call: the retry policy sends it again, and the
    retry waits for the restart under way (as a new call does), where it failed at once
    with 'svc is reconnecting (...)' though the server was back a second later
    (@modelcontextprotocol/server-sequential-thinking killed mid-session)."""
    slow_restart = RestartPolicy(initial=1.0, maximum=1.0, jitter=0.0, crash_limit=3,
                                 crash_window=30.0)  # later than every retry's backoff
    gateway = make_gateway({"svc": stdio_entry("replica.py")}, restart=slow_restart,
                           db=tmp_path / "gateway.db")
    async with Client(gateway.server) as client:
        first = gateway.manager.get("svc").replicas[0].pid
        result = await client.call_tool_mcp("svc_crash_once",
                                            {"marker": str(tmp_path / "crashed")})
        assert not result.isError, result.content[0].text  # type: ignore[union-attr]
        assert result.structuredContent == {"result": gateway.manager.get("svc").replicas[0].pid}
        assert result.structuredContent["result"] != first
        page = (await client.call_tool("gateway_calls", {"tool": "svc_crash_once"})).data
        (record,) = page.calls
        assert record.status == "success" and record.retries == 1


async def test_drain_and_restart_replica_admin_tools() -> None:
    gateway = make_gateway({"svc": stdio_entry("replica.py", replicas=2)})
    async with Client(gateway.server) as client:
        service = gateway.manager.get("svc")
        drained = (await client.call_tool("gateway_drain_replica",
                                          {"name": "svc", "replica": 0})).structured_content
        assert drained["draining"] is True
        pids = {(await client.call_tool("svc_read", {})).data for _ in range(4)}
        assert pids == {service.replicas[1].pid}
        await client.call_tool("gateway_drain_replica", {"name": "svc", "replica": 0,
                                                         "drain": False})
        old = service.replicas[1].pid
        restarted = (await client.call_tool("gateway_restart_replica",
                                            {"name": "svc", "replica": 1})).structured_content
        assert restarted["state"] == "ready" and restarted["pid"] != old
        health = (await client.call_tool("gateway_health", {})).structured_content
        labels = [r["replica"] for r in health["servers"][0]["replicas"]]
        assert labels == ["svc#0", "svc#1"]


async def test_a_reconnected_replica_starts_with_a_closed_breaker_and_fresh_health() -> None:
    gateway = make_gateway({"well": stdio_entry("well.py",
                                                circuit_breaker={"failure_threshold": 2})})
    async with Client(gateway.server) as client:
        replica = gateway.manager.get("well").replicas[0]
        for t in (1.0, 2.0):  # e.g. the in-flight calls of a process that just died
            replica.breaker.record_failure(t)
            replica.health.record(t, False, 1.0)
        assert replica.breaker.state == "open"
        await client.call_tool("gateway_restart_replica", {"name": "well", "replica": 0})
        assert replica.breaker.state == "closed"
        assert replica.health.stats(replica._clock())[0] == 0
        assert (await client.call_tool("well_echo", {"text": "back"})).data == "back"


async def test_a_hung_replica_is_probed_unhealthy_leaves_the_pool_and_comes_back() -> None:
    gateway = make_gateway({"svc": stdio_entry(
        # The frozen replica's probe runs out its 2 s; the healthy one's (and the
        # thawed one's) must answer inside it, on a loaded machine too.
        "replica.py", replicas=2, health={"interval": 0.2, "min_samples": 1},
        timeouts={"health": 2},
    )})
    async with Client(gateway.server) as client:
        service = gateway.manager.get("svc")
        frozen, healthy = service.replicas
        assert frozen.pid is not None
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            assert await service.wait_until(
                lambda: frozen.status() == "UNHEALTHY", 10), "the probe never failed"
            pids = {(await client.call_tool("svc_read", {})).data for _ in range(6)}
            assert pids == {healthy.pid}
            report = (await client.call_tool("gateway_health", {})).structured_content
            states = {r["replica"]: r["health"] for r in report["servers"][0]["replicas"]}
            assert states["svc#0"] == "UNHEALTHY"
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        assert await service.wait_until(lambda: frozen.status() != "UNHEALTHY", 10)
        pids = {(await client.call_tool("svc_read", {})).data for _ in range(6)}
        assert pids == {frozen.pid, healthy.pid}


async def test_error_results_are_relayed_not_retried_and_do_not_trip_the_breaker() -> None:
    from tests.fixtures import flaky_server

    gateway = make_gateway({"flaky": {"instances": instances("f"),
                                      "circuit_breaker": {"failure_threshold": 2}}},
                           {"f": flaky_server()})
    async with Client(gateway.server) as client:
        results = [await client.call_tool_mcp("flaky_coin", {}) for _ in range(10)]
        assert [r.is_error for r in results] == [False, True] * 5
        assert results[1].content[0].text == "upstream failure #2"  # one call, no retry
        replica = gateway.manager.get("flaky").replicas[0]
        assert replica.breaker.state == "closed"


async def test_a_call_that_times_out_is_cancelled_upstream() -> None:
    from tests.fixtures import interactive_server, memory_entry

    events = {"started": anyio.Event(), "cancelled": anyio.Event()}
    gateway = make_gateway({"inter": memory_entry("inter", timeouts={"call": 0.3},
                                                  retry={"attempts": 1})},
                           {"inter": interactive_server(events)})
    async with Client(gateway.server) as client:
        result = await client.call_tool_mcp("inter_wait_for_cancel", {})
        assert result.is_error and "did not answer within 0.3s" in result.content[0].text
        with anyio.fail_after(10):
            await events["cancelled"].wait()


async def test_statistics_is_a_frozen_snapshot_of_one_replica() -> None:
    import dataclasses

    memory = {"a": replica_server("a"), "b": replica_server("b")}
    gateway = make_gateway({"svc": {"instances": instances("a", "b"),
                                    "circuit_breaker": {"failure_threshold": 2}}}, memory)
    async with Client(gateway.server) as client:
        first, second = gateway.manager.get("svc").replicas
        before = first.statistics()
        assert (before.label, before.replica, before.state, before.breaker) == (
            "svc#0", 0, UpstreamState.READY, "closed")
        assert before.inflight == 0 and before.connects == 1 and before.restarts == 0
        assert before.ewma_latency_ms is None and before.last_error is None
        assert before.uptime_seconds is not None and before.uptime_seconds >= 0
        for _ in range(4):
            await client.call_tool("svc_whoami", {})
        after = first.statistics()
        assert after.samples == 2 and after.success_rate == 1.0
        assert after.ewma_latency_ms is not None and after.median_latency_ms is not None
        assert before.samples == 0  # a snapshot does not follow the replica
        with pytest.raises(dataclasses.FrozenInstanceError):
            after.inflight = 3  # type: ignore[misc]
        now = first._clock()
        for t in (now - 1, now):
            first.breaker.record_failure(t)
        opened = first.statistics()
        assert opened.breaker == "open" and opened.breaker_retry_in_seconds is not None
        assert opened.breaker_open_seconds is not None
        assert second.statistics().breaker == "closed"
        seen = {(await client.call_tool("svc_whoami", {})).data for _ in range(3)}
        assert seen == {"b"}  # routing reads the same breaker the snapshot shows
