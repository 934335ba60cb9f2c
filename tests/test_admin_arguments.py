"""Wrong arguments to admin operations are explained in plain words, on MCP and REST, and
REST errors name REST operations, not the gateway_* tools."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from tests.fixtures import make_gateway
from tests.test_rest import OPS, assert_error, demo, serving

pytestmark = pytest.mark.anyio

PYDANTIC = ("validation error for", "errors.pydantic.dev", "Input should", "type=")


async def _error(client: Client, tool: str, arguments: dict[str, object]) -> str:
    result = await client.call_tool_mcp(tool, arguments)
    assert result.isError
    text: str = result.content[0].text  # type: ignore[union-attr]
    assert not any(word in text for word in PYDANTIC), text
    return text


async def test_admin_tools_explain_wrong_arguments(tmp_path: Path) -> None:
    gateway = make_gateway({}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        text = await _error(client, "gateway_calls", {"limit": "abc"})
        assert text.startswith("invalid arguments for 'gateway_calls': 'limit' must be a whole "
                               "number"), text
        assert "its arguments: server, tool, status" in text
        text = await _error(client, "gateway_calls", {"status": "bogus"})
        assert "'status' must be 'success', 'error', 'timeout', 'rejected' or 'cancelled'" \
            in text
        text = await _error(client, "gateway_server_detail", {})
        assert "'name' is required" in text
        text = await _error(client, "gateway_server_detail",
                            {"name": "x", "stderr_line": 5})
        assert "'stderr_line' is not accepted (did you mean 'stderr_lines'?)" in text
        # The list of its arguments once (it came twice: "accepted: name, config; its
        # arguments: name, config").
        text = await _error(client, "gateway_add_server",
                            {"name": "x", "config": {"command": "x"}, "extra": 1})
        assert text == ("invalid arguments for 'gateway_add_server': 'extra' is not accepted; "
                        "accepted: name, config"), text


async def test_rest_errors_name_rest_operations_and_fields(tmp_path: Path) -> None:
    async with serving(tmp_path, {"clock": demo("clock")}) as (api, _base):
        typo = assert_error(await api("POST", "/servers", OPS, json={
            "name": "t2", "config": {"comand": "x"}}), 422, "invalid_config")
        assert typo["message"].startswith(
            "POST /api/v1/servers body 'config': server 't2', field 'comand'"), typo
        assert "did you mean 'command'" in typo["message"]
        again = assert_error(await api("POST", "/servers", OPS, json={
            "name": "clock", "config": demo("clock")}), 409, "conflict")
        assert again["message"].endswith("use PUT /api/v1/servers/clock"), again
        bad_update = assert_error(await api("PUT", "/servers/clock", OPS, json={
            "config": {"command": "x", "timeout": "soon"}}), 422, "invalid_config")
        assert bad_update["message"].startswith("PUT /api/v1/servers/clock body 'config'")
        query = assert_error(await api("GET", "/logs/invocations?limit=abc", OPS), 422,
                             "validation_error")
        assert query["message"] == "invalid query: limit must be a whole number " \
                                   "(without quotes)", query
        extra = assert_error(await api("POST", "/servers", OPS, json={
            "name": "t3", "confg": {}}), 422, "validation_error")
        assert extra["message"] == ("invalid body: config is required; confg is not accepted "
                                    "(did you mean 'config'?)"), extra
        # An empty name or pattern: the house words, not pydantic's ("name String should
        # have at least 1 character").
        empty = assert_error(await api("POST", "/servers", OPS, json={
            "name": "", "config": demo("clock")}), 422, "validation_error")
        assert empty["message"] == "invalid body: name must not be empty", empty
        blank = assert_error(await api("POST", "/debug/call-tool", OPS, json={
            "server": "", "tool": "now"}), 422, "validation_error")
        assert blank["message"] == "invalid body: server must not be empty", blank
        # A body over 1 MiB: a code the README lists, and what to send instead.
        huge = assert_error(await api("POST", "/servers", OPS, json={
            "name": "t4", "config": {"description": "x" * (1 << 20)}}), 413,
            "body_too_large")
        assert huge["message"] == (
            "the request body is over 1 MiB (1048576 bytes), which no operation needs: send "
            "a JSON object with this operation's fields (name, config), without bulk data")
        readme = (Path(__file__).parents[1] / "README.md").read_text()
        assert "`body_too_large` 413" in readme
        for error in (typo, again, bad_update, query, extra, empty, blank, huge):
            assert "gateway_" not in error["message"]
            assert not any(word in error["message"] for word in PYDANTIC)


async def test_settings_given_beside_their_object_argument_are_said_to_go_inside_it(
        tmp_path: Path) -> None:
    """Models often call gateway_add_server flat: {"name", "command", "args"}.  That read
    "'config' is required; 'command' is not accepted; accepted: name, config; 'args' is
    not accepted; accepted: name, config" (the list once per name, and never that the
    settings go inside 'config')."""
    gateway = make_gateway({}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        text = await _error(client, "gateway_add_server", {
            "name": "x", "command": "npx", "args": ["-y", "pkg"], "env": {"KEY": "s3cret"}})
        assert text == (
            "invalid arguments for 'gateway_add_server': 'command', 'args' and 'env' are "
            "server settings, which go inside 'config', not beside it: {\"name\": \"…\", "
            "\"config\": {\"command\": \"…\", \"args\": […], \"env\": {…}}}; its arguments: "
            "name, config"), text
        # One of them beside a 'config' given: moved into it, after what it holds.
        text = await _error(client, "gateway_update_server", {
            "name": "x", "config": {"command": "npx"}, "args": ["pkg"]})
        assert ("'args' is a server setting, which goes inside 'config', not beside it: "
                "{\"name\": \"…\", \"config\": {\"command\": \"…\", \"args\": […]}}") in text
        # Unknown names that are no setting: together, the accepted names once.
        text = await _error(client, "gateway_add_server", {
            "name": "x", "command": "npx", "bogus": 1, "zzz": 2})
        assert text.endswith("; 'bogus' and 'zzz' are not accepted; accepted: name, config")
        assert text.count("accepted: name, config") == 1, text
        # The other object arguments: an alert rule's fields, an upstream tool's arguments
        # (a typo of the tool's own argument stays one).
        text = await _error(client, "gateway_update_alert_rule", {
            "name": "slow", "metric": "p95_ms", "threshold": 500})
        assert ("'metric' and 'threshold' are fields of the alert rule, which go inside "
                "'rule', not beside it: {\"name\": \"…\", \"rule\": {\"metric\": \"…\", "
                "\"threshold\": …}}") in text, text
        text = await _error(client, "gateway_inspect_call_tool", {
            "name": "s", "tool": "t", "query": "x", "replca": 1})
        assert ("'query' is an argument for the upstream tool or prompt, which goes inside "
                "'arguments', not beside it: {\"name\": \"…\", \"tool\": \"…\", "
                "\"arguments\": {\"query\": \"…\"}}; 'replca' is not accepted (did you mean "
                "'replica'?)") in text, text
        # 'rule' of gateway_alert_history is a rule's name (a string): nothing goes in it.
        text = await _error(client, "gateway_alert_history", {"metric": "p95_ms"})
        assert text.startswith("invalid arguments for 'gateway_alert_history': 'metric' is "
                               "not accepted; accepted: "), text


async def test_rest_bodies_with_config_fields_beside_config_are_said_so(
        tmp_path: Path) -> None:
    async with serving(tmp_path, {"clock": demo("clock")}) as (api, _base):
        flat = assert_error(await api("POST", "/servers", OPS, json={
            "name": "t2", "command": "npx", "args": ["-y", "pkg"]}), 422, "validation_error")
        assert flat["message"] == (
            "invalid body: command and args are server settings, which go inside config, "
            "not beside it: {\"name\": \"…\", \"config\": {\"command\": \"…\", "
            "\"args\": […]}}"), flat
        assert {f["field"]: f["message"] for f in flat["details"]["fields"]}["args"] == (
            "is a server setting: it goes inside 'config'")
        put = assert_error(await api("PUT", "/servers/clock", OPS, json={
            "url": "http://127.0.0.1:9/mcp"}), 422, "validation_error")
        assert put["message"] == (
            "invalid body: url is a server setting, which goes inside config, not beside "
            "it: {\"config\": {\"url\": \"…\"}}"), put
        call = assert_error(await api("POST", "/debug/call-tool", OPS, json={
            "server": "clock", "tool": "now", "tz": "UTC"}), 422, "validation_error")
        assert call["message"] == (
            "invalid body: tz is an argument for the upstream tool or prompt, which goes "
            "inside arguments, not beside it: {\"server\": \"…\", \"tool\": \"…\", "
            "\"arguments\": {\"tz\": \"…\"}}"), call
        for error in (flat, put, call):
            assert not any(word in error["message"] for word in PYDANTIC)


async def test_an_object_sent_as_json_text_is_said_so(tmp_path: Path) -> None:
    """Models often send an object argument as a string holding its JSON (trial8:
    gateway_inspect_call_tool's 'arguments', gateway_add_server's 'config'): "must be a
    mapping of settings" did not say what was wrong with what was sent."""
    gateway = make_gateway({}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        for tool, arguments, field in [
            ("gateway_inspect_call_tool", {"name": "s", "tool": "t",
                                           "arguments": '{"timezone": "UTC"}'}, "arguments"),
            ("gateway_add_server", {"name": "x", "config": '{"command": "npx"}'}, "config"),
        ]:
            text = await _error(client, tool, arguments)
            assert (f"'{field}' must be a mapping of settings (key: value); it came as "
                    "text: send the object itself, not a string holding its JSON") in text, text
