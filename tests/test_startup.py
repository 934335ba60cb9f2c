"""Start-up: hosts are answered within the start-up wait with what is ready, a server
that connects later is announced with list_changed, a slow server is not killed while
it works, a hung one is retried with a growing deadline (never parked), a crash loop is
parked, /ready goes starting -> ready, and ``serve`` spawns its upstreams first.

The slow server (``servers/slow_start.py``) starts when the test creates its release
file: nothing here waits on wall-clock time (``fail_after`` is only a guard).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from mcp.client.stdio import get_default_environment
from mcp.client.subscriptions import listen

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.routing.naming import namespace_uri
from fast_mcp_gateway.upstream import processes
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.processes import is_alive
from fast_mcp_gateway.upstream.replica import Upstream, default_transport
from tests.fixtures import FAST_RESTART, PY, make_gateway, serve_http, stdio_entry

pytestmark = pytest.mark.anyio

GUARD = 50  # seconds: a hang guard only, never a measurement (pytest-timeout is 60)


def slow_entry(release: Path, **extra: Any) -> dict[str, Any]:
    # A small connect timeout: the deadline passes (several times) while it warms up.
    # Its activity is its stderr lines (every 0.05 s): with 0.2 s, a loaded loop that
    # read them late judged it idle (as test_isolation's did at load 12).
    extra.setdefault("timeouts", {"connect": 1.0})
    return stdio_entry("slow_start.py", str(release), **extra)


class Changes:
    """list_changed notifications a host received (an event per kind)."""

    def __init__(self) -> None:
        self.seen: dict[str, anyio.Event] = {
            k: anyio.Event() for k in ("tools", "resources", "prompts")}

    async def __call__(self, message: Any) -> None:
        kinds = {types.ToolListChangedNotification: "tools",
                 types.ResourceListChangedNotification: "resources",
                 types.PromptListChangedNotification: "prompts"}
        for cls, kind in kinds.items():
            if isinstance(message, cls):
                self.seen[kind].set()

    async def all(self) -> None:
        for event in self.seen.values():
            await event.wait()


async def test_hosts_get_the_ready_servers_and_the_late_one_is_announced(
        tmp_path: Path) -> None:
    release = tmp_path / "release"
    gateway = make_gateway({"well": stdio_entry("well.py"), "slow": slow_entry(release)},
                           startup_wait=0.0)
    changes = Changes()
    with anyio.fail_after(GUARD):
        async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
            well = gateway.manager.get("well").replicas[0]
            slow = gateway.manager.get("slow").replicas[0]
            assert await well.wait_until(lambda: well.state is UpstreamState.READY, GUARD)
            names = {t.name for t in await client.list_tools()}
            assert "well_echo" in names and not any(n.startswith("slow_") for n in names)
            # Its 1 s deadline passed while it worked: more time, same process.
            assert await slow.wait_until(
                lambda: "still connecting" in (slow.last_error or ""), GUARD), slow.last_error
            assert slow.state is UpstreamState.STARTING
            pid = slow.pid
            assert pid is not None and is_alive(pid)
            assert "timeouts.connect" in (slow.last_error or "")

            release.touch()
            await changes.all()
            assert slow.state is UpstreamState.READY
            assert "slow_pid" in {t.name for t in await client.list_tools()}
            assert any("slow" in str(r.uri) for r in await client.list_resources())
            assert "slow_greet" in {p.name for p in await client.list_prompts()}
            assert (await client.call_tool("slow_pid", {})).data == pid  # never restarted
            stats = slow.statistics()
            assert (stats.connects, stats.restarts, stats.attempts) == (1, 0, 1)


async def test_the_first_list_waits_for_the_start_up_wait_not_for_a_slow_server(
        tmp_path: Path) -> None:
    """A bounded wait: the slow server stays gated until after the list is answered."""
    release = tmp_path / "release"
    gateway = make_gateway({"slow": slow_entry(release)}, startup_wait=0.5)
    with anyio.fail_after(GUARD):
        async with Client(gateway.server) as client:
            assert not any(t.name.startswith("slow_") for t in await client.list_tools())
            assert gateway.startup.opened.is_set() and not gateway.startup.over
            release.touch()


async def test_a_hung_server_is_retried_with_a_growing_deadline_and_never_parked() -> None:
    gateway = make_gateway({"stuck": stdio_entry("hang_init.py",
                                                 timeouts={"connect": 0.2})})
    async with Client(gateway.server):
        stuck = gateway.manager.get("stuck").replicas[0]
        # Deadlines 0.2, 0.4, 0.8, 1.6 s; crash_limit is 3 (FAST_RESTART): four crashes
        # would have parked it.
        # (A window its stderr line extended is told in all: "within 3.2s".)
        assert await stuck.wait_until(
            lambda: "idle for 1.6s without answering" in (stuck.last_error or ""), GUARD
        ), stuck.last_error
        assert stuck.attempts >= 4 and stuck.state is not UpstreamState.FAILED
        error = stuck.last_error or ""
        assert "did not finish connecting within" in error
        assert "no answer to initialize" in error
        assert "raise this server's timeouts.connect" in error and "next attempt waits" in error


async def test_a_crash_looping_server_is_parked() -> None:
    gateway = make_gateway({"broken": stdio_entry("exit_at_start.py")}, restart=FAST_RESTART)
    async with Client(gateway.server):
        broken = gateway.manager.get("broken").replicas[0]
        assert await broken.wait_until(lambda: broken.state is UpstreamState.FAILED, GUARD)
        assert "gave up after 3 failures" in (broken.last_error or "")
        assert "WEATHER_API_KEY" in (broken.last_error or "")


async def test_ready_says_starting_until_the_first_attempts_are_over(tmp_path: Path) -> None:
    release = tmp_path / "release"
    gateway = make_gateway({"slow": slow_entry(release)})
    with anyio.fail_after(GUARD):
        async with serve_http(gateway.http_app(), startup=False) as base, \
                httpx2.AsyncClient(timeout=30) as http:
            live = await http.get(f"{base}/health")
            assert live.status_code == 200
            starting = await http.get(f"{base}/ready")
            assert starting.status_code == 503, starting.text
            assert starting.json()["status"] == "starting"
            assert "slow" in starting.json()["reason"]
            release.touch()
            await gateway.startup.attempted.wait()
            ready = await http.get(f"{base}/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["ready_servers"] == ["slow"]


def test_early_processes_get_the_sdks_environment() -> None:
    assert processes.sdk_environment() == get_default_environment()
    assert get_default_environment().items() <= processes.default_environment().items()


async def test_a_replica_adopts_the_process_started_early_for_it(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.touch()
    entry = slow_entry(release, timeouts={"connect": 30})
    config = parse_config({"servers": {"slow": entry, "other": slow_entry(release)}},
                          source="test")
    server = config.servers["slow"]
    # "gone" was replaced before it connected (e.g. by a runtime registration).
    [early, gone] = await processes.spawn_early([
        (server.command or "", list(server.args), dict(server.env), server.cwd),
        (PY, ["-c", "import sys; sys.stdin.read()"], {}, None),
    ])
    try:
        upstream = Upstream(server, transport_factory=default_transport)
        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream.run)
            with anyio.fail_after(GUARD):
                await upstream.wait_first_attempt()
            assert upstream.state is UpstreamState.READY, upstream.last_error
            assert upstream.pid == early.process.pid
            assert processes.early_pending() == 1  # "gone" is still waiting
            upstream.stop()
    finally:
        await processes.discard_early()
    assert processes.early_pending() == 0
    assert gone.process.returncode is not None and early.process.returncode is not None


@asynccontextmanager
async def cli_host(config: Path, changes: Changes, *flags: str) -> AsyncIterator[Client[Any]]:
    env = {**os.environ, "MCP_GATEWAY_EXPRESS_LANE": "true"}
    transport = StdioTransport(PY, ["-m", "fast_mcp_gateway", "serve", "--config",
                                    str(config), "--no-db", "--log-level", "INFO",
                                    *flags], env=env, keep_alive=False,
                               log_file=config.parent / "gateway.log")
    async with Client(transport, mode="legacy", message_handler=changes) as client:
        yield client


@pytest.mark.timeout(240)  # three processes start; on a loaded machine that takes a while
async def test_serve_answers_with_what_is_ready_and_announces_the_late_server(
        tmp_path: Path) -> None:
    """The real CLI (spawn-first): the first list is answered without the gated server,
    which is announced once released and keeps its first process."""
    release = tmp_path / "release"
    config = tmp_path / "servers.yaml"
    config.write_text(
        "servers:\n"
        f"  well: {{command: {PY}, args: [{SERVERS_WELL}]}}\n"
        f"  slow: {{command: {PY}, args: [{SERVERS_SLOW}, {release}],"
        " timeouts: {connect: 1.0}}\n")
    changes = Changes()
    try:
        await drive_cli(config, changes, release)
    except BaseException:
        print((tmp_path / "gateway.log").read_text())  # shown by pytest on failure
        raise


async def drive_cli(config: Path, changes: Changes, release: Path) -> None:
    with anyio.fail_after(200):
        async with cli_host(config, changes, "--startup-wait", "0") as client:
            listed = {t.name for t in await client.list_tools()}
            assert not any(n.startswith("slow_") for n in listed)
            status = await client.call_tool("gateway_server_detail", {"name": "slow"})
            assert status.structured_content is not None
            assert status.structured_content["state"] == "starting"
            await anyio.Path(release).touch()
            # Each server that connects after the first list is announced (well may, too).
            await wait_for_tool(client, changes, "slow_pid")
            await wait_for_tool(client, changes, "well_echo")
            detail = await client.call_tool("gateway_server_detail", {"name": "slow"})
            assert detail.structured_content is not None
            assert detail.structured_content["restarts"] == 0, detail.structured_content


SERVERS_WELL = Path(__file__).parent / "servers" / "well.py"
SERVERS_SLOW = Path(__file__).parent / "servers" / "slow_start.py"


async def wait_for_tool(client: Client[Any], changes: Changes, name: str) -> None:
    while True:
        changes.seen["tools"] = anyio.Event()  # before listing: no notice is missed
        if name in {t.name for t in await client.list_tools()}:
            return
        await changes.seen["tools"].wait()


async def test_a_read_of_a_server_still_connecting_waits_for_it(tmp_path: Path) -> None:
    """A host may read (or call) a name it knows before its server connected (the
    Inspector CLI reads without listing): the answer waits for the first attempts."""
    release = tmp_path / "release"
    gateway = make_gateway({"slow": slow_entry(release)}, startup_wait=0.0)
    uri = namespace_uri("slow://status", "slow")
    results: dict[str, Any] = {}
    with anyio.fail_after(GUARD):
        async with Client(gateway.server, mode="legacy") as client:
            slow = gateway.manager.get("slow").replicas[0]
            assert await slow.wait_until(
                lambda: "still connecting" in (slow.last_error or ""), GUARD)

            async def read() -> None:
                results["read"] = await client.read_resource(uri)

            async def call() -> None:
                results["call"] = (await client.call_tool("slow_pid", {})).data

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                tg.start_soon(call)
                release.touch()
    assert results["read"][0].text == "warm"
    assert isinstance(results["call"], int)


async def test_the_gateways_own_tools_answer_while_a_server_is_still_connecting(
        tmp_path: Path) -> None:
    """What a host asks while a server starts (gateway_server_detail) waited, as an
    unknown name does, for every first attempt: up to call_timeout (30 s by default)."""
    release = tmp_path / "release"
    gateway = make_gateway({"slow": slow_entry(release)}, startup_wait=0.0,
                           call_timeout=600.0)
    with anyio.fail_after(GUARD):
        async with Client(gateway.server, mode="legacy") as client:
            slow = gateway.manager.get("slow").replicas[0]
            assert await slow.wait_until(
                lambda: "still connecting" in (slow.last_error or ""), GUARD)
            detail = await client.call_tool("gateway_server_detail", {"name": "slow"})
            assert detail.structured_content is not None
            assert detail.structured_content["state"] == "starting"
            release.touch()


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_a_subscribe_to_a_server_still_connecting_waits_for_it(
        tmp_path: Path, era: str) -> None:
    """A host subscribing to a URI it knows before its server connected (a host that
    subscribes again after the gateway restarted) was refused "upstream 'watched' does
    not support resource subscriptions" (``resources/subscribe``), or had the URI left
    out of its listen stream's honored filter (``subscriptions/listen``) -- the server's
    capabilities were not known yet.  Both wait for the first attempts, as a read does,
    and reach the server."""
    release = tmp_path / "release"
    entry = stdio_entry("watched.py", protocol="legacy", timeouts={"connect": 1.0},
                        env={"WATCHED_RELEASE": str(release)})
    gateway = make_gateway({"watched": entry}, startup_wait=0.0)
    uri = "watch://watched/counter"
    honored: list[list[str] | None] = []
    with anyio.fail_after(GUARD):
        async with Client(gateway.server, mode=era) as client:
            watched = gateway.manager.get("watched").replicas[0]
            assert await watched.wait_until(
                lambda: "still connecting" in (watched.last_error or ""), GUARD)

            async def subscribe() -> None:
                if era == "legacy":
                    await client.session.subscribe_resource(uri)
                    return
                async with listen(client.session, resource_subscriptions=[uri]) as stream:
                    honored.append(stream.honored.resource_subscriptions)

            async with anyio.create_task_group() as tg:
                tg.start_soon(subscribe)
                release.touch()
            assert honored == ([] if era == "legacy" else [[uri]])
            seen = await client.call_tool("watched_seen", {"count": 1})
    assert seen.data[0] == "subscribe watch://counter"


async def test_a_stalled_gateway_does_not_judge_its_upstream_idle() -> None:
    """A connect window the gateway itself slept through (a long import blocks its event
    loop, so its stderr readers cannot count anything) is not held against the server:
    it is watched for one more window before being called idle."""
    import time

    import anyio.lowlevel

    from fast_mcp_gateway.upstream.processes import ConnectWatch

    watch = ConnectWatch(0.05, lambda: None, lambda: 0)
    scope = anyio.CancelScope()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.run, scope, lambda _: None)
            await anyio.lowlevel.checkpoint()    # the watch takes its first mark
            time.sleep(0.5)  # noqa: ASYNC251 - the loop blocked on purpose: a stall
            with scope:
                await anyio.sleep_forever()      # until the watch fires
    assert watch.fired and not watch.busy
    assert watch.stalls >= 1 and watch.elapsed >= 0.5


def test_a_process_tree_is_found_without_scanning_every_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each connect attempt reads its server's process tree (the connect deadline's CPU
    check, and which child is the server): through the threads' ``children`` files, not a
    scan of all of /proc (which blocked the event loop ~3 ms per read, twice per stdio
    connect, more on a busy desktop); the scan stays where those files do not exist."""
    import subprocess
    import sys

    if not processes._CHILDREN_FILES:
        pytest.skip("this kernel has no /proc/<pid>/task/<tid>/children")
    read, write = os.pipe()
    # A launcher with a child of its own, as `npx` or `uvx` are (both wait on stdin).
    launcher = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c',"
         " 'import sys; sys.stdin.read()'], stdin=sys.stdin); sys.stdin.read()"],
        stdin=subprocess.PIPE, stderr=write)
    os.close(write)
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(_until, lambda: len(processes.descendants(launcher.pid)) == 1)
        tree = processes.descendants(launcher.pid)
        assert processes.child_with_stderr(os.fstat(read).st_ino) == launcher.pid
        scanned = []

        def scan() -> dict[int, list[int]]:
            scanned.append(True)
            return {}

        monkeypatch.setattr(processes, "process_tree", scan)
        assert processes.descendants(launcher.pid) == tree and not scanned
        assert processes.cpu_ticks(launcher.pid) is not None and not scanned
        monkeypatch.setattr(processes, "_CHILDREN_FILES", False)
        assert processes.descendants(launcher.pid) == [] and scanned  # the scan, as before
    finally:
        assert launcher.stdin is not None
        launcher.stdin.close()  # the grandchild reads the same stdin: EOF ends it too
        launcher.kill()
        launcher.wait()
        os.close(read)


async def _until(condition: Any) -> None:
    """Wait for ``condition()`` (another process's progress), polling."""
    with anyio.fail_after(30):
        while not condition():  # noqa: ASYNC110 - another process: no event to wait on
            await anyio.sleep(0.01)
