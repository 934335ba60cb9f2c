"""What the command line tells a person: help for every option, the serve banner, logs."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fast_mcp_gateway.cli.main import _parser, main
from fast_mcp_gateway.cli.reports import _table
from fast_mcp_gateway.cli.serve import announcement, is_loopback, listen
from fast_mcp_gateway.config.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[1]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_subcommand_and_option_is_described() -> None:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    described = {choice.dest for choice in sub._choices_actions if choice.help}
    commands = _subcommands(parser)
    assert described == set(commands), f"subcommands without help: {set(commands) - described}"
    missing = [f"{name} {'/'.join(action.option_strings)}"
               for name, command in commands.items() for action in command._actions
               if action.option_strings and not action.help and action.dest != "help"]
    assert not missing, f"options without help: {missing}"


@pytest.mark.parametrize(("argv", "said"), [
    # argparse said "the following arguments are required: command" (or token_command).
    ([], "mcp-gateway: error: choose a command: serve, check, logs, servers, token, "
         "dashboard, pins, login, logout, stats ('mcp-gateway serve --config servers.yaml' "
         "runs the gateway"),
    (["token"], "mcp-gateway token: error: choose what to do: new ('mcp-gateway token new "
                "--name NAME' makes a token)"),
    # ... and "unrecognized arguments: --conifg x.yaml" under the top level's usage.
    (["serve", "--conifg", "x.yaml"], "mcp-gateway serve: error: unrecognized arguments: "
     "--conifg x.yaml; did you mean --config? ('mcp-gateway serve --help' lists its options)"),
    (["check", "--jsn"], "mcp-gateway check: error: unrecognized arguments: --jsn; did you "
                         "mean --json?"),
    # argparse listed the choices only: "invalid choice: 'chek' (choose from 'serve', ...".
    (["chek"], "mcp-gateway: error: unknown command 'chek'; did you mean 'check'? (the "
               "commands: serve, check, logs"),
    (["token", "new", "--name", "a", "--servrs=x"], "mcp-gateway token new: error: "
     "unrecognized arguments: --servrs=x; did you mean --servers?"),
])
def test_a_command_line_mistake_is_named_with_the_fix(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_no_config_anywhere_says_none_was_given(tmp_path: Path) -> None:
    """Run without --config where there is no servers.yaml (as a host starting the
    gateway in its own working directory): the error said "check the path given with
    --config" of a path nobody gave."""
    env = {k: v for k, v in os.environ.items() if k != "MCP_GATEWAY_CONFIG"}
    done = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "check", "--no-db"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert (f"servers.yaml: not found in the working directory ({tmp_path}), and no --config "
            "was given: name the config file with --config PATH") in done.stderr, done.stderr
    given = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "check", "--no-db",
                            "--config", "servers.yaml"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert "file not found; check the path given with --config" in given.stderr, given.stderr


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.0.2.7", False),
    ("example.org", False),
])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_over_stdio_explains_itself_only_in_a_terminal() -> None:
    settings = GatewaySettings(config=Path("servers.yaml"))
    assert announcement(settings, 2, interactive=False) == []
    lines = announcement(settings, 2, interactive=True)
    assert any("Ctrl-C" in line for line in lines)
    assert any("JSON-RPC on stdin" in line for line in lines)


def test_serve_over_http_says_where_and_warns_off_loopback() -> None:
    settings = GatewaySettings(config=Path("s.yaml"), transport="http", host="0.0.0.0",
                               port=9000)
    lines = announcement(settings, 3, interactive=False)
    # 0.0.0.0 is where it listens, not a URL a host on another machine can use.
    assert lines[0] == ("serving 3 server(s) from s.yaml at http://<this machine's name or "
                        "address>:9000/mcp (http; listening on every IPv4 address, "
                        "0.0.0.0); stop with Ctrl-C.")
    assert lines[1].startswith("WARNING") and "other machines" in lines[1]
    every = GatewaySettings(config=Path("s.yaml"), transport="http", host="::", port=9000)
    assert "(http; listening on every address, ::; uvloop)" in announcement(
        every, 1, interactive=False, detail="uvloop")[0]
    # With tokens, nothing more: OAuth clients are told the URL each request came in at,
    # not 0.0.0.0 (http/advertised.py; tests/test_advertised_url.py).
    assert len(announcement(settings, 3, interactive=False, authenticated=True)) == 2
    v6 = GatewaySettings(config=Path("s.yaml"), transport="sse", host="::1", port=9000)
    assert announcement(v6, 1, interactive=False) == [
        "serving 1 server(s) from s.yaml at http://[::1]:9000/sse (sse); stop with Ctrl-C."]


@contextlib.contextmanager
def _http_banner(tmp_path: Path, port: int) -> Iterator[str]:
    """A real ``serve --transport http --port PORT`` with an empty config; yields its
    banner line (read as it arrives), stopped afterwards."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
         "--transport", "http", "--port", str(port), "--db", str(tmp_path / "g.db")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=REPO)
    try:
        assert proc.stderr is not None
        # Blocks until the banner arrives (or the process ends).
        banner = next((line for line in proc.stderr
                       if line.startswith("mcp-gateway: serving")), None)
        assert banner is not None, "no banner before the gateway exited"
        yield banner
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_a_real_http_serve_prints_its_url_on_stderr(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with _http_banner(tmp_path, port) as banner:
        assert f"http://127.0.0.1:{port}/mcp" in banner


def _serve_on_a_busy_port(tmp_path: Path, marker: Path, flags: list[str], host: str = ""
                          ) -> tuple[subprocess.CompletedProcess[str], int]:
    """``serve`` with ``flags`` and then a port another socket holds (written after
    ``host``), one upstream that would create ``marker``; its exit, and the port."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {"s": {
        "command": sys.executable, "args": ["-c", f"open({str(marker)!r}, 'w')"]}}}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
             *flags, f"{host}{port}", "--db", str(tmp_path / "g.db")],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=REPO,
            env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")})
    return done, port


def test_http_serve_on_a_port_in_use_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    """Another program on the port: one line naming the port and the fix, exit 2, and no
    upstream started (the port was found busy only after the upstreams had started, and
    the user got an exception group ending in 'SystemExit: 3')."""
    marker = tmp_path / "started"
    done, port = _serve_on_a_busy_port(tmp_path, marker, ["--transport", "http", "--port"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"mcp-gateway: cannot listen on 127.0.0.1:{port}: the port "
                                  "is in use"), done.stderr
    assert "--port" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not marker.exists()


def test_stdio_dashboard_on_a_port_in_use_is_one_line_and_starts_nothing(
        tmp_path: Path) -> None:
    """``serve --dashboard PORT`` over stdio, the port taken: checked before anything
    starts, as the HTTP port is (it was bound after the upstreams had started, logged,
    and the gateway served on without its dashboard)."""
    marker = tmp_path / "started"
    done, port = _serve_on_a_busy_port(tmp_path, marker, ["--dashboard"], "127.0.0.1:")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"mcp-gateway: cannot listen on 127.0.0.1:{port} for the "
                                  "dashboard: the port is in use"), done.stderr
    assert "--dashboard" in done.stderr and len(done.stderr.strip().splitlines()) == 1, (
        done.stderr)
    assert not marker.exists()


def test_http_serve_on_port_0_announces_the_port_it_got(tmp_path: Path) -> None:
    with _http_banner(tmp_path, 0) as banner:
        port = int(banner.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        assert port != 0
        # The API answers there (its lifespan may still be starting: asked until it does).
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 200"), "no answer on the announced port"


def test_a_multi_line_error_stays_on_its_records_line() -> None:
    table = _table(("status", "error"), [["error", "Traceback:\n  line 1\r\n  boom"],
                                         ["success", ""]], header=True)
    lines = table.splitlines()
    assert len(lines) == 4
    assert "Traceback: ⏎ line 1 ⏎ boom" in lines[2]


def test_an_upstreams_escape_sequences_do_not_reach_the_terminal() -> None:
    """An upstream's error (a record's, shown by 'mcp-gateway logs' and 'servers') with
    ESC sequences (colour, window title, OSC 52 clipboard writes) is shown, not acted on."""
    error = "\x1b[31mred\x1b[0m \x1b]52;c;ZWNobyBwd25lZA==\x07 \x1b]0;title\x07 \rfake"
    table = _table(("status", "error"), [["error", error]], header=False)
    assert "\x1b" not in table and "\x07" not in table and "\r" not in table
    assert table.split(None, 1)[1].startswith("\\x1b[31mred\\x1b[0m \\x1b]52;c;")
    from fast_mcp_gateway.cli import check

    checked = check._table([{"server": "b", "error": error}])  # 'mcp-gateway check'
    assert "\x1b" not in checked and "\x07" not in checked and "\\x1b]0;title" in checked


@pytest.mark.parametrize("value", ["", " , ", "[]"])
def test_shared_keys_set_to_nothing_stop_serve_saying_so(tmp_path: Path, value: str) -> None:
    """``MCP_GATEWAY_REQUEST_STATE_KEYS`` set but naming no key (a ``${VAR}`` left empty
    by a deployment) stops ``serve``: a key of its own would break every asking round
    another gateway continues.  Unset, a key of its own is the documented default."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    done = subprocess.run(
        [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
         "--db", str(tmp_path / "gateway.db")], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "MCP_GATEWAY_REQUEST_STATE_KEYS": value})
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "MCP_GATEWAY_REQUEST_STATE_KEYS: " in done.stderr, done.stderr
    assert "holds no key" in done.stderr and "unset it" in done.stderr, done.stderr
    assert GatewaySettings(request_state_keys=[]).request_state_keys == []  # in code: none


def test_check_counts_disabled_servers_apart_and_takes_a_level_in_any_case(
        tmp_path: Path) -> None:
    """'2/2 servers ok' said a disabled server was checked; '--log-level debug' was
    refused for its case; an empty config said only 'no servers configured'."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {
        "on": {"command": sys.executable, "args": ["-m", "fast_mcp_gateway.demo.clock"]},
        "off": {"command": sys.executable, "args": ["-c", "pass"], "enabled": False}}}))
    done = subprocess.run(
        [sys.executable, "-m", "fast_mcp_gateway", "check", "--config", str(config),
         "--db", str(tmp_path / "g.db"), "--log-level", "warning"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "1/1 servers ok, 1 disabled (" in done.stdout, done.stdout
    config.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "fast_mcp_gateway", "check", "--config", str(config),
         "--db", str(tmp_path / "g.db")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert "no servers configured: add one under 'servers:'" in done.stderr, done.stderr


def test_a_debug_log_leaves_out_the_stores_statements(tmp_path: Path) -> None:
    """aiosqlite logs each statement with its parameters at DEBUG: half of a debug log
    was the store's SQL, with every call record's arguments and error in it."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {
        "on": {"command": sys.executable, "args": ["-m", "fast_mcp_gateway.demo.clock"]}}}))
    done = subprocess.run(  # served until stdin ends: at once
        [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
         "--db", str(tmp_path / "g.db"), "--log-level", "DEBUG"], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert " DEBUG " in done.stderr  # debugging: the gateway's own and the SDK's lines
    assert "aiosqlite" not in done.stderr, done.stderr[:2000]


def test_port_0_on_a_name_with_several_addresses_is_one_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A host name that resolves to several addresses (localhost: 127.0.0.1 and ::1) gets
    a socket on each; with port 0 each got a port of its own, and the banner named only
    the first's (a client reaching the name's other address found nothing there)."""
    addresses = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0))
                 for ip in ("127.0.0.1", "127.0.0.2")]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: addresses)
    sockets = listen(GatewaySettings(host="here.test", port=0, transport="http"))
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(sockets) == 2 and len(ports) == 1 and 0 not in ports, ports
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_store_that_cannot_be_opened_is_one_line(tmp_path: Path, transport: str) -> None:
    """``--db`` naming a folder: serve ended in a traceback (over stdio after answering
    the host's initialize, over HTTP out of uvicorn's start-up); now one line, status 2."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    initialize = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "h", "version": "1"}}}) + "\n"
    run = subprocess.run(
        [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
         "--db", str(tmp_path), "--transport", transport, "--port", "0"],
        input=initialize, capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(tmp_path)}, cwd=REPO)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1] == (
        f"mcp-gateway: cannot open the store: {tmp_path}: cannot create it: is a "
        f"directory; give the path of a file in it, e.g. {tmp_path / 'gateway.db'}")


@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_store_host_dns_says_does_not_exist_fails_at_once_naming_it(
        tmp_path: Path, command: str) -> None:
    """A PostgreSQL host that does not resolve was waited out as a database restarting
    (serve started without its store and retried for ever).  A name DNS says does not
    exist is a mistake in the URL: one line naming the host and the fix, status 2.
    ``.invalid`` never resolves (RFC 6761); no network is needed for the answer."""
    try:
        socket.getaddrinfo("db.invalid", 5432)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:  # a resolver that cannot answer: retried
            pytest.skip(f"this machine's resolver cannot tell: {exc}")
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n")
    run = subprocess.run(
        [sys.executable, "-m", "fast_mcp_gateway", command, "--config", str(config),
         "--db", "postgresql://gw:s3cret@db.invalid:5432/gateway",
         *(["--transport", "http", "--port", "0"] if command == "serve" else [])],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)}, cwd=REPO)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("mcp-gateway: " + (
        "cannot open the store: " if command == "serve" else "") + "PostgreSQL at "
        "gw@db.invalid:5432/gateway: host 'db.invalid' does not exist"), last
    assert "fix the host in the store's URL (--db or MCP_GATEWAY_DB" in last, last
    assert "s3cret" not in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "started without" not in run.stderr and "would start without" not in last


@pytest.mark.parametrize(("argv", "env", "said"), [
    (["--port", "99999"], {},
     "--port: must be a whole number at least 0 and at most 65535 (got 99999)"),
    (["--connect-timeout", "-5"], {},
     "--connect-timeout: must be a number greater than 0 (got -5.0)"),
    (["--startup-wait", "-1"], {},
     "--startup-wait: must be a number at least 0 and at most 3600 (got -1.0)"),
    ([], {"MCP_GATEWAY_PORT": "99999"},
     "MCP_GATEWAY_PORT: must be a whole number at least 0 and at most 65535 (got '99999')"),
    # Was "refusing to listen on 127.0.0.1:8080 without authentication ... or serve on
    # loopback (--host 127.0.0.1 ...)", and with a token "the name does not resolve".
    (["--host", "127.0.0.1:8080"], {},
     "--host: names a port: give the address alone (127.0.0.1) and the port as the port "
     "setting (--port 8080, MCP_GATEWAY_PORT) (got '127.0.0.1:8080')"),
    (["--host", "[::1]:8080"], {},
     "--host: names a port: give the address alone (::1) and the port as the port "
     "setting (--port 8080, MCP_GATEWAY_PORT) (got '[::1]:8080')"),
    # Both were refused "without authentication" as no loopback address.
    (["--host", "127.0.0.1:"], {},
     "--host: ends with ':' but names no port: give the address alone (127.0.0.1) and "
     "the port as the port setting (--port, MCP_GATEWAY_PORT) (got '127.0.0.1:')"),
    (["--host", "::1:8080"], {},
     "--host: reads as IPv6 address ::1 with port 8080 appended (an IPv6 address with a "
     "port is written [::1]:8080): give the address alone (::1) and the port as the port "
     "setting (--port 8080, MCP_GATEWAY_PORT) (got '::1:8080')"),
    ([], {"MCP_GATEWAY_HOST": "http://localhost:8765"},
     "MCP_GATEWAY_HOST: is a URL, not an address: give the address alone, e.g. 127.0.0.1, "
     "and the port as the port setting (--port, MCP_GATEWAY_PORT) "
     "(got 'http://localhost:8765')"),
])
def test_a_flag_out_of_range_is_named_as_typed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        argv: list[str], env: dict[str, str], said: str) -> None:
    """'serve --port 99999' said "MCP_GATEWAY_PORT: Input should be less than or equal
    to 65535": a variable the user never set, in pydantic's words."""
    from fast_mcp_gateway.cli.main import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--transport", "http", "--no-db",
                 "--config", str(tmp_path / "servers.yaml"), *argv]) == 2
    assert capsys.readouterr().err == f"mcp-gateway: {said}\n"


@pytest.mark.parametrize("host", ["::1", "fe80::1:8080", "2001:db8::1:443", "localhost",
                                  "0.0.0.0", "gw.example.com"])
def test_an_address_alone_is_a_host(host: str) -> None:
    """IPv6 addresses hold colons: only ``host:port`` and ``[v6]:port`` name a port."""
    from fast_mcp_gateway.config.settings import GatewaySettings

    assert GatewaySettings(host=host).host == host


def test_localhost_with_its_root_dot_is_loopback_and_listened_on() -> None:
    """``--host localhost.`` (the fully qualified name) was refused as not loopback, and
    with a token did not resolve (``/etc/hosts`` names ``localhost`` without the dot)."""
    from fast_mcp_gateway.cli.serve import listen
    from fast_mcp_gateway.config.settings import GatewaySettings, bind_refusal, is_loopback

    assert is_loopback("localhost.") and is_loopback("LocalHost.")
    settings = GatewaySettings(transport="http", host="localhost.", port=0)
    assert bind_refusal(settings, authenticated=False) is None
    sockets = listen(settings)
    try:
        assert sockets and all(ipaddress.ip_address(s.getsockname()[0]).is_loopback
                               for s in sockets)
    finally:
        for sock in sockets:
            sock.close()


def test_a_bracketed_ipv6_address_is_listened_on() -> None:
    """``--host [::1]`` passed the check (no port) and then 'cannot listen on [::1]: the
    name does not resolve': the brackets are a URL's, taken off."""
    from fast_mcp_gateway.cli.serve import listen
    from fast_mcp_gateway.config.settings import GatewaySettings, bind_refusal

    settings = GatewaySettings(transport="http", host="[::1]", port=0)
    assert settings.host == "::1" and bind_refusal(settings, authenticated=False) is None
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    sockets = listen(settings)
    try:
        assert sockets and all(s.getsockname()[0] == "::1" for s in sockets)
    finally:
        for sock in sockets:
            sock.close()


def test_the_stdio_dashboard_takes_localhost_with_its_root_dot() -> None:
    """``serve --dashboard localhost.:8766`` was refused "not a loopback address"."""
    from fast_mcp_gateway.errors import ConfigError
    from fast_mcp_gateway.ui.standalone import parse_address

    assert parse_address("localhost.:8766") == ("localhost", 8766)
    assert parse_address("[::1]:8766") == ("::1", 8766)
    with pytest.raises(ConfigError, match=r"'example\.com' is not a loopback address"):
        parse_address("example.com:8766")


def test_a_misspelt_variable_is_named_with_the_setting_it_is_close_to(tmp_path: Path) -> None:
    """MCP_GATEWAY_PROT=9000 was ignored unsaid (the keyword ``prot`` is refused):
    serve ran on the default port.  A tool's own variable is not named."""
    config = tmp_path / "servers.yaml"
    config.write_text(json.dumps({"servers": {
        "on": {"command": sys.executable, "args": ["-m", "fast_mcp_gateway.demo.clock"]}}}))
    done = subprocess.run(  # served until stdin ends: at once
        [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
         "--no-db"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        cwd=REPO, env={**os.environ, "MCP_GATEWAY_PROT": "9000",
                       "mcp_gateway_reload_intervall": "5", "MCP_GATEWAY_NPM_TOOLS": "x"})
    assert done.returncode == 0, done.stderr
    assert "MCP_GATEWAY_PROT is no setting and is ignored: did you mean MCP_GATEWAY_PORT?" \
        in done.stderr, done.stderr
    assert "mcp_gateway_reload_intervall is no setting and is ignored: did you mean " \
        "MCP_GATEWAY_RELOAD_INTERVAL?" in done.stderr, done.stderr
    assert "NPM_TOOLS" not in done.stderr
