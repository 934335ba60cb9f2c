"""A change a running server takes as it runs: no restart for a description, a curation
rule, a retry or rate-limit setting (``ServerConfig.differs_only_in_place``,
``Service.reconfigure``).  A restart would end the server's process and whatever state
it keeps in memory (a browser it drives, a cache it warmed) for a change of how the
gateway shows or routes it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway import Gateway, GatewaySettings, load_config
from fast_mcp_gateway.config.schema import IN_PLACE, ServerConfig
from fast_mcp_gateway.errors import NoHealthyReplica
from fast_mcp_gateway.routing.attempts import CallPath
from fast_mcp_gateway.upstream.replica import RestartPolicy, UpstreamState
from tests.fixtures import (
    alpha_server,
    beta_server,
    make_gateway,
    memory_entry,
    memory_transports,
    stdio_entry,
)
from tests.test_power_user import gated_server

pytestmark = pytest.mark.anyio


def alpha_from_file(tmp_path: Path, settings: str) -> tuple[Gateway, Path, str]:
    """A gateway of one server, alpha (in memory), read from a file in which alpha's
    entry ends with ``settings`` (YAML lines); the gateway, the file and alpha's URL."""
    url = memory_entry("alpha")["url"]
    path = tmp_path / "servers.yaml"
    path.write_text(f"servers:\n  alpha:\n    url: {url}\n{settings}")
    return Gateway(load_config(path), GatewaySettings(config=path, db=None, reload_interval=0),
                   transport_factory=memory_transports({"alpha": alpha_server()})), path, url


async def tool_names(client: Client[Any]) -> set[str]:
    return {tool.name for tool in await client.list_tools()}


async def test_a_curation_and_policy_edit_is_taken_without_a_restart(tmp_path: Path) -> None:
    started, gate = anyio.Event(), anyio.Event()
    path = tmp_path / "servers.yaml"
    url = memory_entry("slow")["url"]
    path.write_text(f"servers:\n  slow:\n    url: {url}\n")
    gateway = Gateway(load_config(path),
                      GatewaySettings(config=path, db=None, reload_interval=0),
                      transport_factory=memory_transports({"slow": gated_server(started, gate)}))
    async with Client(gateway.server) as client:
        service = gateway.manager.get("slow")
        replica, session = service.replicas[0], service.replicas[0].session
        assert {"slow_slow", "slow_other"} <= await tool_names(client)
        results: list[Any] = []

        async def call() -> None:
            results.append(await client.call_tool_mcp("slow_slow", {}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            with anyio.fail_after(30):
                await started.wait()
            path.write_text(f"servers:\n  slow:\n    url: {url}\n"
                            "    description: the gated one\n"
                            "    tools: {exclude: [other]}\n"
                            "    retry: {attempts: 1}\n"
                            "    rate_limit: {per_second: 0.001, burst: 1}\n")
            report = await gateway.reload_config()
            assert report.updated == ["slow"] and report.restarted == [], report
            # The same service, replica and session: nothing was restarted.
            assert gateway.manager.get("slow") is service and service.replicas[0] is replica
            assert replica.session is session and replica.restarts == 0
            assert "slow_other" not in await tool_names(client)  # the rule holds at once
            gate.set()
        assert not results[0].is_error and results[0].content[0].text == "done"
        servers = (await client.call_tool("gateway_list_servers", {})).structured_content
        assert servers["servers"][0]["description"] == "the gated one"
        # The new rate limit (one call, then one per 1000 s) is the one applied.
        assert not (await client.call_tool_mcp("slow_slow", {})).is_error
        limited = await client.call_tool_mcp("slow_slow", {})
        assert limited.is_error and "rate limit" in limited.content[0].text.lower()
        # A change of how the server is reached or named still restarts it.
        path.write_text(f"servers:\n  slow:\n    url: {url}\n    namespace: s\n")
        report = await gateway.reload_config()
        assert report.restarted == ["slow"] and report.updated == [], report
        assert gateway.manager.get("slow") is not service


async def test_updating_a_description_keeps_the_servers_process(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text("servers: {}\n")
    gateway = Gateway(load_config(path), GatewaySettings(config=path, db=tmp_path / "g.db",
                                                         reload_interval=0))
    entry = stdio_entry("well.py")
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_add_server", {"name": "well", "config": entry})
        replica = gateway.manager.get("well").replicas[0]
        pid = replica.pid
        assert pid is not None
        updated = (await client.call_tool("gateway_update_server", {
            "name": "well", "config": {**entry, "description": "kept running"}})).data
        assert updated.updated == ["well"] and updated.restarted == [], updated
        assert replica.pid == pid and gateway.manager.get("well").replicas[0] is replica
        echoed = await client.call_tool("well_echo", {"text": "still here"})
        assert echoed.content[0].text == "still here"
        # The same settings again (a form saved as it was): nothing to change.
        again = (await client.call_tool("gateway_update_server", {
            "name": "well", "config": {**entry, "description": "kept running"}})).data
        assert again.unchanged == ["well"] and again.updated == again.restarted == [], again
        assert replica.pid == pid and gateway.manager.get("well").replicas[0] is replica
        # env is how it is started: a new process.
        restarted = (await client.call_tool("gateway_update_server", {
            "name": "well", "config": {**entry, "env": {"X": "1"}}})).data
        assert restarted.restarted == ["well"], restarted
        new = gateway.manager.get("well").replicas[0]
        assert new is not replica
        with anyio.fail_after(60):
            while new.pid in (None, pid):
                await new.wait_until(lambda: new.pid not in (None, pid), 30)


async def test_the_same_settings_again_restart_a_failed_server(tmp_path: Path) -> None:
    """An update repeating a server's settings changes nothing (above), but a server
    that failed (parked after its crashes) is not running them: the update restarts it,
    as a user re-saving it after fixing what it needs expects."""
    entry = {"command": sys.executable, "args": ["-c", "raise SystemExit(3)"]}
    gateway = make_gateway({"broken": entry}, db=tmp_path / "g.db", restart=RestartPolicy(
        initial=0.05, maximum=0.2, jitter=0.0, crash_limit=1, crash_window=60.0))
    async with Client(gateway.server) as client:
        service = gateway.manager.get("broken")
        assert await service.wait_until(lambda: service.state is UpstreamState.FAILED, 60), \
            service.state
        again = (await client.call_tool("gateway_update_server", {
            "name": "broken", "config": entry})).data
        assert again.restarted == ["broken"] and again.unchanged == [], again


def test_only_the_in_place_settings_differ() -> None:
    base = ServerConfig(name="a", url="http://127.0.0.1:1/mcp")
    assert not base.differs_only_in_place(base)  # no change at all
    assert base.differs_only_in_place(base.model_copy(update={"description": "x"}))
    assert not base.differs_only_in_place(base.model_copy(update={
        "description": "x", "url": "http://127.0.0.1:2/mcp"}))
    assert not base.differs_only_in_place(base.model_copy(update={"namespace": "n"}))
    # Nothing that reaches, starts or names a server is taken in place.
    reach = {"name", "command", "args", "env", "cwd", "url", "headers", "transport",
             "auth", "namespace", "enabled", "protocol", "timeouts", "instances",
             "replicas", "isolation", "health", "circuit_breaker", "max_message_bytes",
             "stderr_lines", "max_clients", "idle_timeout", "secrets"}
    assert not (reach & IN_PLACE)
    assert set(ServerConfig.model_fields) >= IN_PLACE


def _stored_gateway(tmp_path: Path, text: str) -> Gateway:
    path = tmp_path / "servers.yaml"
    path.write_text(text)
    return Gateway(load_config(path),
                   GatewaySettings(config=path, db=tmp_path / "g.db", reload_interval=0),
                   transport_factory=memory_transports({"alpha": alpha_server()}))


async def test_an_update_of_a_server_disabled_at_runtime_runs_it_as_stored(
        tmp_path: Path) -> None:
    """Disabled with gateway_disable_server, then updated without 'enabled: false': the
    registration is stored enabled, so the server runs (a restart did that; taken in
    place, it stayed disabled while the store said enabled)."""
    url = memory_entry("alpha")["url"]
    gateway = _stored_gateway(tmp_path, f"servers:\n  alpha:\n    url: {url}\n")
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_disable_server", {"name": "alpha"})
        await client.call_tool("gateway_update_server", {
            "name": "alpha", "config": {"url": url, "description": "back"}})
        assert gateway.store is not None
        assert [r.enabled for r in await gateway.store.servers()] == [True]
        service = gateway.manager.get("alpha")
        assert await service.wait_until(lambda: service.state is UpstreamState.READY, 30), \
            service.state
        assert "alpha_add" in await tool_names(client)


async def test_an_update_saying_enabled_false_disables_a_server_enabled_at_runtime(
        tmp_path: Path) -> None:
    url = memory_entry("alpha")["url"]
    gateway = _stored_gateway(tmp_path, f"servers:\n  alpha:\n    url: {url}\n"
                                        "    enabled: false\n")
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_enable_server", {"name": "alpha"})
        await client.call_tool("gateway_update_server", {
            "name": "alpha", "config": {"url": url, "enabled": False, "description": "off"}})
        service = gateway.manager.get("alpha")
        assert await service.wait_until(lambda: service.state is UpstreamState.DISABLED, 30), \
            service.state
        assert "alpha_add" not in await tool_names(client)


async def test_a_reload_does_not_restart_a_server_enabled_at_runtime(tmp_path: Path) -> None:
    """A file server written 'enabled: false' and enabled with gateway_enable_server: a
    reload (of an edit elsewhere in the file) found its enabled flag 'changed' and
    restarted its running process."""
    url = memory_entry("alpha")["url"]
    text = f"servers:\n  alpha:\n    url: {url}\n    enabled: false\n"
    gateway = _stored_gateway(tmp_path, text)
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_enable_server", {"name": "alpha"})
        service = gateway.manager.get("alpha")
        replica, session = service.replicas[0], service.replicas[0].session
        assert session is not None
        assert gateway.settings.config is not None
        gateway.settings.config.write_text(text + "    description: edited\n")
        report = await gateway.reload_config()
        assert report.restarted == [] and report.updated == ["alpha"], report
        assert gateway.manager.get("alpha") is service and replica.session is session
        assert service.config.description == "edited"


async def test_a_rate_limit_edit_keeps_what_the_buckets_hold(tmp_path: Path) -> None:
    """A rate limit changed as the server runs keeps the calls already counted: made
    anew, a full bucket let a burst through right after the edit (a per-tool limit
    added refilled the server's bucket too)."""
    limit = "    rate_limit: {per_second: 0.001, burst: 1}\n"
    gateway, path, url = alpha_from_file(tmp_path, limit)
    async with Client(gateway.server) as client:
        assert not (await client.call_tool_mcp("alpha_wipe", {})).is_error
        path.write_text(f"servers:\n  alpha:\n    url: {url}\n"
                        "    rate_limit: {per_second: 0.001, burst: 1, tools: "
                        "{other: {per_second: 5}}}\n")
        assert (await gateway.reload_config()).updated == ["alpha"]
        limited = await client.call_tool_mcp("alpha_wipe", {})
        assert limited.is_error and "rate limit" in limited.content[0].text.lower()
        # A lower burst holds at once; a higher one fills at the rate, not in one go.
        path.write_text(f"servers:\n  alpha:\n    url: {url}\n"
                        "    rate_limit: {per_second: 0.001, burst: 50}\n")
        assert (await gateway.reload_config()).updated == ["alpha"]
        limited = await client.call_tool_mcp("alpha_wipe", {})
        assert limited.is_error and "rate limit" in limited.content[0].text.lower()


async def test_a_shared_store_update_is_taken_in_place_by_the_other_gateway(
        pg_url: str) -> None:
    """Two gateways on one PostgreSQL: an update of a description through A is taken as
    the server runs on B too (``routing.converge``); a server disabled through B
    and updated through A without 'enabled: false' (stored enabled) runs again on B
    at once -- taken in place, it stayed disabled there until the next full reconcile."""
    a, b = (make_gateway({"alpha": memory_entry("alpha")},
                         {"alpha": alpha_server(), "beta": beta_server()},
                         db=pg_url, instance_id=name) for name in "AB")
    beta = memory_entry("beta")
    async with Client(a.server) as host_a, Client(b.server) as host_b:
        await host_a.call_tool("gateway_add_server", {"name": "beta", "config": beta})
        applied = b.control.remote_applied
        assert await applied.wait_until(lambda: "beta" in b.manager.services, 30)
        service = b.manager.get("beta")
        assert await service.wait_until(lambda: service.state is UpstreamState.READY, 30)
        session = service.replicas[0].session
        updated = (await host_a.call_tool("gateway_update_server", {
            "name": "beta", "config": {**beta, "description": "shared"}})).data
        assert updated.updated == ["beta"], updated
        assert await applied.wait_until(lambda: service.config.description == "shared", 30)
        assert b.manager.get("beta") is service and service.replicas[0].session is session
        await host_b.call_tool("gateway_disable_server", {"name": "beta"})
        on_a = a.manager.get("beta")
        assert await a.control.remote_applied.wait_until(
            lambda: on_a.state is UpstreamState.DISABLED, 30)
        await host_a.call_tool("gateway_update_server", {
            "name": "beta", "config": {**beta, "description": "again"}})
        assert await applied.wait_until(
            lambda: b.manager.get("beta").config.description == "again", 30)
        running = b.manager.get("beta")
        assert await running.wait_until(lambda: running.state is UpstreamState.READY, 10), \
            running.state
        assert "beta_echo" in await tool_names(host_b)


async def test_retries_raised_while_a_call_retries_end_it_with_its_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload raising ``retry.attempts`` while a call waited between attempts: the call
    had counted its attempts from the old policy and asked the new one whether to go
    on, so it ran out of attempts the policy still allowed and ended in an internal
    AssertionError instead of the upstream's error."""
    retry = "    retry: {{attempts: {}, backoff: {{initial: 0, max: 0}}}}\n"
    gateway, path, url = alpha_from_file(tmp_path, retry.format(2))
    async with Client(gateway.server):
        service = gateway.manager.get("alpha")
        service.draining.add(0)  # every attempt finds no replica: retried ("connect")
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 1:
                path.write_text(f"servers:\n  alpha:\n    url: {url}\n{retry.format(4)}")
                assert (await gateway.reload_config()).updated == ["alpha"]

        monkeypatch.setattr(service, "_sleep", sleep)
        path_ = CallPath()
        with pytest.raises(NoHealthyReplica, match="draining"):
            await service.call_tool("wipe", {}, None, path=path_)
        assert len(waits) == 3 and len(path_.attempts) == 0  # 4 attempts, none sent


async def test_a_per_client_server_is_still_restarted(tmp_path: Path) -> None:
    """Each host's own session was opened from the old config (ClientSessions): no
    in-place update for a per_client server."""
    gateway, path, url = alpha_from_file(tmp_path, "    isolation: per_client\n")
    async with Client(gateway.server) as client:
        service = gateway.manager.get("alpha")
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        path.write_text(f"servers:\n  alpha:\n    url: {url}\n    isolation: per_client\n"
                        "    description: own sessions\n")
        report = await gateway.reload_config()
        assert report.restarted == ["alpha"] and report.updated == [], report
        assert gateway.manager.get("alpha") is not service
        assert (await client.call_tool("alpha_add", {"a": 2, "b": 2})).data == 4


async def test_an_import_replacing_a_server_reports_an_in_place_update(
        tmp_path: Path) -> None:
    url = memory_entry("alpha")["url"]
    gateway = _stored_gateway(tmp_path, f"servers:\n  alpha:\n    url: {url}\n")
    async with Client(gateway.server) as client:
        service = gateway.manager.get("alpha")
        imported = (await client.call_tool("gateway_import_servers", {
            "content": f"servers:\n  alpha:\n    url: {url}\n    description: imported\n",
            "replace_existing": True})).data
        assert imported.updated == ["alpha"] and imported.restarted == [], imported
        assert gateway.manager.get("alpha") is service
        assert service.config.description == "imported"


async def test_a_lowered_cache_ttl_and_result_limit_hold_for_what_is_cached(
        tmp_path: Path) -> None:
    """A cached result kept the expiry and size judgement of the rule it was stored
    under: after a reload lowered ``ttl`` it was served with a negative age, and after
    one set ``max_result_bytes`` it was served over the limit a fresh call is refused."""
    gateway, path, url = alpha_from_file(tmp_path, "    cache: {ttl: 3600}\n")
    cache_key = "io.github.fast-mcp-gateway/cache"
    async with Client(gateway.server) as client:
        await client.call_tool_mcp("alpha_add", {"a": 1, "b": 2})
        hit = await client.call_tool_mcp("alpha_add", {"a": 1, "b": 2})
        assert (hit.meta or {})[cache_key]["hit"] is True
        path.write_text(f"servers:\n  alpha:\n    url: {url}\n    cache: {{ttl: 3600}}\n"
                        "    max_result_bytes: 64\n")
        assert (await gateway.reload_config()).updated == ["alpha"]
        refused = await client.call_tool_mcp("alpha_add", {"a": 1, "b": 2})
        assert refused.is_error and "max_result_bytes (64)" in refused.content[0].text
        path.write_text(f"servers:\n  alpha:\n    url: {url}\n    cache: {{ttl: 3600}}\n")
        assert (await gateway.reload_config()).updated == ["alpha"]
        await client.call_tool_mcp("alpha_add", {"a": 1, "b": 2})  # stored again
        path.write_text(f"servers:\n  alpha:\n    url: {url}\n    cache: {{ttl: 0.001}}\n")
        assert (await gateway.reload_config()).updated == ["alpha"]  # takes over 1 ms
        fresh = await client.call_tool_mcp("alpha_add", {"a": 1, "b": 2})
        assert cache_key not in (fresh.meta or {}), fresh.meta
