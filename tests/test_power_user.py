"""A power user's trial: hot reloads under load, hostile upstreams, the admin surface
at its edges (session 13).  Each test is a defect found by using the gateway so."""

from __future__ import annotations

import logging
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client, FastMCP

from fast_mcp_gateway import Gateway, GatewaySettings, load_config, parse_config
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.store import SQLiteStore
from fast_mcp_gateway.store.records import Invocation
from fast_mcp_gateway.upstream.model import StderrTail
from tests.fixtures import (
    SERVERS,
    alpha_server,
    beta_server,
    make_gateway,
    memory_entry,
    memory_transports,
    stdio_entry,
)
from tests.stdio_gateway import CLI, REPO, stdio_gateway

pytestmark = pytest.mark.anyio


def gated_server(started: anyio.Event, gate: anyio.Event) -> FastMCP[Any]:
    """``slow()`` answers once ``gate`` is set (``started`` tells it is running)."""
    server: FastMCP[Any] = FastMCP("gated")

    @server.tool
    async def slow() -> str:
        started.set()
        await gate.wait()
        return "done"

    @server.tool
    def other() -> str:
        return "other"

    return server


async def test_a_reload_that_restarts_a_server_lets_its_calls_in_flight_finish(
        tmp_path: Path) -> None:
    started, gate = anyio.Event(), anyio.Event()
    memory = {"slow": gated_server(started, gate)}
    path = tmp_path / "servers.yaml"
    entry = memory_entry("slow")
    path.write_text(f"servers:\n  slow:\n    url: {entry['url']}\n")
    gateway = Gateway(load_config(path),
                      GatewaySettings(config=path, db=None, reload_interval=0),
                      transport_factory=memory_transports(memory))
    async with Client(gateway.server) as client:
        old = gateway.manager.get("slow")
        results: list[Any] = []

        async def call() -> None:
            results.append(await client.call_tool_mcp("slow_slow", {}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            with anyio.fail_after(30):
                await started.wait()
            # A timeout edit: the server is restarted with its new settings (a curation
            # edit is taken as it runs: test_update_in_place.py).
            path.write_text(f"servers:\n  slow:\n    url: {entry['url']}\n"
                            "    timeouts: {call: 120}\n")
            report = await gateway.reload_config()
            assert report.restarted == ["slow"], report
            assert gateway.manager.get("slow") is not old
            gate.set()
        assert not results[0].is_error, results[0].content
        assert results[0].content[0].text == "done"
        # The old session was stopped once its call ended.
        replica = old.replicas[0]
        assert await replica.wait_until(lambda: str(replica.state) == "stopped", 30)


async def test_draining_a_replica_returns_when_its_last_call_ends(tmp_path: Path) -> None:
    started, gate = anyio.Event(), anyio.Event()
    memory = {"slow": gated_server(started, gate)}
    path = tmp_path / "servers.yaml"
    path.write_text(f"servers:\n  slow:\n    url: {memory_entry('slow')['url']}\n"
                    "    timeouts: {call: 600}\n")
    gateway = Gateway(load_config(path), GatewaySettings(config=path, db=None),
                      transport_factory=memory_transports(memory))
    async with Client(gateway.server) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "slow_slow", {})
            with anyio.fail_after(30):
                await started.wait()
            drained: list[Any] = []
            done = anyio.Event()

            async def drain() -> None:
                drained.append(await client.call_tool(
                    "gateway_drain_replica", {"name": "slow", "replica": 0}))
                done.set()

            tg.start_soon(drain)
            service = gateway.manager.get("slow")
            while 0 not in service.draining:  # noqa: ASYNC110 - the drain has begun
                await anyio.sleep(0.01)
            gate.set()
            # It waits for the call, not for the 600 s call timeout (nor the next probe).
            with anyio.fail_after(20):
                await done.wait()
        assert drained[0].structured_content["draining"] is True


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.1:99999/mcp", "Port out of range 0-65535"),
    ("http://[::1/mcp", "Invalid IPv6 URL"),
    ("http://127.0.0.1:80a/mcp", "Port could not be cast to integer value"),
])
def test_a_url_python_cannot_parse_is_a_config_error_naming_the_field(url: str, why: str
                                                                        ) -> None:
    # It used to pass validation and crash 'serve' with a traceback (and make
    # gateway_add_server fail with an unexplained "Port out of range 0-65535").
    for entry in ({"url": url}, {"instances": [{"url": "http://127.0.0.1:9/mcp"}, {"url": url}]}):
        with pytest.raises(ConfigError) as caught:
            parse_config({"servers": {"r": entry}}, source="servers.yaml")
        message = str(caught.value)
        assert "server 'r', field '" in message and "url'" in message, message
        assert why in message and "write e.g. http://127.0.0.1:9000/mcp" in message


def test_an_upstreams_refusal_of_a_read_or_a_prompt_is_not_a_traceback_in_the_log() -> None:
    """The README's demo: a note that does not exist, a time zone that does not.  The
    host gets the upstream's error (and the call record keeps it); the gateway's log got
    FastMCP's "Error reading resource" ERROR with a 60-line traceback for each, which a
    log reader takes for a crash of the gateway."""
    with stdio_gateway("--config", "servers.yaml", "--no-db") as gateway:
        read = gateway.send({"jsonrpc": "2.0", "id": 901, "method": "resources/read",
                             "params": {"uri": "notes://notes/note/99"}})
        assert read is not None and "no note with id 99" in read["error"]["message"], read
        zone = gateway.send({"jsonrpc": "2.0", "id": 902, "method": "resources/read",
                             "params": {"uri": "clock://clock/zone/Nowhere/City"}})
        assert zone is not None and "error" in zone, zone
        err = gateway.stop()
    record = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: |mcp-gateway: )")
    stray = [line for line in err.splitlines() if line.strip() and not record.match(line)]
    assert not stray, "\n".join(stray)
    assert "Traceback" not in err and " ERROR " not in err, err


async def _one_record(db: Path) -> None:
    store = await SQLiteStore.open(db)
    await store.add_invocations([Invocation(
        id="one", trace_id="t", client="stdio", kind="tool", exposed="a_x", server="a",
        original="x", started_at=time.time(), duration_ms=1.0, status="success")])
    await store.close()


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_logs_with_a_limit_below_one_says_so_instead_of_a_traceback(
        tmp_path: Path, limit: str) -> None:
    db = tmp_path / "gateway.db"
    anyio.run(_one_record, db)
    result = subprocess.run([*CLI, "logs", "--db", str(db), "--limit", limit],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"argument --limit: {limit!r} is not a whole number of at least 1" in result.stderr


@pytest.mark.parametrize("flag", ["--twice", "--endless-pages"])
async def test_a_tool_listed_twice_by_its_server_is_exposed_once(
        flag: str, caplog: pytest.LogCaptureFixture) -> None:
    """A server that lists a tool twice (or whose pages never end, repeating themselves)
    got each copy exposed, the later ones under hash-suffixed aliases (1000 of them for
    endless pages, 'raw_echo_6e0c4a5f_1f3a...' hashed again and again) that all call the
    same upstream tool, the copy's description shown for the original's behaviour."""
    gateway = make_gateway({"raw": stdio_entry("raw_stdio.py", flag)})
    async with Client(gateway.server) as client:
        names = [t.name for t in await client.list_tools() if t.name.startswith("raw_")]
        assert sorted(names) == sorted(f"raw_{n}" for n in (
            "echo", "big", "flood", "junk", "latin1", "bad_answer", "pid", "whoami",
            "block", "weird_content", "list_type", "null_result", "told", "nulls",
            "wait_cancel")), names
        echo = next(t for t in await client.list_tools() if t.name == "raw_echo")
        assert echo.description != "a copy"
    said = [r.getMessage() for r in caplog.records if r.name.startswith("fast_mcp_gateway")]
    why = "named these more than once: 'echo'" if flag == "--twice" else "same next cursor"
    assert any("upstream raw" in m and why in m for m in said), said


async def test_a_catalog_the_sdk_cannot_read_is_one_line_naming_each_problem(
        caplog: pytest.LogCaptureFixture) -> None:
    """It was pydantic's dump: six lines (so six lines in the gateway's log, whose records
    are one line each), 'For further information visit https://errors.pydantic.dev/...'
    after each problem, in ``last_error`` and every transition logged."""
    caplog.set_level(logging.INFO, logger="fast_mcp_gateway")
    gateway = make_gateway({"raw": stdio_entry("raw_stdio.py", "--bad-schema"),
                            "fine": stdio_entry("raw_stdio.py")})
    async with Client(gateway.server) as client:
        assert "fine_echo" in [t.name for t in await client.list_tools()]
        detail = (await client.call_tool("gateway_server_detail", {"name": "raw"})).data
    error = detail.last_error
    assert error is not None and "\n" not in error, error
    assert "tools/list failed" in error and "errors.pydantic.dev" not in error, error
    # The two bad tools come after raw_stdio.py's good ones, whatever their number.
    assert re.search(r"tools\[\d+\]\.inputSchema: Field required", error), error
    assert re.search(r"tools\[\d+\]\.inputSchema\.type: Input should be 'object'", error), error
    logged = [r.getMessage() for r in caplog.records if "upstream raw" in r.getMessage()]
    assert logged and not any("\n" in m for m in logged), logged


@pytest.mark.parametrize("fmt", ["yaml", "claude"])
def test_an_export_keeps_non_ascii_text_readable(fmt: str, tmp_path: Path) -> None:
    """'Donn\\xE9es m\\xE9t\\xE9o' was what a French description became in the YAML
    export (and '\\u00e9' in the Claude JSON): valid, but not what the user wrote."""
    from fast_mcp_gateway.config.registrations import export_servers

    home = tmp_path / "josé"
    home.mkdir()
    config = parse_config({"servers": {"météo": {
        "command": "uvx", "args": ["serveur-météo", "--ville=Zürich"], "cwd": str(home),
        "description": "Données météo"}}}, source="servers.yaml")
    text = export_servers(config.servers, fmt)
    for written in ("météo", "serveur-météo", "--ville=Zürich", str(home)):
        assert written in text, text
    if fmt == "yaml":
        assert "Données météo" in text, text
        assert parse_config(__import__("yaml").safe_load(text), source="export").servers[
            "météo"].args == ("serveur-météo", "--ville=Zürich")


async def test_a_call_a_rule_routes_to_a_removed_server_says_the_server_is_gone(
        tmp_path: Path) -> None:
    """It said "server 'beta', which has no tool 'add'", as if beta ran without it; the
    rule outlives the server, and only changing or deleting it helps."""
    memory = {"alpha": alpha_server(), "beta": beta_server()}
    gateway = make_gateway({"alpha": memory_entry("alpha"), "beta": memory_entry("beta")},
                           memory, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        await client.call_tool("gateway_add_server", {"name": "gamma",
                                                      "config": memory_entry("beta")})
        route = (await client.call_tool("gateway_add_route", {
            "pattern": "alpha_add", "target": "gamma"})).structured_content
        await client.call_tool("gateway_remove_server", {"name": "gamma"})
        refused = await client.call_tool_mcp("alpha_add", {"a": 1, "b": 1})
        assert refused.is_error
        text = refused.content[0].text
        assert f"route #{route['id']} (exact 'alpha_add') sends 'alpha_add' to server " \
            "'gamma', which is not configured" in text, text
        assert f"gateway_delete_route {{\"route_id\": {route['id']}}}" in text, text


def weather_server() -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP("météo")

    @server.tool(description="Prévisions météo pour une ville")
    def prevoir(ville: str) -> str:
        return ville

    @server.tool(description="Прогноз погоды для города")
    def prognoz(gorod: str) -> str:
        return gorod

    @server.tool(description="Convert an amount between currencies")
    def convert(amount: float) -> float:
        return amount

    @server.tool(description="Visions of the future: m. t. o. (a tarot reading)")
    def tarot(question: str) -> str:
        return question

    return server


@pytest.mark.parametrize(("query", "found"), [
    ("météo", "meteo_prevoir"), ("prévisions", "meteo_prevoir"),
    ("погоды", "meteo_prognoz"), ("convert currencies", "meteo_convert")])
async def test_search_finds_tools_described_in_other_languages(query: str, found: str
                                                                 ) -> None:
    """Words were runs of ASCII letters: 'météo' was searched as 'm', 't', 'o' (and a
    Cyrillic description had no words at all)."""
    gateway = make_gateway({"meteo": memory_entry("meteo")}, {"meteo": weather_server()},
                           options={"exposure": "search"})
    async with Client(gateway.server) as client:
        hits = (await client.call_tool("search_tools", {"query": query, "k": 1})).data
    assert [t["name"] for t in hits["tools"]] == [found], hits


async def test_search_in_a_server_that_is_not_there_says_so() -> None:
    """A typo in 'server' answered an empty list, as a query that matches nothing does."""
    gateway = make_gateway({"meteo": memory_entry("meteo")}, {"meteo": weather_server()},
                           options={"exposure": "search"})
    async with Client(gateway.server) as client:
        typo = await client.call_tool_mcp("search_tools", {"query": "weather",
                                                           "server": "metoe"})
        none = (await client.call_tool("search_tools", {"query": "zzzz",
                                                        "server": "meteo"})).data
    assert typo.is_error
    assert "no tools of a server 'metoe' to search" in typo.content[0].text
    assert "servers: gateway, meteo;" in typo.content[0].text, typo.content[0].text
    assert none == {"tools": []}


async def test_the_watcher_does_not_reload_again_what_a_sighup_reload_read(
        tmp_path: Path) -> None:
    """After a SIGHUP (or gateway_reload_config) reload, the file watcher saw the file
    changed since *its* last look and reloaded it again: a second 'config reloaded
    (config-file)' line and audit entry, all 'unchanged', for every such reload."""
    path = tmp_path / "servers.yaml"
    entry = memory_entry("slow")
    path.write_text(f"servers:\n  slow:\n    url: {entry['url']}\n")
    gateway = Gateway(load_config(path),
                      GatewaySettings(config=path, db=None, reload_interval=600),
                      transport_factory=memory_transports(
                          {"slow": gated_server(anyio.Event(), anyio.Event())}))
    async with Client(gateway.server):
        control = gateway.control
        assert not await control.config_edited()
        path.write_text(f"servers:\n  slow:\n    url: {entry['url']}\n    namespace: s\n")
        assert await control.config_edited()
        report = await gateway.reload_on_signal("SIGHUP")
        assert report.restarted == ["slow"], report
        assert not await control.config_edited()   # the watcher has nothing left to do
        path.write_text("servers: {broken\n")
        assert await control.config_edited()
        assert (await gateway.reload_config()).error
        assert not await control.config_edited()   # read (and refused) once is enough


async def test_an_edit_saved_as_a_reload_opens_the_file_is_reloaded_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload noted the file's (mtime, size) before opening it: an editor's save in
    between (read by this reload) looked unread, and the watcher reloaded it again."""
    from fast_mcp_gateway.admin import control as control_module

    path = tmp_path / "servers.yaml"
    alpha = f"servers:\n  alpha:\n    url: {memory_entry('alpha')['url']}\n"
    path.write_text(alpha)
    gateway = Gateway(load_config(path),
                      GatewaySettings(config=path, db=None, reload_interval=600),
                      transport_factory=memory_transports(
                          {"alpha": alpha_server(), "beta": beta_server()}))
    real, saves = control_module.file_stamp, [f"  beta:\n    url: {memory_entry('beta')['url']}\n"]

    async def stamp_then_save(at: Path | None) -> tuple[int, int] | None:
        stamp = await real(at)
        if saves:
            path.write_text(alpha + saves.pop())
        return stamp

    async with Client(gateway.server):
        control = gateway.control
        monkeypatch.setattr(control_module, "file_stamp", stamp_then_save)
        report = await gateway.reload_config()
        assert report.added == ["beta"], report      # the save was read
        assert not await control.config_edited()      # ... so nothing is left to reload


def read_then_edited(tmp_path: Path) -> tuple[Path, Any]:
    """A config read from a file (alpha), and the file edited since (alpha, beta)."""
    path = tmp_path / "servers.yaml"
    path.write_text(f"servers:\n  alpha:\n    url: {memory_entry('alpha')['url']}\n")
    config = load_config(path)
    path.write_text(f"servers:\n  alpha:\n    url: {memory_entry('alpha')['url']}\n"
                    f"  beta:\n    url: {memory_entry('beta')['url']}\n")
    return path, config


def watching(config: Any, path: Path) -> Gateway:
    return Gateway(config, GatewaySettings(config=path, db=None, reload_interval=0.05),
                   transport_factory=memory_transports(
                       {"alpha": alpha_server(), "beta": beta_server()}))


async def reloaded_adding_beta(gateway: Gateway) -> None:
    control = gateway.control
    assert await control.reloads.wait_until(lambda: control.last_reload is not None, 60)
    assert control.last_reload is not None and control.last_reload.added == ["beta"], \
        control.last_reload


async def test_an_edit_made_before_the_watcher_starts_is_reloaded(tmp_path: Path) -> None:
    """``serve`` reads the file, then imports its stack (a second or more) and answers
    the host meanwhile (front/early.py); the watcher took its baseline only when it
    started, so an edit made in between was never reloaded (until the next one)."""
    path, config = read_then_edited(tmp_path)
    gateway = watching(config, path)
    async with Client(gateway.server):
        await reloaded_adding_beta(gateway)
        assert not await gateway.control.config_edited()


async def test_a_gateway_reloads_an_edit_another_read_of_the_file_took_in(
        tmp_path: Path) -> None:
    """Two gateways in one process (or a check, a library call) read one file: the
    watcher's baseline was the file as it was *last* read, by anyone, so a gateway
    built from the first read never reloaded the edit the second read took in."""
    path, config = read_then_edited(tmp_path)
    assert "beta" in load_config(path).servers   # another reader, of the edited file
    gateway = watching(config, path)
    async with Client(gateway.server):
        await reloaded_adding_beta(gateway)


async def test_a_sighup_before_the_upstreams_run_is_applied_when_they_start(
        tmp_path: Path) -> None:
    """``serve`` takes SIGHUP from its first moment, before the lifespan (store, start-up)
    runs the upstreams: that reload raised "the gateway is not running" out of the
    signal's task, ending ``serve``, and the edit it read was never applied (nor
    reloaded again by the watcher, which counted it as read)."""
    path = tmp_path / "servers.yaml"
    alpha = f"servers:\n  alpha:\n    url: {memory_entry('alpha')['url']}\n"
    path.write_text(alpha)
    gateway = Gateway(load_config(path), GatewaySettings(config=path, db=None,
                                                         reload_interval=0),
                      transport_factory=memory_transports(
                          {"alpha": alpha_server(), "beta": beta_server()}))
    path.write_text(alpha + "    timeouts: {call: 60}\n"
                    f"  beta:\n    url: {memory_entry('beta')['url']}\n")
    with anyio.fail_after(30):
        report = await gateway.reload_on_signal("SIGHUP")
    assert report.error is None and report.added == ["beta"], report
    assert report.restarted == ["alpha"], report
    async with Client(gateway.server) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert {"alpha_add", "beta_echo"} <= names
        assert gateway.manager.get("alpha").replicas[0].call_timeout == 60


@pytest.mark.parametrize("chunk", [65536, 4_000_000])
def test_a_huge_stderr_line_is_kept_cut(chunk: int) -> None:
    """A server that wrote a 1 MB line to stderr (a dumped payload, a minified bundle)
    made gateway_server_detail answer 6.5 MB (100 kept lines of 64 KiB), and each error
    text carrying the stderr tail (the host's, the call record's, the log line's) 192 KiB."""
    tail = StderrTail(100)
    data = b"x" * 1_000_000 + b"\nshort line\n" + b"y" * 100_000
    for i in range(0, len(data), chunk):
        tail.feed(data[i:i + chunk])
    tail.flush()
    lines = tail.tail(100)
    assert "short line" in lines
    assert all(len(line) <= 4100 for line in lines), [len(line) for line in lines]
    assert sum(len(line) for line in lines) < 50_000
    assert lines[0].startswith("x" * 4000) and "...[line cut: " in lines[0], lines[0][-80:]


async def test_an_argument_to_an_admin_tool_that_takes_none_is_refused_plainly() -> None:
    """It read "'name' is not accepted; accepted: ; its arguments: none"."""
    gateway = make_gateway({"meteo": memory_entry("meteo")}, {"meteo": weather_server()})
    async with Client(gateway.server) as client:
        refused = await client.call_tool_mcp("gateway_list_routes", {"name": "meteo"})
    assert refused.is_error
    assert refused.content[0].text == (
        "invalid arguments for 'gateway_list_routes': 'name' is not accepted (no argument "
        "is); "
        "its arguments: none")


def one_tool(name: str) -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP(name)

    @server.tool(name=name)
    def run() -> str:
        return f"ran {name}"

    return server


async def test_disabling_a_server_does_not_hand_its_tool_names_to_another() -> None:
    """Servers 'a_b' (tool 'c') and 'a' (tool 'b_c') both make 'a_b_c': a_b, first in the
    config, got it and a's tool 'a_b_c_<hash>'.  Disabling a_b gave 'a_b_c' to a's 'b_c':
    a host (a model) calling 'a_b_c' as listed ran another server's tool."""
    memory = {"a_b": one_tool("c"), "a": one_tool("b_c")}
    gateway = make_gateway({"a_b": memory_entry("a_b"), "a": memory_entry("a")}, memory)
    async with Client(gateway.server) as client:
        assert (await client.call_tool("a_b_c", {})).data == "ran c"
        names = {t.name for t in await client.list_tools() if t.name.startswith("a_")}
        suffixed = next(n for n in names if n.startswith("a_b_c_"))
        await client.call_tool("gateway_disable_server", {"name": "a_b"})
        called = await client.call_tool_mcp("a_b_c", {})
        assert called.is_error and "ran b_c" not in str(called.content), called.content
        assert (await client.call_tool(suffixed, {})).data == "ran b_c"
        await client.call_tool("gateway_enable_server", {"name": "a_b"})
        assert (await client.call_tool("a_b_c", {})).data == "ran c"
        assert (await client.call_tool(suffixed, {})).data == "ran b_c"


async def test_a_tool_held_by_pinning_does_not_hand_its_name_to_another() -> None:
    """'x_y' (tool 'lookup') and 'x' (tool 'y_lookup') both make 'x_y_lookup'.  When
    pinning (enforce) held x_y's changed 'lookup', the name went to x's 'y_lookup': a
    host calling 'x_y_lookup' ran another server's tool instead of being refused."""
    from tests.test_pinning import ListChanges, shifty_server

    memory = {"x_y": shifty_server(), "x": one_tool("y_lookup")}
    gateway = make_gateway({"x_y": memory_entry("x_y"), "x": memory_entry("x")}, memory,
                           options={"pinning": "enforce"})
    changes = ListChanges()
    async with Client(gateway.server, mode="legacy", message_handler=changes) as client:
        assert (await client.call_tool("x_y_lookup", {"word": "w"})).data == "w: found"
        suffixed = next(t.name for t in await client.list_tools()
                        if t.name.startswith("x_y_lookup_"))
        await client.call_tool("x_y_shift", {"description": "Look a word up, faster."})
        await changes.after(1)
        held = await client.call_tool_mcp("x_y_lookup", {"word": "w"})
        assert held.is_error and "changed since it was approved" in held.content[0].text, \
            held.content
        assert (await client.call_tool(suffixed, {})).data == "ran y_lookup"


async def test_a_call_timeout_says_which_setting_gives_more_time() -> None:
    """It said what happened ('did not answer within 30s') but not what to change."""
    started, gate = anyio.Event(), anyio.Event()
    gateway = make_gateway({"slow": memory_entry("slow", timeouts={"call": 0.5})},
                           {"slow": gated_server(started, gate)})
    async with Client(gateway.server) as client:
        timed_out = await client.call_tool_mcp("slow_slow", {})
        gate.set()
    assert timed_out.is_error
    assert timed_out.content[0].text == (
        "upstream 'slow': tools/call 'slow' did not answer within 0.5s (the request was "
        "cancelled upstream); if it is only slow, raise the server's timeouts.call")


@pytest.mark.parametrize("lane", ["true", "false"])
def test_an_invalid_tool_result_is_an_error_result_on_both_paths(lane: str,
                                                                  tmp_path: Path) -> None:
    """A result whose content block has no MCP type went to the host as it came on the
    express lane (the host's client then failed to read it), and as -32602 'Invalid
    request parameters' (the host's!) on the full path; "result": null made the full
    path wait for the call timeout, then say the server 'did not answer'."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  raw:\n    command: ${GATEWAY_PYTHON}\n"
                      f"    args: [{SERVERS / 'raw_stdio.py'}]\n    timeouts: {{call: 45}}\n")
    with stdio_gateway("--config", str(config), "--no-db",
                       env={"MCP_GATEWAY_EXPRESS_LANE": lane}) as gateway:
        answers = {}
        for i, tool in enumerate(["raw_weird_content", "raw_null_result", "raw_list_type",
                                  "raw_echo"]):
            started = time.monotonic()
            reply = gateway.send({"jsonrpc": "2.0", "id": 500 + i, "method": "tools/call",
                                  "params": {"name": tool, "arguments": {"text": "hi"}}})
            assert reply is not None
            answers[tool] = (reply, time.monotonic() - started)
    for tool in ("raw_weird_content", "raw_null_result", "raw_list_type"):
        reply, took = answers[tool]
        assert "result" in reply and reply["result"]["isError"] is True, reply
        text = reply["result"]["content"][0]["text"]
        assert "not valid" in text and "needs fixing" in text, text
        assert took < 20, (tool, took)
    assert answers["raw_echo"][0]["result"]["content"][0]["text"] == "hi"
