"""A corpus of malformed configs: each is refused with one line naming the file, the server
and the field, and saying what to fix; never a traceback, never a half-started gateway.

Plus property-based fuzzing: random YAML-ish documents and bytes give a config or a
``ConfigError``, never another exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fast_mcp_gateway.config.document import decode_config
from fast_mcp_gateway.config.loader import (
    load_config,
    parse_config,
    parse_config_text,
    parse_import,
)
from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.errors import ConfigError

CLI = [sys.executable, "-m", "fast_mcp_gateway"]
PY = sys.executable


@dataclass(frozen=True)
class Case:
    id: str
    content: str | bytes
    server: str | None
    field: str | None
    fix: str  # a fragment of the instruction the message must give
    suffix: str = ".yaml"


def server(settings: str, name: str = "a") -> str:
    """One server in our YAML shape (flow style keeps the table readable)."""
    return f"servers:\n  {name}: {{{settings}}}\n"


def claude(entry: dict[str, Any], name: str = "a") -> str:
    return json.dumps({"mcpServers": {name: entry}})


DEEP_YAML = "a: " + "[" * 5000 + "]" * 5000
DEEP_JSON = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
DEEP_IN_SERVER = server("command: echo, x: " + "{a: " * 30 + "1" + "}" * 30)

CASES = [
    # --- the file itself ---------------------------------------------------------------
    Case("binary", b"\x7fELF\x02\x01\x01\x00\x00\x00binary", None, None, "save"),
    Case("latin-1", server("command: caf\xe9").encode("latin-1"), None, None,
         "save the file as UTF-8"),
    Case("utf-16-truncated", b"\xff\xfes\x00e\x00r", None, None, "save the file as UTF-8"),
    Case("deep-yaml", DEEP_YAML, None, None, "at most"),
    Case("deep-json", DEEP_JSON, None, None, "at most", ".json"),
    Case("top-level-list", "- servers\n", None, None, "must be a mapping"),
    Case("top-level-text", "just some words\n", None, None, "must be a mapping"),
    Case("unclosed-flow", "servers: [unclosed\n", None, None, "expected ',' or ']'"),
    Case("tab-indent", "servers:\n\ta: {command: echo}\n", None, None, "indent with spaces"),
    # Python's parser says "Expecting property name enclosed in double quotes" of all three.
    Case("json-trailing-comma", '{"mcpServers": {},}', None, None,
         "invalid JSON at line 1, column 18: a comma before '}' (JSON allows no trailing "
         "comma); remove it", ".json"),
    Case("json-trailing-comma-lines", '{\n  "mcpServers": {\n    "a": {"command": "x",\n'
         '      "args": ["y"],\n    },\n  }\n}\n', None, None,
         "invalid JSON at line 4, column 20: a comma before '}'", ".json"),
    Case("json-comment", '{\n  // my servers\n  "mcpServers": {}\n}\n', None, None,
         "JSON has no comments: remove it", ".json"),
    Case("json-single-quotes", "{'mcpServers': {}}", None, None,
         "JSON strings and keys take double quotes", ".json"),
    Case("duplicate-yaml-key", "servers:\n  a: {command: x}\n  a: {command: y}\n", None, None,
         "keep only one"),
    Case("duplicate-json-key", '{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}',
         None, None, "keep only one", ".json"),
    Case("huge-number", server("command: echo, replicas: " + "9" * 5000), None, None,
         "thousands of digits"),
    Case("recursive-alias", "a: &a [*a]\n", None, None, "refers to the mapping or list"),
    Case("python-tag", "servers: !!python/object/apply:os.system ['true']\n", None, None,
         "tags"),
    Case("top-level-typo", "server:\n  a: {command: echo}\n", None, "server",
         "did you mean 'servers'"),
    Case("mcpservers-case", '{"mcpservers": {}}', None, "mcpservers",
         "did you mean 'mcpServers'", ".json"),
    Case("both-shapes", '{"servers": {}, "mcpServers": {}}', None, "servers", "not both",
         ".json"),
    Case("servers-list", "servers:\n  - command: echo\n", None, "servers",
         "mapping of server name"),
    Case("mcpservers-list", '{"mcpServers": [{"command": "echo"}]}', None, "mcpServers",
         "mapping of server name", ".json"),
    Case("true-key", "true: 1\n", None, None, "put the key in quotes, e.g. 'true':"),
    Case("yes-key", "yes: 1\n", None, "yes", "unknown"),  # YAML 1.1's boolean words: names
    Case("number-server-name", "servers:\n  1: {command: echo}\n", None, "servers",
         "put it in quotes"),
    Case("null-server-name", "servers:\n  ~: {command: echo}\n", None, "servers",
         "write a name, in quotes"),
    Case("date-key", server("command: echo, env: {2020-01-01: x}"), "a", "env",
         "put it in quotes"),
    Case("bool-key-in-server", server("command: echo, False: 1"), "a", None,
         "put the key in quotes"),
    Case("on-key-in-server", server("command: echo, on: 1"), "a", "on", "unknown field"),
    Case("number-env-name", server("command: echo, env: {1: x}"), "a", "env", "put it in quotes"),
    # --- gateway options ---------------------------------------------------------------
    Case("bad-separator", "gateway: {separator: '.'}\n", None, "gateway.separator",
         "may only contain"),
    Case("gateway-nested-typo", "gateway: {timeouts: {conect: 5}}\n", None,
         "gateway.timeouts.conect", "did you mean 'connect'"),
    Case("gateway-typo", "gateway: {sepparator: '-'}\n", None, "gateway.sepparator",
         "did you mean 'separator'"),
    Case("env-allow-bad", "gateway: {env_allow: [BAD-NAME]}\n", None, "gateway.env_allow",
         "write e.g. GITHUB_TOKEN"),
    Case("admin-mode", "gateway: {admin: readonly}\n", None, "gateway.admin", "'read_only'"),
    Case("max-name-bool", "gateway: {max_name_length: true}\n", None,
         "gateway.max_name_length", "whole number, not true/false"),
    Case("gateway-list", "gateway: [a]\n", None, "gateway", "mapping of settings"),
    # --- one server ----------------------------------------------------------------------
    Case("typo", server("comand: echo"), "a", "comand", "did you mean 'command'"),
    Case("no-target", server("description: x"), "a", "command", "needs either 'command'"),
    Case("both-targets", server("command: echo, url: 'http://127.0.0.1/mcp'"), "a", "url",
         "keep the one"),
    Case("empty-command", server("command: ''"), "a", "command", "give the program"),
    Case("ftp-url", server("url: 'ftp://127.0.0.1/x'"), "a", "url", "http://127.0.0.1:9000/mcp"),
    Case("replicas-true", server("command: echo, replicas: true"), "a", "replicas",
         "whole number, not true/false"),
    Case("replicas-zero", server("command: echo, replicas: 0"), "a", "replicas",
         "greater than or equal to 1"),
    Case("replicas-2**64", server(f"command: echo, replicas: {2**64}"), "a", "replicas",
         "less than or equal to 64"),
    Case("replicas-quoted", server("command: echo, replicas: '2'"), "a", "replicas",
         "without quotes"),
    Case("name-field", server("command: echo, name: b"), "a", "name", "rename the key"),
    Case("secrets-field", server("command: echo, secrets: [x]"), "a", "secrets", "${VAR}"),
    Case("unclosed-var", server("command: echo, args: ['${HOME']"), "a", "args[0]",
         "no closing '}'"),
    Case("bad-var-name", server("command: echo, env: {X: '${1X}'}"), "a", "env.X",
         "not a valid variable reference"),
    Case("nested-default", server("command: echo, env: {X: '${A:-${B}}'}"), "a", "env.X",
         "plain default"),
    Case("missing-var", server("command: echo, env: {X: '${CORPUS_SURELY_UNSET}'}"), "a",
         "env.X", "export it"),
    Case("vscode-input", server("command: echo, env: {X: '${input:token}'}"), "a", "env.X",
         "set an environment variable"),
    Case("nested-typo", server("command: echo, timeouts: {conect: 5}"), "a", "timeouts.conect",
         "did you mean 'connect'"),
    Case("negative-timeout", server("command: echo, timeouts: {call: -1}"), "a",
         "timeouts.call", "greater than 0"),
    Case("infinite-timeout", server("command: echo, timeouts: {call: .inf}"), "a",
         "timeouts.call", "finite"),
    Case("quoted-timeout", server("command: echo, timeouts: {call: '5'}"), "a",
         "timeouts.call", "without quotes"),
    Case("include-string", server("command: echo, tools: {include: 'issue_*'}"), "a",
         "tools.include", 'include: ["issue_*"]'),  # its own value as the example
    Case("args-string", server("command: npx, args: '-y some-server'"), "a", "args",
         "not split into words"),
    Case("env-number", server("command: echo, env: {PORT: 8080}"), "a", "env.PORT",
         "put the value in quotes"),
    Case("enabled-quoted", server("command: echo, enabled: 'yes'"), "a", "enabled",
         "true or false (without quotes)"),
    # YAML 1.1 reads a bare off/no as false: the user wrote an allowed word.
    Case("admin-bare-off", "gateway: {admin: off}\nservers: {}\n", None, "gateway.admin",
         'to mean off, put it in quotes ("off")'),
    Case("pinning-bare-no", server("command: echo, pinning: no"), "a", "pinning",
         'to mean off, put it in quotes ("off")'),
    Case("admin-bare-yes", "gateway: {admin: yes}\nservers: {}\n", None, "gateway.admin",
         "'full', 'read_only' or 'off', not true/false"),
    Case("transport-grpc", server("command: echo, transport: grpc"), "a", "transport",
         "'stdio', 'http' or 'sse'"),
    Case("command-with-http", server("command: echo, transport: http"), "a", "transport",
         "needs a 'url'"),
    Case("url-with-stdio", server("url: 'http://127.0.0.1/mcp', transport: stdio"), "a",
         "transport", "needs a 'command'"),
    Case("url-with-args", server("url: 'http://127.0.0.1/mcp', args: [x]"), "a", "args",
         "only apply to stdio"),
    Case("command-with-headers", server("command: echo, headers: {A: b}"), "a", "headers",
         "only apply to http"),
    Case("cwd-missing", server("command: echo, cwd: /nonexistent/corpus"), "a", "cwd",
         "create it or fix the path"),
    Case("cwd-file", server(f"command: echo, cwd: '{PY}'"), "a", "cwd",
         "give the directory"),
    Case("self-serve", server("command: mcp-gateway, args: [serve]", "gw"), "gw", "command",
         "list its servers directly"),
    Case("self-module", server(f"command: '{PY}', args: [-m, fast_mcp_gateway, serve]", "gw"),
         "gw", "command", "list its servers directly"),
    Case("self-uvx", server("command: uvx, args: [--from, fast-mcp-gateway, mcp-gateway, serve]",
                            "gw"), "gw", "command", "list its servers directly"),
    Case("bad-namespace", server("command: echo, namespace: 'has space'"), "a", "namespace",
         "may only contain"),
    Case("duplicate-namespace", "servers:\n  a: {command: p, namespace: x}\n  x: {command: q}\n",
         "x", "namespace", "give one of them another"),
    Case("hash-key-without-hash", server("command: echo, hash_key: session"), "a", "hash_key",
         "balance: hash"),
    Case("hash-key-bad", server("command: echo, balance: hash, hash_key: foo"), "a",
         "hash_key", "arguments.<argument name>"),
    Case("health-order", server("command: echo, health: {healthy_success: 0.5, "
                                "degraded_success: 0.9}"), "a", "health.degraded_success",
         "must not exceed"),
    Case("attempts-100", server("command: echo, retry: {attempts: 100}"), "a",
         "retry.attempts", "less than or equal to 10"),
    Case("rate-limit-typo", server("command: echo, rate_limit: {per_second: 1, brust: 2}"),
         "a", "rate_limit.brust", "did you mean 'burst'"),
    Case("instance-typo", server("instances: [{url: 'http://127.0.0.1/mcp', comand: x}]"), "a",
         "instances[0].comand", "did you mean 'command'"),
    Case("instances-and-command", server("command: echo, instances: [{command: echo}]"), "a",
         "instances", "either 'instances'"),
    Case("instances-and-replicas", server("instances: [{command: echo}], replicas: 2"), "a",
         "replicas", "list each"),
    Case("instance-weight-bool", server("instances: [{command: echo, weight: true}]"), "a",
         "instances[0].weight", "whole number"),
    Case("server-is-text", "servers:\n  a: echo\n", "a", None, "mapping of settings"),
    Case("empty-server-name", "servers:\n  ' ': {command: echo}\n", None, "servers",
         "give every server a name"),
    Case("header-newline", server("url: 'http://127.0.0.1/mcp', headers: {A: \"x\\ny\"}"), "a",
         "headers.A", "single line"),
    Case("header-name", server("url: 'http://127.0.0.1/mcp', headers: {'X Y': z}"), "a",
         "headers.X Y", "valid header name"),
    Case("env-name-equals", server("command: echo, env: {'A=B': c}"), "a", "env.A=B",
         "valid variable name"),
    Case("nul-in-arg", server('command: echo, args: ["a\\0b"]'), "a", "args[0]", "remove it"),
    Case("command-with-args", server("command: 'npx -y some-server'"), "a", "command",
         "put the arguments in 'args'"),
    # A '/' in a later word (a scoped npm package, a folder) made the line a "path".
    Case("command-line-scoped", server("command: 'npx -y @modelcontextprotocol/server-memory'"),
         "a", "command", "args: ['-y', '@modelcontextprotocol/server-memory']"),
    Case("claude-command-line", claude({"command": "npx -y @scope/server-filesystem /tmp"}),
         "a", "command", "command: npx, args: ['-y', '@scope/server-filesystem', '/tmp']",
         ".json"),
    Case("stderr-lines-huge", server(f"command: echo, stderr_lines: {10**20}"), "a",
         "stderr_lines", "less than or equal to"),
    Case("deep-in-server", DEEP_IN_SERVER, "a", "x", "no setting is that deep"),
    Case("idempotent-string", server("command: echo, idempotent_tools: search"), "a",
         "idempotent_tools", "must be a list"),
    # --- Claude Desktop shape ----------------------------------------------------------
    Case("claude-disabled-string", claude({"command": "echo", "disabled": "true"}), "a",
         "disabled", "true or false without quotes", ".json"),
    Case("claude-type", claude({"url": "http://127.0.0.1/mcp", "type": "websocket"}), "a",
         "type", "use stdio, http", ".json"),
    Case("claude-typo", claude({"comand": "echo"}), "a", "comand", "did you mean 'command'",
         ".json"),
    Case("claude-name", claude({"command": "echo", "name": "b"}), "a", "name",
         "unknown mcpServers key", ".json"),
    Case("claude-args-string", claude({"command": "npx", "args": "-y x"}), "a", "args",
         "not split into words", ".json"),
    # A per-server setting of ours was "unknown mcpServers key; known: args, command, ...":
    # no way to set it was named.
    Case("claude-timeouts", claude({"command": "echo", "timeouts": {"call": 60}}), "a",
         "timeouts", "is a servers.yaml setting, not an mcpServers key: to use it, put the "
         "servers under 'servers:' instead of 'mcpServers:' (command, args, env, url as "
         "written; 'type' becomes 'transport', 'disabled: true' 'enabled: false'); or set "
         "gateway.timeouts, for every server", ".json"),
    Case("claude-isolation", claude({"command": "echo", "isolation": "per_client"}), "a",
         "isolation", "is a servers.yaml setting, not an mcpServers key", ".json"),
    Case("claude-env-number", claude({"command": "echo", "env": {"PORT": 8080}}), "a",
         "env.PORT", "in quotes", ".json"),
    Case("claude-url-scheme", claude({"url": "localhost:8080/mcp"}), "a", "url",
         "http://127.0.0.1:9000/mcp", ".json"),
    Case("claude-entry-list", '{"mcpServers": {"a": ["echo"]}}', "a", None,
         "mapping of settings", ".json"),
]


def test_a_path_with_a_space_is_a_program(tmp_path: Path) -> None:
    """Only a command line is refused: a path with a space, there or not (the start says
    what is missing), is a program."""
    folder = tmp_path / "My Servers"
    folder.mkdir()
    (folder / "srv").write_text("#!/bin/sh\n")
    for command in (str(folder / "srv"), "/opt/My Servers/x5", "My Servers/x6",
                    "Servers of mine/x7"):
        parse_config({"servers": {"a": {"command": command}}}, source="t")


def test_the_corpus_is_large_and_unique() -> None:
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_malformed_config_is_one_clear_line(case: Case, tmp_path: Path) -> None:
    path = tmp_path / f"{case.id}{case.suffix}"
    if isinstance(case.content, bytes):
        path.write_bytes(case.content)
    else:
        path.write_text(case.content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"HOME": str(tmp_path)})
    message = str(info.value)
    assert len(info.value.issues) == 1, message
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}:") or message.startswith(f"{path},"), message
    issue = info.value.issues[0]
    assert (issue.server, issue.field) == (case.server, case.field), message
    if case.server is not None:
        assert f"server '{case.server}'" in message
    if case.field is not None:
        assert f"field '{case.field}'" in message
    assert case.fix in message, message
    # Internal fields are never offered as a fix.
    assert "'secrets'?" not in message and "did you mean 'name'" not in message


# A broken entry costs its server only: the CLI leaves it out, says why in the corpus's
# words, and starts the others (a valid server next to the broken one creates a marker
# file when started; tests/test_invalid_entries.py has the rest).
CLI_CASES = ["typo", "replicas-true", "unclosed-var", "self-serve", "cwd-missing"]


@pytest.mark.parametrize("command", ["check", "serve"])
@pytest.mark.parametrize("case_id", CLI_CASES)
def test_cli_leaves_out_only_the_broken_server(case_id: str, command: str,
                                               tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    assert isinstance(case.content, str)
    marker = tmp_path / "started"
    starter = {"command": PY, "args": ["-c", f"open({str(marker)!r}, 'w')"]}
    text = case.content + f"  marker: {json.dumps(starter)}\n"
    path = tmp_path / "servers.yaml"
    path.write_text(text, encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("MCP_GATEWAY_CONFIG", None)
    proc = subprocess.run([*CLI, command, "--no-db", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    said = f"{path}: server '{case.server}'"
    if command == "check":
        assert proc.returncode == 1, proc.stderr
        row = next(line for line in proc.stdout.splitlines()
                   if line.startswith(f"{case.server} "))
        assert " invalid " in row and said in row and case.fix in row, proc.stdout
        assert marker.exists()  # the valid server was started (probed)
    else:
        assert proc.returncode == 0, proc.stderr
        logged = [line for line in proc.stderr.splitlines() if " ERROR " in line]
        assert any(f"server '{case.server}' is not started, its entry is invalid: {said}"
                   in line and case.fix in line for line in logged), proc.stderr
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------------------
# Property-based: anything at all is a config or a ConfigError
# ---------------------------------------------------------------------------------------

FIELDS = ["servers", "mcpServers", "gateway", "command", "args", "env", "cwd", "url",
          "headers", "transport", "type", "replicas", "instances", "timeouts", "connect",
          "name", "secrets", "disabled", "enabled", "rate_limit", "tools", "per_second",
          "health", "retry", "namespace", "env_allow", "admin", "<<", "x-base"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["echo", "${HOME}", "${UNSET_X", "${A:-${B}}", "$$", "http://127.0.0.1/mcp",
                     "HTTP://x/sse", "stdio", "sse", "true", "/nonexistent", "mcp-gateway",
                     "serve", "-m", "fast_mcp_gateway", "", " ", "\t", "a\x00b", "\ud800"]),
    st.text(max_size=12),
)
KEYS = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8), st.integers(-3, 3),
                 st.booleans(), st.none())
DOCS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=25)
TEXT_DOCS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=5)),
    max_leaves=25)
NOISE = st.sampled_from(["{", "}", "[", "]", ":", "- ", "\t", "&a ", "*a", "<<: ", "!!", "${",
                         "\n  ", "'", '"', "\ufeff", "?", "|", ">", "#", "%YAML 1.1\n", "---\n"])
FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _only_config_errors(parse: Any, *args: Any, **kwargs: Any) -> None:
    try:
        result = parse(*args, **kwargs)
    except ConfigError as exc:
        assert str(exc) and "Traceback" not in str(exc)
    else:
        assert isinstance(result, GatewayConfig)


@FUZZ
@given(DOCS)
def test_random_data_gives_a_config_or_a_config_error(data: Any) -> None:
    _only_config_errors(parse_config, {"servers": data} if isinstance(data, dict) else data,
                        environ={"HOME": "/home/x"})
    _only_config_errors(parse_config, {"mcpServers": data}, environ={})


@FUZZ
@given(TEXT_DOCS, st.lists(st.tuples(st.integers(0, 10_000), NOISE), max_size=4),
       st.sampled_from(["yaml", "json"]))
def test_random_yamlish_text_gives_a_config_or_a_config_error(
        data: Any, noise: list[tuple[int, str]], style: str) -> None:
    try:
        text = (json.dumps(data, ensure_ascii=False) if style == "json"
                else yaml.safe_dump(data, allow_unicode=True))
    except (ValueError, yaml.YAMLError):  # e.g. a lone surrogate cannot be dumped
        return
    for at, piece in noise:
        at %= len(text) + 1
        text = text[:at] + piece + text[at:]
    _only_config_errors(parse_config_text, text, source="fuzz.yaml", environ={})
    with contextlib.suppress(ConfigError):
        parse_import(text, env_allow=["HOME"], environ={"HOME": "/h"})


@FUZZ
@given(st.binary(max_size=200) | st.sampled_from([b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf",
                                                   b"\xff\xfe\x00\x00"]).flatmap(
    lambda bom: st.binary(max_size=60).map(lambda rest: bom + rest)))
def test_random_bytes_give_a_config_or_a_config_error(data: bytes) -> None:
    try:
        text = decode_config(data, "fuzz.yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    _only_config_errors(parse_config_text, text, source="fuzz.yaml", environ={})
