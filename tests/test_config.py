"""servers.yaml / mcpServers parsing, interpolation, policies and error messages.

The malformed-file corpus and the fuzzing are in test_config_corpus.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from fast_mcp_gateway.config.loader import (
    load_config,
    parse_config,
    parse_config_text,
    parse_import,
    parse_registration,
)
from fast_mcp_gateway.config.schema import (
    GatewayOptions,
    RoutePriority,
    RowId,
    admin_allows,
    env_allowed,
)
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.telemetry.redaction import mask_secrets, redact_value

REPO = Path(__file__).resolve().parents[1]


def test_repo_servers_yaml_is_valid_and_uses_the_gateways_python() -> None:
    config = load_config(REPO / "servers.yaml")
    assert list(config.servers) == ["notes", "clock"]
    assert all(s.command == sys.executable for s in config.servers.values())
    assert config.servers["notes"].kind == "stdio"


def test_interpolation_with_defaults_and_escapes() -> None:
    config = parse_config(
        {"servers": {"api": {
            "url": "http://127.0.0.1:${PORT:-9000}/mcp",
            "headers": {"Authorization": "Bearer ${TOKEN}", "X-Price": "$$5"},
        }}},
        environ={"TOKEN": "s3cr3t-value"},
    )
    api = config.servers["api"]
    assert api.url == "http://127.0.0.1:9000/mcp"
    assert api.headers == {"Authorization": "Bearer s3cr3t-value", "X-Price": "$5"}
    assert api.kind == "http"
    redacted = json.dumps(api.redacted())
    assert "s3cr3t-value" not in redacted


def test_instances_are_interpolated_as_a_servers_own_fields() -> None:
    """Each replica given under ``instances`` reaches a process or a connection too: its
    ``${VAR}`` references were left as written (a URL of '${HOST}', a header of
    'Bearer ${TOKEN}' sent as such)."""
    config = parse_config({"servers": {"api": {"instances": [
        {"url": "http://${HOST:-127.0.0.1}:9001/mcp",
         "headers": {"Authorization": "Bearer ${TOKEN}"}},
        {"command": "python", "args": ["server.py", "--key", "${TOKEN}"],
         "env": {"MODE": "${MODE:-fast}"}, "weight": 2},
    ]}}}, environ={"TOKEN": "s3cr3t-value"})
    first, second = config.servers["api"].instances
    assert first.url == "http://127.0.0.1:9001/mcp"
    assert first.headers == {"Authorization": "Bearer s3cr3t-value"}
    assert second.args == ("server.py", "--key", "s3cr3t-value")
    assert second.env == {"MODE": "fast"}
    assert "s3cr3t-value" not in json.dumps(config.servers["api"].redacted())
    with pytest.raises(ConfigError, match=r"server 'api', field 'instances\[1\]\.env\.K': "
                                          r"environment variable 'NOPE' is not set"):
        parse_config({"servers": {"api": {"instances": [
            {"url": "http://127.0.0.1:9001/mcp"},
            {"command": "x", "env": {"K": "${NOPE}"}}]}}}, environ={})


def test_missing_variable_names_server_field_and_fix() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"gh": {"command": "x", "env": {"GITHUB_TOKEN": "${GH_TOKEN}"}}}},
                     source="servers.yaml", environ={})
    message = str(info.value)
    assert "servers.yaml: server 'gh', field 'env.GITHUB_TOKEN'" in message
    assert "'GH_TOKEN' is not set" in message and "${GH_TOKEN:-default}" in message
    # Where to set it when a host starts the gateway ("export it" did not reach it).
    assert "in the \"env\" of the gateway's entry in the host's config" in message


def test_unknown_field_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"a": {"comand": "python"}}}, source="f.yaml")
    text = str(info.value)
    assert "server 'a', field 'comand': unknown field; did you mean 'command'?" in text


@pytest.mark.parametrize(("key", "value", "hint"), [
    ("disabled", True, "Claude Desktop's key; here it is 'enabled', with the opposite "
                       "value: 'disabled: true' is 'enabled: false'"),
    ("type", "stdio", "Claude Desktop's key; here it is 'transport' (http or sse, for a "
                      "server with a url; a stdio server needs none: 'command' makes it one)"),
    ("timeout", 60, "another host's key; here a call's limit is 'timeouts: {call: SECONDS}' "
                    "(seconds)"),
    ("autoApprove", [], "another host's bookkeeping, which the gateway does not use: "
                        "remove it"),
])
def test_another_hosts_key_under_servers_says_what_to_write(key: str, value: object,
                                                            hint: str) -> None:
    """An entry moved from a Claude Desktop file to 'servers:' as it was (trial8): the
    typo guess for 'disabled' was "did you mean 'enabled'?", and 'enabled: true' is the
    opposite of what was meant; 'type' listed every field."""
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"a": {"command": "python", key: value}}}, source="f.yaml")
    assert f"server 'a', field '{key}': unknown field: {hint}" in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({
            "gateway": {"separator": "."},
            "servers": {
                "a": {"command": "x", "url": "http://127.0.0.1/mcp"},
                "b": {},
                "c": {"url": "ftp://127.0.0.1/x"},
                "d": {"command": "x", "namespace": "has space"},
            },
        }, source="f.yaml")
    issues = info.value.issues
    fields = {(i.server, i.field) for i in issues}
    assert (None, "gateway.separator") in fields
    assert ("a", "url") in fields and ("b", "command") in fields
    assert ("c", "url") in fields and ("d", "namespace") in fields
    assert str(info.value).startswith(f"{len(issues)} configuration problems:")


def test_duplicate_namespace_is_an_error() -> None:
    with pytest.raises(ConfigError, match="namespace 'x' is already used by server 'a'"):
        parse_config({"servers": {"a": {"command": "p", "namespace": "x"},
                                  "x": {"command": "q"}}})


def test_empty_namespace_is_allowed_for_many_servers() -> None:
    config = parse_config({"servers": {"a": {"command": "p", "namespace": ""},
                                       "b": {"command": "q", "namespace": ""}}})
    assert [s.effective_namespace for s in config.servers.values()] == ["", ""]


def test_claude_desktop_file_is_accepted_unchanged() -> None:
    text = json.dumps({"mcpServers": {
        "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem",
                                                  "/tmp"]},
        "remote": {"type": "streamable-http", "url": "http://127.0.0.1:8123/mcp",
                   "headers": {"Authorization": "Bearer x"}},
        "legacy": {"url": "http://127.0.0.1:8124/sse"},
        "off": {"command": "uvx", "args": ["mcp-server-time"], "disabled": True,
                "autoApprove": []},
    }})
    config = parse_config_text(text, source="claude_desktop_config.json")
    servers = config.servers
    assert servers["filesystem"].kind == "stdio" and servers["filesystem"].args[0] == "-y"
    assert servers["remote"].kind == "http"
    assert servers["legacy"].kind == "sse"
    assert servers["off"].enabled is False


def test_claude_file_as_yaml_and_unknown_key() -> None:
    with pytest.raises(ConfigError, match="server 'x', field 'comand'"):
        parse_config_text("mcpServers:\n  x:\n    comand: foo\n")


def test_yaml_errors_and_duplicate_keys_are_located() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        parse_config_text("servers:\n  a: {command: x}\n  a: {command: y}\n", source="s.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse_config_text("servers: [unclosed\n", source="s.yaml")
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        parse_config_text('{"mcpServers": ', source="c.json")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_stdio_only_fields_on_remote_server() -> None:
    with pytest.raises(ConfigError, match="args/env/cwd only apply to stdio"):
        parse_config({"servers": {"r": {"url": "http://127.0.0.1/mcp", "args": ["x"]}}})


# --- interpolation policy for runtime registrations (issue 14, item 1) ---------------------


def test_runtime_registration_may_use_only_allowed_variables() -> None:
    environ = {"MYAPP_TOKEN": "allowed-value", "AWS_SECRET": "never-sent"}
    server = parse_registration(
        "api", {"url": "http://127.0.0.1:9/mcp", "headers": {"X": "${MYAPP_TOKEN}"}},
        source="gateway_add_server", env_allow=["MYAPP_*"], environ=environ)
    assert server.headers == {"X": "allowed-value"}
    assert "allowed-value" in server.secrets
    for value in ("${AWS_SECRET}", "${AWS_SECRET:-x}", "${env:AWS_SECRET}"):
        with pytest.raises(ConfigError) as info:
            parse_registration("api", {"url": "http://127.0.0.1:9/mcp", "headers": {"X": value}},
                               source="gateway_add_server", env_allow=["MYAPP_*"],
                               environ=environ)
        message = str(info.value)
        assert "gateway_add_server: server 'api', field 'headers.X'" in message
        assert "'AWS_SECRET' may not be used" in message
        assert "env_allow: [AWS_SECRET]" in message and "never-sent" not in message


def test_runtime_registration_allows_nothing_by_default_but_the_gateways_python() -> None:
    server = parse_registration("py", {"command": "${GATEWAY_PYTHON}", "args": ["-V"]},
                                source="add", environ={})
    assert server.command == sys.executable and not server.secrets
    with pytest.raises(ConfigError, match="'HOME' may not be used"):
        parse_registration("py", {"command": "echo", "args": ["${HOME}"]}, source="add",
                           environ={"HOME": "/home/x"})


def test_runtime_registration_may_not_forward_caller_credentials_unless_allowed() -> None:
    """A registration naming its own URL with ``${caller.token}`` collects the token of
    everyone who calls its tools (an admin restricted to one server, an ops token's):
    refused unless the operator names the reference in ``env_allow`` (a ``*`` allowing
    every variable does not)."""
    entry = {"url": "http://127.0.0.1:9/mcp",
             "headers": {"Authorization": "Bearer ${caller.token}",
                         "X-User": "${caller.claims.sub}"}}
    for allow in ((), ("*",), ("caller.claims.*",)):
        with pytest.raises(ConfigError) as info:
            parse_registration("grab", entry, source="PUT /api/v1/servers/grab",
                               env_allow=allow, environ={})
        assert "'${caller.token}' may not" not in str(info.value)  # quoted as written
        assert "field 'headers.Authorization': ${caller.token} may not be used by a " \
               "runtime registration" in str(info.value)
        assert "env_allow: [caller.token]" in str(info.value)
    server = parse_registration("grab", entry, source="add", environ={},
                                env_allow=["caller.token", "caller.claims.*"])
    assert server.headers["Authorization"] == "Bearer ${caller.token}"
    assert env_allowed("caller.claims.sub", ["caller.claims.sub"])
    assert not env_allowed("caller.token", ["caller*"])
    assert not env_allowed("caller_x", ["caller.*"])
    config = parse_config({"gateway": {"env_allow": ["caller.token", "caller.claims.*"]},
                           "servers": {"t": entry}}, environ={})  # the file: any
    assert config.servers["t"].headers["X-User"] == "${caller.claims.sub}"


def test_the_operators_file_keeps_full_interpolation() -> None:
    config = parse_config({"gateway": {"env_allow": ["ONLY_THIS"]},
                           "servers": {"a": {"command": "echo", "env": {"K": "${OTHER}"}}}},
                          environ={"OTHER": "value-1"})
    assert config.servers["a"].env == {"K": "value-1"}
    assert config.options.env_allow == ("ONLY_THIS",)


def test_interpolation_forms() -> None:
    config = parse_config({"servers": {"a": {"command": "echo", "args": [
        "${EMPTY:-fallback}", "${env:NAME}", "$${NAME}", "plain $NAME"]}}},
        environ={"EMPTY": "", "NAME": "n"})
    assert config.servers["a"].args == ("fallback", "n", "${NAME}", "plain $NAME")


def test_a_claude_file_passes_dollars_through_as_its_hosts_do() -> None:
    # Claude Desktop and Claude Code hand "pa$$word" to the server as written; read as
    # servers.yaml's escape it reached the server as "pa$word" (a wrong password).
    text = json.dumps({"mcpServers": {"db": {
        "command": "db-mcp", "args": ["--password=pa$$word", "cost $5", "$${LITERAL}",
                                      "${NAME}"],
        "env": {"SECRET": "x$$y$", "HOME_DIR": "${NAME:-none}"}},
        "web": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "k$$1"}}}})
    config = parse_config_text(text, source="claude_desktop_config.json",
                               environ={"NAME": "n"})
    assert config.servers["db"].args == ("--password=pa$$word", "cost $5", "${LITERAL}",
                                         "n")
    assert config.servers["db"].env == {"SECRET": "x$$y$", "HOME_DIR": "n"}
    assert config.servers["web"].headers == {"X-Key": "k$$1"}
    # Imported, an entry is stored in servers.yaml's form: read back, the same text.
    imported = parse_import(text, env_allow=["NAME"], environ={"NAME": "n"})
    assert imported.entries["db"]["args"][0] == "--password=pa$$$$word"
    again = parse_registration("db", imported.entries["db"], source="store",
                               env_allow=["NAME"], environ={"NAME": "n"})
    assert again.args == config.servers["db"].args and again.env == config.servers["db"].env
    # servers.yaml keeps its escape.
    assert parse_config_text("servers:\n  db: {command: db-mcp, args: ['pa$$word']}\n"
                             ).servers["db"].args == ("pa$word",)


def test_a_bad_reference_is_told_the_escape_that_works_in_both_formats() -> None:
    for text in ("servers:\n  a: {command: echo, args: ['${oops']}\n",
                 '{"mcpServers": {"a": {"command": "echo", "args": ["${oops"]}}}'):
        with pytest.raises(ConfigError, match=r"or \$\$\{ for a literal \$\{"):
            parse_config_text(text)


def test_import_keeps_entries_unexpanded_and_converts_claude_entries() -> None:
    text = ('{\n\t"mcpServers": {\n\t\t"fs": {"command": "npx", "args": ["${MYAPP_DIR}"],'
            ' "disabled": true},\n\t\t"web": {"type": "sse", "url": "http://127.0.0.1:9/sse"}'
            '\n\t}\n}')
    imported = parse_import(text, env_allow=["MYAPP_*"], environ={"MYAPP_DIR": "/data"})
    assert imported.config.servers["fs"].args == ("/data",)
    assert imported.entries == {
        "fs": {"command": "npx", "args": ["${MYAPP_DIR}"], "enabled": False},
        "web": {"url": "http://127.0.0.1:9/sse", "transport": "sse"},
    }
    # What is stored validates again as a registration.
    for name, entry in imported.entries.items():
        parse_registration(name, entry, source="store", env_allow=["MYAPP_*"],
                           environ={"MYAPP_DIR": "/data"})


@pytest.mark.parametrize(("content", "fix"), [
    ("", "is empty; paste a servers.yaml"),
    ("  \n", "is empty; paste a servers.yaml"),
    ("servers: {}\n", "has no servers to import"),
    ("gateway: {env_allow: ['*']}\nservers: {a: {command: echo}}\n", "remove the 'gateway:'"),
])
def test_import_refuses_empty_content_and_gateway_options(content: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=fix):
        parse_import(content)


def test_env_allow_patterns_and_admin_modes() -> None:
    assert env_allowed("MYAPP_TOKEN", ["MYAPP_*"]) and env_allowed("GH", ["GH"])
    assert not env_allowed("GH_TOKEN", ["GH"]) and not env_allowed("X", [])
    assert env_allowed("GATEWAY_PYTHON", []) and env_allowed("ANY", ["*"])
    assert GatewayOptions().admin == "full"
    table = {(mode, kind): admin_allows(mode, kind)
             for mode in ("full", "read_only", "off") for kind in ("read", "mutate")}
    assert table == {("full", "read"): True, ("full", "mutate"): True,
                     ("read_only", "read"): True, ("read_only", "mutate"): False,
                     ("off", "read"): False, ("off", "mutate"): False}
    assert GatewayOptions(admin="read_only").allows_admin("read")


def test_store_integers_are_bounded_at_the_edge() -> None:
    ids, priorities = TypeAdapter(RowId), TypeAdapter(RoutePriority)
    assert ids.validate_python(2**63 - 1) == 2**63 - 1
    for bad in (2**63, 0, True):
        with pytest.raises(ValidationError):
            ids.validate_python(bad)
    with pytest.raises(ValidationError, match="less than or equal to 1000000"):
        priorities.validate_python(2**64)


# --- files that must load (issue 14, items 7 and 8) -----------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32", "utf-16-be"])
def test_bom_encoded_files_are_read(encoding: str, tmp_path: Path) -> None:
    path = tmp_path / "servers.yaml"
    text = "servers:\n  caf\u00e9: {command: echo, description: 'd\u00e9j\u00e0'}\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    assert load_config(path).servers["caf\u00e9"].description == "d\u00e9j\u00e0"


def test_yaml_merge_keys_with_overrides() -> None:
    config = parse_config_text(
        "x-defaults: &defaults\n  command: echo\n  timeouts: {call: 5}\n"
        "servers:\n  a:\n    <<: *defaults\n    command: printf\n  b: {<<: *defaults}\n")
    assert config.servers["a"].command == "printf" and config.servers["b"].command == "echo"
    assert config.servers["a"].timeouts.call == 5
    with pytest.raises(ConfigError, match="duplicate key 'command'"):
        parse_config_text("servers:\n  a: {command: a, command: b}\n")


def test_upper_case_url_scheme_and_claude_extras() -> None:
    text = json.dumps({
        "globalShortcut": "Ctrl+Space", "preferences": {"x": 1},
        "gateway": {"admin": "read_only"},
        "mcpServers": {"up": {"url": "HTTP://127.0.0.1:9/mcp", "disabled": False}},
    })
    config = parse_config_text(text, source="claude_desktop_config.json")
    assert config.servers["up"].enabled is True and config.servers["up"].kind == "http"
    assert config.options.admin == "read_only"


def test_an_env_file_the_gateway_does_not_read_is_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    """VS Code's and Cursor's ``envFile`` was ignored in silence: the server started
    without its keys and failed at its first call, for a reason nothing named."""
    text = json.dumps({"mcpServers": {"gh": {"command": "echo", "envFile": "${workspaceFolder}"
                                                                          "/.env"}}})
    config = parse_config_text(text, source="mcp.json")
    assert "gh" in config.servers
    [warning] = [r.getMessage() for r in caplog.records if "envFile" in r.getMessage()]
    assert warning.startswith("mcp.json: server 'gh': 'envFile' is not read (a VS Code / "
                              "Cursor key): the server starts without the variables of that "
                              "file; put them in 'env'"), warning


def test_a_chained_gateway_with_its_own_config_is_allowed(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    config = parse_config({"servers": {"inner": {
        "command": "mcp-gateway", "args": ["serve", "--config", str(other)]}}},
        source=str(tmp_path / "servers.yaml"))
    assert "inner" in config.servers
    with pytest.raises(ConfigError, match="runs this gateway itself"):
        parse_config({"servers": {"inner": {
            "command": "mcp-gateway", "args": ["serve", f"--config={tmp_path}/servers.yaml"]}}},
            source=str(tmp_path / "servers.yaml"))


def test_error_messages_mask_interpolated_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"a": {"url": "${URL}"}}}, environ={"URL": "sk-live-123456"})
    assert "sk-live-123456" not in str(info.value) and "***" in str(info.value)


def test_redaction_moved_to_telemetry() -> None:
    assert redact_value("Authorization", "Bearer x", frozenset()) == "***"
    assert redact_value("X-Plain", "has sk-999 and more", {"sk-999"}) == "has *** and more"
    assert mask_secrets("abc", {"abc"}) == "abc"  # too short to mask safely


def test_yaml_11_boolean_words_as_keys_are_names() -> None:
    """``retry: {on: [...]}`` as README writes it: PyYAML reads a bare ``on`` key as true,
    YAML 1.2 and the user as the field ``on``.  An unquoted ``true:`` stays refused."""
    config = parse_config_text(
        "servers:\n  a:\n    command: echo\n"
        "    retry: {attempts: 2, on: [connect, timeout]}\n"
        "    env: {NO: '1', Off: '2'}\n", source="<test>")
    server = config.servers["a"]
    assert server.retry.on == ("connect", "timeout")
    assert server.env == {"NO": "1", "Off": "2"}
    with pytest.raises(ConfigError, match="put the key in quotes"):
        parse_config_text("servers:\n  a: {command: echo, env: {true: x}}\n")


def test_a_caller_reference_however_written_is_checked_against_env_allow() -> None:
    """What the gateway fills in per call is the expanded header: ``$${caller.token}``
    and an allowed variable's default ending in ``$`` before ``{caller.token}`` expand
    to the reference, and are refused as it is (they passed unchecked)."""
    for header, allow in (("Bearer $${caller.token}", ()),
                          ("Bearer ${EMPTY:-$}{caller.token}", ("EMPTY",)),
                          ("$${caller.claims.email}", ("caller.token",))):
        entry = {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": header}}
        with pytest.raises(ConfigError, match="may not be used by a runtime registration"):
            parse_registration("grab", entry, source="add", env_allow=allow, environ={})
    allowed = parse_registration(
        "ok", {"url": "http://127.0.0.1:9/mcp", "headers": {"A": "Bearer $${caller.token}"}},
        source="add", env_allow=("caller.token",), environ={})
    assert allowed.uses_caller_credentials
    plain = parse_registration(  # an escaped ${ that names no caller stays literal text
        "ok", {"url": "http://127.0.0.1:9/mcp", "headers": {"A": "$${HOME}"}},
        source="add", environ={"HOME": "/root"})
    assert plain.headers == {"A": "${HOME}"} and not plain.uses_caller_credentials
