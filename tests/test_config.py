"""servers.yaml / mcpServers parsing, interpolation and error messages (pure)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fast_mcp_gateway.config.loader import load_config, parse_config, parse_config_text
from fast_mcp_gateway.errors import ConfigError

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


def test_missing_variable_names_server_field_and_fix() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"gh": {"command": "x", "env": {"GITHUB_TOKEN": "${GH_TOKEN}"}}}},
                     source="servers.yaml", environ={})
    message = str(info.value)
    assert "servers.yaml: server 'gh', field 'env.GITHUB_TOKEN'" in message
    assert "'GH_TOKEN' is not set" in message and "${GH_TOKEN:-default}" in message


def test_unknown_field_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"a": {"comand": "python"}}}, source="f.yaml")
    text = str(info.value)
    assert "server 'a', field 'comand': unknown field; did you mean 'command'?" in text


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
