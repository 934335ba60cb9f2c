"""A tool, prompt or resource the gateway does not expose: the host is told what is wrong
and how to fix it -- the exposed name it probably meant (an upstream's own name, a URI
without the server's namespace), else how names are formed here, which servers exist
and which list shows them -- on both protocol eras, alike for the three kinds.  Only
servers the caller may use are named (tests/test_mcp_auth.py: a restricted token)."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from tests.fixtures import alpha_server, make_gateway, memory_entry, stdio_entry, until

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto"]  # a handshake-era host, a 2026-07-28 host


def _gateway() -> Any:
    return make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})


async def _tool_error(client: Client, name: str) -> str:
    result = await client.call_tool_mcp(name, {})
    assert result.is_error
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_tool_names_what_was_meant_or_how_names_are_formed(mode: str) -> None:
    async with Client(_gateway().server, mode=mode) as client:
        bare = await _tool_error(client, "add")  # the upstream's own name
        assert bare.startswith("Unknown tool: 'add'; did you mean 'alpha_add'?"), bare
        assert "tools/list" in bare
        other = await _tool_error(client, "nope")
        assert other.startswith("Unknown tool: 'nope'"), other
        assert "<namespace>_<name>" in other and "servers: alpha" in other, other
        assert "tools/list" in other


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_prompt_says_the_same(mode: str) -> None:
    async with Client(_gateway().server, mode=mode) as client:
        with pytest.raises(MCPError) as bare:
            await client.get_prompt("greet", {"name": "x"})
        assert bare.value.error.code == types.INVALID_PARAMS
        assert str(bare.value).startswith("Unknown prompt: 'greet'; did you mean "
                                          "'alpha_greet'?"), bare.value
        with pytest.raises(MCPError) as other:
            await client.get_prompt("nope")
        assert "servers: alpha" in str(other.value) and "prompts/list" in str(other.value)


@pytest.mark.parametrize("mode", MODES)
async def test_a_resource_uri_without_its_servers_namespace_says_how_to_fix_it(
        mode: str) -> None:
    """(A URI in a server's namespace is that server's to answer: links.py.)"""
    async with Client(_gateway().server, mode=mode) as client:
        cases = {
            "bin://blob": "did you mean 'bin://alpha/blob'?",       # a resource's own URI
            "data://items/7": "did you mean 'data://alpha/items/7'?",  # a template's
            "bin://zeta/blob": "scheme://<namespace>/<path> (servers: alpha)",
            "memo:x": "scheme://<namespace>/<path> (servers: alpha)",
        }
        for uri, hint in cases.items():
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            message = str(refused.value)
            assert message.startswith(f"Unknown resource: '{uri}'"), message
            assert hint in message and "resources/list" in message, message
            assert refused.value.error.code == types.INVALID_PARAMS
            assert refused.value.error.data == {"uri": uri}


@pytest.mark.parametrize("mode", MODES)
async def test_a_right_namespace_with_a_wrong_name_lists_that_servers_tools(mode: str) -> None:
    """'alpha_nope' carries alpha's namespace: the answer said that names carry their
    server's namespace (they do), leaving the host to guess what was wrong; it names the
    server that has no such tool and what it does have (close matches first)."""
    async with Client(_gateway().server, mode=mode) as client:
        text = await _tool_error(client, "alpha_ad")
        assert text.startswith("Unknown tool: 'alpha_ad': server 'alpha' has no tool 'ad'; "
                               "did you mean 'alpha_add'? Its tools: alpha_add"), text
        assert "carry their server's namespace" not in text and "tools/list" in text
        # Nothing close: the sentence goes on after the semicolon.
        text = await _tool_error(client, "alpha_zzzzzz")
        assert text.startswith("Unknown tool: 'alpha_zzzzzz': server 'alpha' has no tool "
                               "'zzzzzz'; its tools: alpha_add"), text


@pytest.mark.parametrize("mode", MODES)
async def test_an_admins_mistyped_gateway_tool_names_the_one_meant(mode: str) -> None:
    """'gateway_audit_log' was told that names carry a server's namespace and which
    servers there are: nothing about the gateway's own tools, the one meant among them."""
    async with Client(_gateway().server, mode=mode) as client:
        text = await _tool_error(client, "gateway_audit_log")
        assert text == ("Unknown tool: 'gateway_audit_log'; did you mean 'gateway_audit'? "
                        "(the gateway's own tools; tools/list lists them)"), text
        text = await _tool_error(client, "gateway_list_server")
        assert text.startswith("Unknown tool: 'gateway_list_server'; did you mean "
                               "'gateway_list_servers'"), text


async def test_a_mistyped_gateway_tool_is_not_suggested_to_a_caller_without_admin() -> None:
    from tests.fixtures import serve_http

    token = "mgw_unknown-names-tools-only-4e1c"
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           options={"auth": {"tokens": [{"name": "t", "token": token,
                                                         "scopes": ["tools"]}]}})
    async with serve_http(gateway.http_app()) as base, Client(f"{base}/mcp",
                                                              auth=token) as client:
        text = await _tool_error(client, "gateway_audit_log")
        assert "gateway_audit'" not in text and "own tools" not in text, text
        assert "tool names here carry their server's namespace" in text, text


@pytest.mark.parametrize("mode", MODES)
async def test_a_name_of_a_server_that_is_down_says_why_it_offers_nothing(mode: str) -> None:
    """A disabled server, or one whose command is missing, offers no tools: a host calling
    one of its names (from the server's docs, a previous config) was told only "server
    'x' has no tool 'y', and no tools now", nothing of the state nor the fix.  One that
    is reconnecting or failed says why (its last error, as a call sent to it would):
    "(gateway_list_servers says why)" left a host with the admin tools off no way to
    learn that mcp-server-git's --repository was not a git repository."""
    gateway = make_gateway({"alpha": memory_entry("alpha"),
                            "off": {**memory_entry("off"), "enabled": False},
                            "gone": {"command": "no-such-mcp-server-x2"}},
                           {"alpha": alpha_server()})
    async with Client(gateway.server, mode=mode) as client:
        disabled = await _tool_error(client, "off_search")
        assert disabled.startswith("Unknown tool: 'off_search': server 'off' has no tool "
                                   "'search', and no tools now: it is disabled "
                                   "(gateway_enable_server turns it back on)"), disabled
        down = await _tool_error(client, "gone_search")
        assert "server 'gone' has no tool 'search', and no tools now: it " in down, down
        # Reconnecting, or already failed (3 failures within 30 s: a loaded machine
        # gets there before the call): either state says why, in the same words.
        why = "command not found: no-such-mcp-server-x2 is in no folder of the PATH"
        assert f"it is reconnecting ({why}" in down or f"it has failed: {why}" in down, down


@pytest.mark.parametrize("mode", MODES)
async def test_a_name_under_an_old_namespace_names_the_tool_under_its_new_one(mode: str) -> None:
    """A server renamed in servers.yaml (``clock`` -> ``timer``): a host calling the old
    ``clock_now`` was told how names are formed, not that ``timer_now`` is that tool."""
    async with Client(_gateway().server, mode=mode) as client:
        moved = await _tool_error(client, "old_name_add")
        assert moved.startswith("Unknown tool: 'old_name_add'; did you mean 'alpha_add'? (the "
                                "same tool name under its server's namespace"), moved
        with pytest.raises(MCPError) as prompt:
            await client.get_prompt("calc_greet", {"name": "x"})
        assert "did you mean 'alpha_greet'?" in str(prompt.value), prompt.value


@pytest.mark.parametrize("mode", MODES)
async def test_a_servers_tools_named_in_an_answer_are_the_ones_it_exposes(mode: str) -> None:
    """A tool that runs only as a task, on a handshake-era session to its server, is
    not exposed (tools/list lacks it; a call is refused saying why): the answer to a
    wrong name of that server offered it among "its tools" all the same (seen with
    server-everything's simulate-research-query)."""
    gateway = make_gateway({"fid": stdio_entry("fidelity.py")})
    async with Client(gateway.server, mode=mode) as client:
        await until(lambda: gateway.manager.get("fid").state.value == "ready")
        assert "fid_task_only" not in {t.name for t in await client.list_tools()}
        text = await _tool_error(client, "fid_nope")
        assert text.startswith("Unknown tool: 'fid_nope': server 'fid' has no tool 'nope'; "
                               "its tools: fid_link, fid_needs_url, fid_plain, fid_titled;"), text
