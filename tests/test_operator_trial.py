"""Defects a team operator's trial found (HTTP gateways on one PostgreSQL, scoped tokens,
runtime registrations, reloads, outages), each pinned by the cheapest test that shows it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway import BackgroundTaskFailed, Gateway, GatewaySettings
from fast_mcp_gateway.admin.context import CONFIG_FILE
from fast_mcp_gateway.alerts import AlertEngine
from fast_mcp_gateway.cli.main import _load
from fast_mcp_gateway.config.alerts import AlertsConfig
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.front.background import background
from fast_mcp_gateway.store import StoreUnavailable
from fast_mcp_gateway.telemetry.redaction import credential_args, mask_text
from tests.fixtures import (
    alpha_server,
    beta_server,
    make_gateway,
    memory_entry,
    memory_transports,
)
from tests.stdio_gateway import REPO
from tests.test_rest import OPS, demo, serving


@pytest.mark.parametrize("line", [
    "echo boom API_KEY=sk-live-abcdef123 >&2; exit 3",
    "GITHUB_TOKEN=sk-live-abcdef123 exec npx -y @modelcontextprotocol/server-github",
    "export GITHUB_TOKEN='sk-live-abcdef123'&& npx -y server",
    "npx -y some-server --api-key sk-live-abcdef123 --verbose",
])
def test_a_credential_inside_a_shell_line_is_masked(line: str) -> None:
    """``command: sh, args: ["-c", "GITHUB_TOKEN=ghp_... npx ..."]`` (a common way to pass
    a key in Claude Desktop files) kept the key in clear: in the shown settings, the
    audit log, and every stderr tail, last_error and health record quoting it, because
    only a whole argument of the form ``NAME=value`` was recognised."""
    assert credential_args(["-c", line]) == ["sk-live-abcdef123"]
    config = ServerConfig(name="gh", command="sh", args=("-c", line))
    assert "sk-live" not in str(config.redacted())
    assert mask_text(f"stderr: {line}") == f"stderr: {line.replace('sk-live-abcdef123', '***')}"


def test_a_shell_line_without_credentials_registers_nothing() -> None:
    assert credential_args(["-c", "cd /srv && exec npx -y server --port 8080 --auth-mode=none"]
                           ) == []


@pytest.mark.anyio
async def test_a_reload_does_not_warn_about_a_token_naming_a_runtime_registration(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A token limited to servers an admin registers at runtime (a team's own servers)
    was warned about at every reload as naming servers "not configured", while they ran;
    a name nothing registers is still warned about."""
    auth = {"tokens": [{"name": "bob", "token": "mgw_bob-runtime-servers-4f0a2", "scopes":
                        ["admin"], "servers": ["beta", "gamma"]}]}
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"gateway": {"auth": auth},
                                  "servers": {"alpha": memory_entry("alpha")}}))
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           options={"auth": auth}, config=config, db=tmp_path / "gw.db")
    async with Client(gateway.server) as client:
        added = await client.call_tool("gateway_add_server", {
            "name": "beta", "config": memory_entry("beta")})
        assert added.structured_content["added"] == ["beta"]  # type: ignore[index]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fast_mcp_gateway.config.auth"):
            report = await client.call_tool("gateway_reload_config", {})
        assert report.structured_content["error"] is None  # type: ignore[index]
        [warning] = [r.getMessage() for r in caplog.records
                     if "names servers" in r.getMessage()]
        assert "names servers that are not configured: 'gamma';" in warning, warning


@pytest.mark.anyio
async def test_a_restart_does_not_warn_about_a_token_naming_a_runtime_registration(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The reload's false warning, at start: ``serve`` and ``mcp-gateway servers``
    validate the file before they read the store, and warned that a token names
    servers "not configured" that the store registers.  They check tokens' servers
    once the registrations are read; a name nothing registers is still warned about."""
    auth = {"tokens": [{"name": "bob", "token": "mgw_bob-runtime-servers-4f0a2", "scopes":
                        ["admin"], "servers": ["beta", "gamma"]}]}
    config, db = tmp_path / "servers.yaml", tmp_path / "gw.db"
    config.write_text(json.dumps({"gateway": {"auth": auth},
                                  "servers": {"alpha": memory_entry("alpha")}}))
    memory = {"alpha": alpha_server(), "beta": beta_server()}
    gateway = make_gateway({"alpha": memory_entry("alpha")}, memory,
                           options={"auth": auth}, config=config, db=db)
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_add_server", {"name": "beta",
                                                      "config": memory_entry("beta")})

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "names servers" in r.getMessage()]

    caplog.clear()
    settings = GatewaySettings(config=str(config), db=str(db), connect_timeout=10,
                               startup_wait=600)
    with caplog.at_level(logging.WARNING, logger="fast_mcp_gateway.config.auth"):
        restarted = Gateway(_load(settings, "serve"), settings,
                            transport_factory=memory_transports(memory))
        assert said() == []  # not yet: the registrations are not read
        async with Client(restarted.server):
            [warning] = said()
    assert "names servers that are not configured: 'gamma';" in warning, warning
    # The servers it lists as configured are the runtime ones too (it said "alpha" alone).
    assert "configured servers: alpha, beta." in warning, warning

    listed = await anyio.run_process([sys.executable, "-m", "fast_mcp_gateway", "servers",
                                      "--config", str(config), "--db", str(db)], check=False)
    stderr = listed.stderr.decode()
    assert listed.returncode == 0, stderr
    [line] = [line for line in stderr.splitlines() if "names servers" in line]
    assert "names servers that are not configured: 'gamma';" in line, stderr


@pytest.mark.anyio
async def test_a_registration_that_does_not_connect_says_so_in_its_answer(
        tmp_path: Path) -> None:
    """POST /api/v1/servers (and gateway_add_server) waited for the server's first connect
    attempt, then answered 201 {"added": ["x"]} alike for a server that runs and one whose
    command does not exist: the operator learned of the failure only by asking again.
    An add whose server does not start is refused (422, not kept); an update keeps its
    new settings and its answer names the failed attempt (``connect_failed``)."""
    async with serving(tmp_path, {"notes": demo("notes")}) as (api, _):
        broken = await api("POST", "/servers", OPS, json={
            "name": "x", "config": {"command": str(tmp_path / "no-such-server")}})
        assert broken.status_code == 422, broken.text
        assert "not added" in broken.text and "command not found" in broken.text
        fine = await api("POST", "/servers", OPS, json={"name": "y", "config": demo("clock")})
        assert fine.json()["added"] == ["y"] and fine.json()["connect_failed"] == {}, fine.text
        changed = await api("PUT", "/servers/y", OPS, json={
            "config": {"command": str(tmp_path / "no-such-server")}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["restarted"] == ["y"]
        assert "command not found" in changed.json()["connect_failed"]["y"], changed.text


@pytest.mark.anyio
async def test_a_down_alert_does_not_resolve_when_the_gateway_stops_its_server() -> None:
    """A gateway stopping (a deploy, a restart) stops its upstreams; its state rule then
    read 'stopped' as healthy and posted "RESOLVED ...: state is stopped again" for a
    server still broken, then FIRING again once restarted: a flap on every restart.
    'stopped' and 'starting' say nothing of the server's health: the alert holds; it
    resolves when the server is ready (or disabled, an operator's choice)."""
    states = {"svc": "reconnecting"}
    config = AlertsConfig.model_validate({"rules": [{"name": "down", "metric": "not_ready"}]})
    engine = AlertEngine(lambda: config, lambda: states, lambda: None)
    assert [t.state for t in await engine.evaluate(full=False)] == ["firing"]
    for state in ("stopped", "starting"):
        states["svc"] = state
        assert await engine.evaluate(full=False) == [], state
    states["svc"] = "ready"
    [resolved] = await engine.evaluate(full=False)
    assert resolved.message == "alert 'down' RESOLVED on server 'svc': state is ready again"


@pytest.mark.anyio
async def test_a_config_edit_during_a_store_outage_is_read_once_the_store_is_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """servers.yaml edited while PostgreSQL was down: the watcher's reload raised
    StoreUnavailable (reading the runtime registrations), which ended the gateway's
    background task group -- call recording, alerts, the change feed, the watcher itself
    -- while HTTP kept answering: a gateway silently half dead after the store came
    back, and the edit never applied.  Now the reload waits for the store (said once)
    and the edit applies when it is back."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"alpha": memory_entry("alpha")}}))
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           config=config, db=tmp_path / "gw.db")
    async with Client(gateway.server):
        control = gateway.control
        store = control.store
        assert store is not None
        healthy = store.servers

        async def unreachable() -> Any:
            raise StoreUnavailable("PostgreSQL at db:5432 is unreachable (refused)")

        monkeypatch.setattr(store, "servers", unreachable)
        config.write_text(json.dumps({"servers": {"alpha": memory_entry("alpha"),
                                                  "beta": memory_entry("beta")}}))
        with caplog.at_level(logging.ERROR, logger="fast_mcp_gateway.admin.control"):
            for _ in range(2):
                assert await control.config_edited()
                report = await control.reload_logged(CONFIG_FILE)
                assert report.error is not None and "unreachable" in report.error
        assert [r.getMessage() for r in caplog.records if "waits for the store" in
                r.getMessage()] != [] and len(caplog.records) == 1  # said once
        monkeypatch.setattr(store, "servers", healthy)
        assert await control.config_edited()  # still to be read
        report = await control.reload_logged(CONFIG_FILE)
        assert report.error is None and report.added == ["beta"], report


@pytest.mark.anyio
async def test_a_failing_background_task_is_logged_when_it_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    """A background task's failure ends them all while HTTP goes on answering; it was
    seen only at shutdown (if ever): now it is logged, critical, when it happens."""
    failed = anyio.Event()

    async def watcher(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        failed.set()
        raise RuntimeError("the watcher broke")

    with pytest.raises(BaseException, match=r"the watcher broke|unhandled errors"):
        async with background(watcher):
            await failed.wait()
            with anyio.fail_after(10):
                while not caplog.records:  # noqa: ASYNC110 - logged by another task
                    await anyio.sleep(0.01)
    [record] = caplog.records
    assert record.levelname == "CRITICAL" and "watcher" in record.getMessage()
    assert "restart it" in record.getMessage()


def broken_reload(*_: object) -> Any:
    raise RuntimeError("the registrations did not parse")


async def failure_of(gateway: Gateway, fail: Callable[[], None]) -> BackgroundTaskFailed:
    """What ``run_async("http")`` raises when ``fail()``, called once the gateway serves
    (its background tasks run), makes one of them fail."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    raised: list[BackgroundTaskFailed] = []

    async def serve() -> None:
        try:
            await gateway.run_async("http", sockets=[sock])
        except BackgroundTaskFailed as exc:
            raised.append(exc)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            async with httpx2.AsyncClient(timeout=30) as http:  # served: the tasks run
                health = await http.get(f"http://127.0.0.1:{sock.getsockname()[1]}/health")
                assert health.status_code == 200
            fail()
    [failure] = raised
    return failure


@pytest.mark.anyio
async def test_a_failing_background_task_stops_an_http_gateway(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed background task was logged while the gateway answered on without its
    background work: now it stops, and ``run_async`` raises naming the task (a
    supervisor restarts what exits)."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {}}))
    gateway = make_gateway({}, config=config, db=tmp_path / "gw.db", reload_interval=0.05)
    monkeypatch.setattr(gateway.control, "reload_logged", broken_reload)
    failure = await failure_of(gateway, lambda: config.write_text(
        json.dumps({"servers": {}, "gateway": {}})))
    assert failure.task == "ControlPlane.watch_config", failure
    assert "RuntimeError: the registrations did not parse" in str(failure)


@pytest.mark.anyio
async def test_a_failing_upstream_manager_stops_the_gateway() -> None:
    """The manager's task (every upstream's session runs in its task group) ending in
    an error stopped every upstream, and the gateway answered on with an empty catalog,
    only logging it: it stops now, as for its other background tasks."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})

    async def a_bug() -> None:
        raise RuntimeError("a bug in an upstream's task")

    def start_the_bug() -> None:
        group = gateway.manager._task_group
        assert group is not None
        group.start_soon(a_bug)

    failure = await failure_of(gateway, start_the_bug)
    assert failure.task == "UpstreamManager.run", failure
    assert "a bug in an upstream's task" in str(failure)

    # Run again (library mode), it serves and stops cleanly: the failure was the last
    # run's, raised by it; it was raised again at this run's end, and hid this one's own.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(gateway.run_async, "http", [sock])
            async with Client(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp") as client:
                assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
            gateway.request_stop()
    sock.close()


_BROKEN_SERVE = """
import sys
from fast_mcp_gateway.admin.control import ControlPlane
from tests.test_operator_trial import broken_reload
ControlPlane.reload_logged = broken_reload
from fast_mcp_gateway.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.anyio
async def test_a_failing_background_task_ends_a_stdio_serve_with_status_1(
        tmp_path: Path) -> None:
    """``serve`` over stdio exits 1 when a background task fails (here the config
    watcher, as a store outage made it fail before), its last line naming the task and
    the error; it answered on without call records, alerts or reloads."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {}}))
    env = {**os.environ, "HOME": str(tmp_path), "MCP_GATEWAY_RELOAD_INTERVAL": "0.05"}
    command = [sys.executable, "-c", _BROKEN_SERVE, "serve", "--config", str(config),
               "--db", str(tmp_path / "gw.db")]
    async with await anyio.open_process(command, env=env, cwd=REPO) as proc:
        try:
            assert proc.stdin is not None and proc.stdout is not None
            await proc.stdin.send(json.dumps({
                "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"}}}).encode() + b"\n")
            with anyio.fail_after(60):
                answer = b""
                while not answer.endswith(b"\n"):  # answered: the watcher runs
                    answer += await proc.stdout.receive()
                assert b'"result"' in answer, answer
                config.write_text(json.dumps({"servers": {}, "gateway": {}}))
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
        assert proc.stderr is not None
        stderr = b""
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                stderr += await proc.stderr.receive()
    lines = stderr.decode().strip().splitlines()
    assert code == 1, lines[-5:]
    assert "background task ControlPlane.watch_config failed: RuntimeError: the " \
        "registrations did not parse; exiting with status 1" in lines[-1], lines[-5:]
