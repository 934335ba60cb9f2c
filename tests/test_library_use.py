"""Library mode as a Python developer embedding the gateway meets it.

What the public names take and say when given something else; a gateway entered
again after its client ended; the package typed for their mypy; its HTTP app mounted
in an app of their own, with and without its lifespan.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from fastmcp import Client
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.routing import Mount

import fast_mcp_gateway
from fast_mcp_gateway import (
    ConfigError,
    Gateway,
    GatewayConfig,
    GatewaySettings,
    ServerConfig,
    parse_config,
)
from tests.fixtures import (
    PY,
    SERVERS,
    cancel_once_started,
    interactive_server,
    make_gateway,
    memory_entry,
    serve_http,
    stdio_entry,
)

pytestmark = pytest.mark.anyio

WELL = [str(SERVERS / "well.py")]


@pytest.mark.parametrize(("config", "told"), [
    ({"servers": {}}, "not a dict: parse_config(data)"),
    ("servers.yaml", "not a str: Gateway.from_file(path)"),
    (Path("servers.yaml"), "not a PosixPath: Gateway.from_file(path)"),
    (None, "not a NoneType: Gateway.from_file(path)"),
])
def test_a_config_of_another_type_is_told_the_call_that_makes_one(config: Any,
                                                                 told: str) -> None:
    with pytest.raises(TypeError, match="Gateway\\(config\\) takes a GatewayConfig") as info:
        Gateway(config)
    assert told in str(info.value)


def test_settings_of_another_type_or_misspelt_are_told_what_to_write(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for settings in ({"port": 9000}, GatewayConfig()):
        with pytest.raises(TypeError, match="takes a GatewaySettings as settings, not a"):
            Gateway(GatewayConfig(), settings)  # type: ignore[arg-type]
    # A misspelt keyword was ignored: the gateway ran on the default port.
    secret = "k" * 40
    monkeypatch.setenv("MCP_GATEWAY_REQUEST_STATE_KEYS", secret)
    with pytest.raises(ValidationError) as info:
        GatewaySettings(prot=9000)  # type: ignore[call-arg]
    assert "no setting 'prot' (did you mean 'port'?)" in str(info.value)
    assert secret not in str(info.value)  # the environment's values are not echoed
    monkeypatch.setenv("MCP_GATEWAY_PORT", "9001")
    monkeypatch.setenv("MCP_GATEWAY_NO_SUCH_SETTING", "1")  # the environment: by name
    assert GatewaySettings().port == 9001


def test_from_file_given_another_type_is_told_what_it_takes(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text("servers: {}\n")
    # AttributeError: 'dict' object has no attribute 'model_copy'
    for settings in ({"port": 9000}, "db=None"):
        with pytest.raises(TypeError, match=r"^Gateway\.from_file\(path, settings\) takes "
                                            "a GatewaySettings as settings, not a"):
            Gateway.from_file(path, settings)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes a file's path \(a str or Path\), not a "
                                        r"dict; for a mapping, Gateway\(parse_config"):
        Gateway.from_file({"servers": {}})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not a NoneType$"):
        Gateway.from_file(None)  # type: ignore[arg-type]


def test_a_config_built_in_code_is_checked_as_the_loader_checks_it() -> None:
    well = {"command": PY, "args": WELL}
    config = GatewayConfig(servers={
        "a": ServerConfig(name="b", **well),  # under another key
        "c": ServerConfig(name="c"),  # neither command nor url
        "d": ServerConfig(name="d", namespace="n", **well),
        "e": ServerConfig(name="e", namespace="n", **well)})
    with pytest.raises(ConfigError) as info:
        Gateway(config)
    told = str(info.value)
    assert "3 configuration problems" in told, told
    assert "server 'a', field 'name': is 'b' under the key 'a'" in told
    assert "server 'c', field 'command': needs either 'command'" in told
    assert "server 'e', field 'namespace': namespace 'n' is already used by server 'd'" in told


def test_the_package_is_typed_and_exports_its_public_names() -> None:
    assert (Path(fast_mcp_gateway.__file__).parent / "py.typed").is_file()
    assert "Readiness" in fast_mcp_gateway.__all__  # what Gateway.wait_ready returns
    for name in fast_mcp_gateway.__all__:
        assert getattr(fast_mcp_gateway, name) is not None, name
    assert set(fast_mcp_gateway.__all__) <= set(dir(fast_mcp_gateway))


async def test_a_gateway_entered_again_starts_its_servers_again() -> None:
    gateway = make_gateway({"good": stdio_entry("well.py")})
    pids = []
    for _ in range(2):
        async with Client(gateway.server) as client:
            ready = await gateway.wait_ready(within=None)
            assert ready.ready == ("good",) and ready.all_ready, ready
            pids.append((await client.call_tool("good_pid", {})).data)
    assert pids[0] != pids[1]  # a new process: the first run's ended with it
    with contextlib.suppress(ProcessLookupError):  # the first run's process is gone
        os.kill(pids[0], 0)
        pytest.fail(f"the first run's server (pid {pids[0]}) still runs")


async def test_a_gateway_entered_again_keeps_what_its_operator_set() -> None:
    # No store: a runtime disable and a drain live in the gateway alone.
    gateway = make_gateway({"good": stdio_entry("well.py"),
                            "twin": {**stdio_entry("well.py"), "replicas": 2}})
    async with Client(gateway.server) as client:
        assert (await gateway.wait_ready(within=None)).all_ready
        await client.call_tool("gateway_disable_server", {"name": "good"})
        await client.call_tool("gateway_drain_replica", {"name": "twin", "replica": 1})
    async with Client(gateway.server) as client:
        ready = await gateway.wait_ready(within=None)
        # The renewed gateway started it again from its config (enabled: true).
        assert ready.disabled == ("good",) and ready.ready == ("twin",), ready
        names = {tool.name for tool in await client.list_tools()}
        assert "good_echo" not in names and "twin_echo" in names, names
        assert gateway.manager.services["twin"].draining == {1}


async def test_the_http_app_mounted_under_a_prefix() -> None:
    gateway = Gateway(parse_config({"servers": {"good": stdio_entry("well.py")}}),
                      GatewaySettings(db=None, startup_wait=600))
    gateway_app = gateway.http_app()
    # Starlette (FastAPI too) does not run a mounted app's lifespan by itself.
    mounted = Starlette(routes=[Mount("/gw", app=gateway_app)])
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=mounted),
                                  base_url="http://127.0.0.1") as http:
        answer = await http.post("/gw/mcp", json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"})
    assert answer.status_code == 503, answer.text
    message = answer.json()["error"]["message"]
    assert message.startswith("the gateway is not running") and \
        "lifespan=gateway_app.lifespan" in message, message
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=mounted),
                                  base_url="http://127.0.0.1") as http:
        ready = await http.get("/gw/ready")  # said: waiting for a first connect attempt
    assert ready.status_code == 503 and ready.json()["status"] == "not_running", ready.text
    assert ready.json()["reason"] == message

    # Run from the app's own lifespan: MCP at the prefix, the REST API beside it.
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with gateway_app.lifespan(app):
            yield

    served = Starlette(routes=[Mount("/gw", app=gateway_app)], lifespan=lifespan)
    async with serve_http(served, startup=False) as base:
        async with Client(f"{base}/gw/mcp", timeout=60) as client:
            assert (await gateway.wait_ready(within=None)).all_ready
            assert (await client.call_tool("good_echo", {"text": "hi"})).data == "hi"
        async with httpx2.AsyncClient(base_url=base, timeout=60) as http:
            servers = (await http.get("/gw/api/v1/servers")).json()["servers"]
            assert [(s["name"], s["state"]) for s in servers] == [("good", "ready")]


@contextlib.asynccontextmanager
async def run_async_http(gateway: Any) -> AsyncIterator[str]:
    """``gateway.run_async("http")`` on a loopback socket; yields its MCP URL and stops
    it with ``request_stop()`` at the end."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(gateway.run_async, "http", [sock])
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
            finally:
                gateway.request_stop()
    finally:
        sock.close()


async def test_run_async_again_serves_its_servers_again() -> None:
    gateway = make_gateway({"good": stdio_entry("well.py")}, transport="http")
    for _ in range(2):
        # Lists wait at the start-up gate for every first attempt (startup_wait 600).
        async with run_async_http(gateway) as url, Client(url, timeout=60) as client:
            names = {tool.name for tool in await client.list_tools()}
            assert "good_echo" in names, names
            assert (await client.call_tool("good_echo", {"text": "hi"})).data == "hi"


async def test_a_call_the_host_cancels_in_a_run_after_a_stop_is_the_hosts() -> None:
    """request_stop() ended the first run_async; in the next, a call its host cancelled
    was recorded as cut by the gateway's stop ("not the host")."""
    events: dict[str, Any] = {}
    gateway = make_gateway({"inter": memory_entry("inter")},
                           {"inter": interactive_server(events)}, transport="http")
    errors: list[str | None] = []
    done = anyio.Event()

    def observe(outcome: Any) -> None:
        if outcome.status == "cancelled":
            errors.append(outcome.error)
            done.set()

    gateway.provider.pipeline.observers.append(observe)
    for run in range(2):
        async with run_async_http(gateway) as url, Client(url, timeout=60) as client:
            await client.list_tools()
            if run:
                await cancel_once_started(client, events)
                with anyio.fail_after(30):
                    await done.wait()
    assert errors == ["cancelled before it finished (the host cancelled it or went away)"]


async def test_a_file_not_there_is_told_in_library_words(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    with pytest.raises(ConfigError, match=r"Gateway\.from_file"):  # said: --config alone
        Gateway.from_file(path)
    path.write_text(yaml.safe_dump({"servers": {"good": stdio_entry("well.py")}}))
    gateway = Gateway.from_file(path, GatewaySettings(db=None, startup_wait=600,
                                                      reload_interval=0))
    async with Client(gateway.server):
        assert (await gateway.wait_ready(within=None)).all_ready
        path.unlink()  # deleted while it runs: a reload keeps what runs, and says why
        report = await gateway.reload_config()
        assert report.error is not None and "to load_config or Gateway.from_file" in \
            report.error, report
        assert (await gateway.wait_ready(within=None)).ready == ("good",)


async def test_a_gateway_from_a_file_reloads_that_file(tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text(yaml.safe_dump({"servers": {"good": stdio_entry("well.py")}}))
    # reload_interval 0: no watcher, the reload below is the one that reads the edit.
    gateway = Gateway.from_file(path, GatewaySettings(db=None, startup_wait=600,
                                                      reload_interval=0))
    async with Client(gateway.server) as client:
        assert (await gateway.wait_ready(within=None)).all_ready
        path.write_text(yaml.safe_dump({"servers": {
            "good": stdio_entry("well.py"), "more": stdio_entry("well.py")}}))
        report = await gateway.reload_config()  # 'not started from a config file'
        assert report.error is None and report.added == ["more"], report
        assert (await client.call_tool("more_echo", {"text": "hi"})).data == "hi"
