"""Secrets never reach what the gateway stores, logs or returns.

Unit tests of the masking (registry, URL credentials, the log filter), then the
planted-secret test: a real ``mcp-gateway serve`` process whose config uses a unique value
in env, args, headers, URL userinfo and a URL query, with an upstream that prints it to
stderr and puts it in its errors; every channel (tool results, REST bodies, the gateway's
stderr log, CLI output, the SQLite files' bytes) is searched for it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.telemetry.arguments import redact_arguments
from fast_mcp_gateway.telemetry.log_filter import SecretLogFilter
from fast_mcp_gateway.telemetry.redaction import (
    MASK,
    SECRETS,
    mask_text,
    url_credentials,
)
from tests.fixtures import SERVERS
from tests.test_rest_cli import REPO, _free_port, _wait_for_api

PY = sys.executable


# -- masking ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("GET https://bob:hunter22@api.test/v1", "GET https://***@api.test/v1"),
    ("GET https://tok-abc-123@api.test/v1", "GET https://***@api.test/v1"),
    ("POST http://h.test/mcp?token=abc123xyz&x=1", "POST http://h.test/mcp?token=***&x=1"),
    ("http://h.test/a?x=1&api_key=K3y-value", "http://h.test/a?x=1&api_key=***"),
    ("http://h.test/a?access_token=AT.1.2 200", "http://h.test/a?access_token=*** 200"),
    ("https://b.test/o?X-Amz-Signature=dead&sig=cafe",
     "https://b.test/o?X-Amz-Signature=***&sig=***"),
    ("https://maps.test/?key=AIzaSyX1&q=paris", "https://maps.test/?key=***&q=paris"),
    ("db://h/?password=s3cr3t!", "db://h/?password=***"),
    ("Authorization: Bearer eyJhbGciOi.JIUzI1.NiJ9", "Authorization: Bearer ***"),
    # The sentence around a URL keeps its punctuation (an error's colon was eaten).
    ("http://h.test/mcp?api_key=s3cret: connection refused",
     "http://h.test/mcp?api_key=***: connection refused"),
    ("see http://h.test/?token=abc123xyz.", "see http://h.test/?token=***."),
    ("(http://h.test/?sig=ab:cd)", "(http://h.test/?sig=***)"),
])
def test_url_credentials_and_bearer_tokens_are_masked(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_plain_urls_and_harmless_parameters_are_kept() -> None:
    text = "GET https://api.test/v1/items?page=2&sort=name 200"
    assert mask_text(text) == text


def test_a_loaded_config_feeds_the_registry_and_every_text_is_masked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    planted = f"reg-{secrets.token_hex(8)}"
    header_token = f"hdr-{secrets.token_hex(8)}"
    query_value = f"q-{secrets.token_hex(8)}"
    monkeypatch.setenv("GW_UNIT_PLANTED", planted)
    parse_config({"servers": {
        "a": {"command": "x", "env": {"PLAIN": "${GW_UNIT_PLANTED}"}},
        "b": {"url": f"https://h.test/mcp?code=1&apikey={query_value}",
              "headers": {"Authorization": f"Bearer {header_token}"}},
    }}, source="test")
    assert planted in SECRETS and header_token in SECRETS and query_value in SECRETS
    text = f"boom: {planted} / {header_token} / {query_value}"
    assert mask_text(text) == f"boom: {MASK} / {MASK} / {MASK}"
    # Arguments of a call to *any* server: a secret is masked wherever it appears.
    assert redact_arguments({"q": f"x {planted}", "n": 3}) == {"q": f"x {MASK}", "n": 3}


def test_credentials_written_in_a_servers_args_are_masked_wherever_shown() -> None:
    """``--api-key=sk-...`` or ``--token sk-...`` in args, literal in the file: the admin
    views showed them (only ${VAR} values and env/header keys were masked)."""
    equals, spaced, docker = (f"sk-{secrets.token_hex(8)}" for _ in range(3))
    config = parse_config({"servers": {"a": {"command": "x", "args": [
        f"--api-key={equals}", "--token", spaced, "-e", f"GITHUB_TOKEN={docker}",
        "--session-file", "./state.json", "--auth", "none", "--verbose"]}}}, source="test")
    assert equals in SECRETS and spaced in SECRETS and docker in SECRETS
    shown = config.servers["a"].redacted()["args"]
    assert shown == ["--api-key=***", "--token", "***", "-e", "GITHUB_TOKEN=***",
                     "--session-file", "./state.json", "--auth", "none", "--verbose"]


def test_keys_ending_in_key_pass_pwd_or_pat_hold_credentials() -> None:
    """``OPENAI_KEY``, ``DB_PASS``, ``MYSQL_PWD``, ``GITHUB_PAT`` and an ``X-Key`` header,
    written literally: a server printing its environment as it crashed showed them in
    ``last_error``, the stderr tail, the log and the store, and the admin views and
    exports showed them as written (only token/secret/password/api_key names counted)."""
    values = {key: f"v{secrets.token_hex(8)}" for key in (
        "OPENAI_KEY", "DB_PASS", "MYSQL_PWD", "GITHUB_PAT", "GPG_PASSPHRASE", "KEY")}
    plain = {"KEYBOARD_LAYOUT": f"k{secrets.token_hex(8)}", "PATH": f"/p{secrets.token_hex(8)}",
             "PWD": f"/w{secrets.token_hex(8)}", "MONKEY": f"m{secrets.token_hex(8)}"}
    header = f"h{secrets.token_hex(8)}"
    config = parse_config({"servers": {
        "a": {"command": "x", "env": {**values, **plain}, "args": ["--db-pass", "p4ss-w0rd-1"]},
        "b": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": header}}}}, source="test")
    shown = config.servers["a"].redacted()
    assert all(shown["env"][key] == MASK for key in values), shown["env"]
    assert all(value in SECRETS for value in values.values())
    assert {key: shown["env"][key] for key in plain} == plain
    assert not any(value in SECRETS for value in plain.values())
    assert shown["args"] == ["--db-pass", MASK]
    assert config.servers["b"].redacted()["headers"] == {"X-Key": MASK} and header in SECRETS
    leaked = f"crashed; env: DB_PASS={values['DB_PASS']}"
    assert mask_text(leaked) == f"crashed; env: DB_PASS={MASK}"


def test_a_header_of_any_name_is_masked_but_the_plain_ones() -> None:
    """A header set for an upstream is most often its credential, whatever it is called
    (``X-Custom``, ``X-Tenant``): it was shown as written by every view and echoed
    unmasked in the upstream's errors.  Only headers known to carry none (``Accept``,
    ``User-Agent``...) are shown; a short plain value is masked in views but not
    registered (it would mask that word all over the logs)."""
    custom, tenant = f"c{secrets.token_hex(8)}", "acme"
    config = parse_config({"servers": {
        "a": {"url": "http://127.0.0.1:9/mcp",
              "headers": {"X-Custom": custom, "X-Tenant": tenant, "User-Agent": "probe/1",
                          "accept-language": "fr"}},
        "b": {"instances": [{"url": "http://127.0.0.1:8/mcp",
                             "headers": {"X-Custom": custom}}]}}}, source="test")
    shown = config.servers["a"].redacted()
    assert shown["headers"] == {"X-Custom": MASK, "X-Tenant": MASK, "User-Agent": "probe/1",
                                "accept-language": "fr"}
    assert config.servers["b"].redacted()["instances"][0]["headers"] == {"X-Custom": MASK}
    assert custom in SECRETS and tenant not in SECRETS
    assert mask_text(f"upstream said: bad header {custom}") == f"upstream said: bad header {MASK}"


def test_credentials_in_an_instances_args_are_masked_too() -> None:
    """An instance's args are shown with the server (the admin views, an export): a
    credential written there is masked as at the top level; and one instance's last
    option does not take the next instance's first argument for its value."""
    token = f"sk-{secrets.token_hex(8)}"
    free = f"plain{secrets.token_hex(6)}"
    config = parse_config({"servers": {"a": {"instances": [
        {"command": "x", "args": [f"--api-key={token}", "--token"]},
        {"command": "y", "args": [free]}]}}}, source="test")
    shown = config.servers["a"].redacted()["instances"]
    assert shown[0]["args"] == ["--api-key=***", "--token"]
    assert token not in str(shown)
    assert free not in SECRETS and shown[1]["args"] == [free]


def test_url_credentials_are_found_for_the_registry() -> None:
    assert set(url_credentials("https://u:pw12@h.test/p?token=t0k3n&page=1")) == {
        "u", "pw12", "t0k3n"}


@contextlib.contextmanager
def filtered_log(name: str) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler (writing to the stream) has the CLI's filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretLogFilter())
    log = logging.getLogger(name)
    log.addHandler(handler)
    log.propagate = False
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)


def test_the_log_filter_escapes_control_characters_an_upstream_chose() -> None:
    """A tool name or an error with ESC sequences reaches the gateway's log (a warning
    about a renamed tool quotes it): written out, not acted on by the terminal."""
    with filtered_log("test_secrets.controls") as (log, stream):
        log.warning("server b: %r exposed as %r", "ansi\x1b]0;pwned\x07\x1b[2J", "b_ansi")
        log.warning("server b: '%s'\tline one\nline two\rforged", "\x1b[31mred\x9b")
    out = stream.getvalue()
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x9b" not in out
    assert "\\x1b]0;pwned\\x07" in out and "\\x1b[31mred\\x9b" in out
    assert "\tline one\nline two\\x0dforged" in out  # tab and line feed kept


def test_the_log_filter_masks_messages_arguments_and_tracebacks() -> None:
    planted = f"log-{secrets.token_hex(8)}"
    SECRETS.add([planted])
    with filtered_log("test_secrets.filter") as (log, stream):
        log.warning('HTTP Request: POST %s "HTTP/1.1 200 OK"',
                    "https://h.test/mcp?access_token=zz9-plural-z-alpha")
        log.warning("value %s", planted)
        try:
            raise RuntimeError(f"failed with {planted}")
        except RuntimeError:
            log.exception("it broke")
    out = stream.getvalue()
    assert planted not in out and "zz9-plural-z-alpha" not in out
    assert "RuntimeError: failed with ***" in out and "access_token=***" in out


# -- the planted secret ------------------------------------------------------------------

def _config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "servers.yaml"
    leaky = SERVERS / "leaky.py"
    config.write_text(f"""\
servers:
  leaky:
    command: {json.dumps(PY)}
    args: [{json.dumps(str(leaky))}, "--token=${{GW_PLANTED}}"]
    env:
      LEAKY_TOKEN: "${{GW_PLANTED}}"
  remote:
    url: "http://svc:${{GW_PLANTED}}@127.0.0.1:{port}/nowhere/mcp?token=${{GW_PLANTED}}"
    headers:
      Authorization: "Bearer ${{GW_PLANTED}}"
      X-Upstream-Key: "${{GW_PLANTED}}"
    timeouts: {{connect: 5}}
""")
    return config


async def _drive(port: int) -> list[str]:
    """Calls, failures and every admin tool that shows servers, records or history."""
    seen: list[str] = []

    async def call(client: Client[Any], name: str, args: dict[str, Any] | None = None) -> str:
        result = await client.call_tool(name, args or {}, raise_on_error=False)
        text = repr(result.content) + repr(result.structured_content)
        seen.append(text)
        return text

    async with Client(f"http://127.0.0.1:{port}/mcp") as client:
        assert "ECHO" in await call(client, "leaky_echo", {"text": "echo"})
        assert "backend refused credential ***" in await call(client, "leaky_fail", {"text": "t"})
        assert "token ***" in await call(client, "leaky_crash")
        await call(client, "gateway_inspect_call_tool",
                   {"name": "leaky", "tool": "fail", "arguments": {"text": "via inspector"}})
        # Wait (bounded, on the gateway's own state) until both leaks have happened.
        deadline = time.monotonic() + 90
        while True:
            leaky = await call(client, "gateway_server_detail",
                               {"name": "leaky", "stderr_lines": 1000})
            remote = await call(client, "gateway_server_detail", {"name": "remote"})
            waiting = {"leaky stderr": "echo called; my token is ***" not in leaky,
                       "remote error": "cannot connect" not in remote
                       and "HTTP 404" not in remote and "Not Found" not in remote}
            if not any(waiting.values()):
                break
            assert time.monotonic() < deadline, waiting
            await anyio.sleep(0.2)
        for name in ("gateway_list_servers", "gateway_health_history", "gateway_calls",
                     "gateway_audit", "gateway_inspector_history"):
            await call(client, name)
        await call(client, "gateway_export_servers", {"format": "yaml"})
        await call(client, "gateway_export_servers", {"format": "claude"})
    return seen


def _rest(port: int) -> list[str]:
    api = f"http://127.0.0.1:{port}/api/v1"
    bodies = []
    for path in ("/servers", "/servers/leaky", "/servers/remote", "/logs/invocations",
                 "/logs/audit", "/logs/health", "/debug/history", "/stats/overview"):
        response = httpx2.get(api + path, timeout=30)
        assert response.status_code == 200, (path, response.text)
        bodies.append(response.text)
    return bodies


def _cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([PY, "-m", "fast_mcp_gateway", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


@pytest.mark.timeout(300)
def test_a_planted_secret_reaches_no_output_channel(tmp_path: Path) -> None:
    planted = f"planted-{secrets.token_hex(12)}"
    port = _free_port()
    config = _config(tmp_path, port)
    db = tmp_path / "g.db"
    env = {**os.environ, "GW_PLANTED": planted, "MCP_GATEWAY_LOG_LEVEL": "DEBUG"}
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(config), "--transport",
             "http", "--port", str(port), "--db", str(db), "--allow-unauthenticated-admin"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        try:
            _wait_for_api(f"http://127.0.0.1:{port}/api/v1/openapi.json", proc)
            channels = anyio.run(_drive, port)
            channels += _rest(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 0
    gateway_log = log_path.read_text()
    channels.append(gateway_log)
    channels.append(_cli("servers", "--config", str(config), "--db", str(db), env=env))
    channels.append(_cli("servers", "--config", str(config), "--db", str(db), "--json",
                         env=env))
    channels.append(_cli("logs", "--db", str(db), env=env))
    channels.append(_cli("logs", "--db", str(db), "--json", env=env))
    channels.append(_cli("stats", "--db", str(db), env=env))
    store_files = sorted(tmp_path.glob("g.db*"))
    assert db in store_files

    leaks = [text[max(0, text.find(planted) - 120):text.find(planted) + 40]
             for text in channels if planted in text]
    leaks += [str(f) for f in store_files if planted.encode() in f.read_bytes()]
    assert leaks == []
    # The channels were really exercised: the leaks happened and were masked.
    assert "backend refused credential ***" in "".join(channels[:3])
    # The SDK's HTTP client logged the upstream URL (DEBUG) and it passed the filter.
    assert "StreamableHTTP endpoint: http://***@127.0.0.1" in gateway_log
    records = _cli("logs", "--db", str(db), "--json", env=env)
    assert sum(1 for line in records.splitlines() if line.startswith("{")) >= 3


@pytest.mark.parametrize("text", [
    "basic configuration failed", "Basic Authentication required",
    "the bearer of news", "session=short-lived is fine?",
])
def test_ordinary_words_are_not_masked(text: str) -> None:
    assert mask_text(text) == text


def test_short_plain_words_under_credential_keys_are_not_registered() -> None:
    parse_config({"servers": {"m": {"command": "x", "env": {
        "AUTH_MODE": "disabled", "SESSION_KIND": "ephemeral", "API_TOKEN": "Zx9-k2-real"}}}},
        source="test")
    assert "disabled" not in SECRETS and "ephemeral" not in SECRETS
    assert "Zx9-k2-real" in SECRETS


def test_a_config_of_many_servers_with_a_token_each_loads_without_recompiling(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each server's secrets are added as it is validated, and every add recompiled one
    alternation of all the values known: 1,000 servers with a token each took 74 s to
    load (and each masked text ~8 ms).  Counted, not timed: what is compiled stays
    linear in the secrets (the few short ones only), and each is still masked whole."""
    from fast_mcp_gateway.telemetry import redaction

    registry = redaction.SecretRegistry()
    monkeypatch.setattr(redaction, "SECRETS", registry)
    compiled: list[int] = []
    real = redaction.re.compile

    def counting(pattern: Any, *args: Any) -> Any:
        compiled.append(len(pattern))
        return real(pattern, *args)

    monkeypatch.setattr(redaction.re, "compile", counting)
    tokens = {f"T{i}": secrets.token_urlsafe(24) for i in range(1000)}
    for name, value in tokens.items():
        monkeypatch.setenv(name, value)
    parse_config({"servers": {f"s{i}": {"command": "x", "env": {"API_TOKEN": f"${{T{i}}}"}}
                              for i in range(1000)}})
    assert len(registry) >= 1000
    assert sum(compiled) < 10_000, (len(compiled), sum(compiled))
    registry.add(["abcd", "wxyz9"])  # short ones: an alternation of their own
    inner = tokens["T7"]
    registry.add([f"ab{inner}yz"])  # holds another secret: masked whole
    text = f"a {tokens['T3']} b {tokens['T999']}, abcd, c ab{inner}yz wxyz9."
    assert registry.mask(text) == f"a {MASK} b {MASK}, {MASK}, c {MASK} {MASK}."
