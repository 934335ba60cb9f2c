"""Profiles (virtual servers): /mcp/p/<name> in HTTP mode with per-token access on top,
``serve --profile`` in stdio mode on both call paths, and clear errors for unknown ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.config.loader import parse_config_text
from fast_mcp_gateway.errors import ConfigError
from tests.fixtures import PY, SERVERS, alpha_server, beta_server, memory_entry
from tests.test_lane import raw_host
from tests.test_mcp_auth import ALICE, OPS, TOKENS, ready, serving

pytestmark = pytest.mark.anyio

PROFILES = {
    "coding": {"servers": ["notes", "alpha"], "tools": {"exclude": ["alpha_wipe"]}},
    "finder": {"exposure": "search"},
}
AUTH_TOKENS = [*TOKENS[:1], {**TOKENS[1], "servers": ["notes", "beta"]}]   # alice: notes, beta


def _gateway(base: str, profiles: dict[str, Any] = PROFILES) -> Any:
    from tests.fixtures import make_gateway

    return make_gateway(
        {"alpha": memory_entry("alpha"), "beta": memory_entry("beta"),
         "notes": memory_entry("notes")},
        {"alpha": alpha_server(), "beta": beta_server(), "notes": beta_server()},
        options={"profiles": profiles, "auth": {"tokens": AUTH_TOKENS}}, public_url=base)


async def _names(client: Client) -> set[str]:
    return {t.name for t in await client.list_tools()}


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_profiles_over_http_with_token_access_on_top(mode: str) -> None:
    async with serving(_gateway) as (gateway, base), httpx2.AsyncClient(timeout=30) as http:
        await ready(gateway, "alpha", "beta", "notes")
        async with Client(f"{base}/mcp", auth=OPS, mode=mode) as everything:
            every = await _names(everything)
        async with Client(f"{base}/mcp/p/coding", auth=OPS, mode=mode) as coding:
            names = await _names(coding)
            upstream = {n for n in names if not n.startswith("gateway_")}
            assert upstream == {n for n in every if n.startswith(("alpha_", "notes_"))
                                and n != "alpha_wipe"}
            assert (await coding.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
            for outside in ("alpha_wipe", "beta_add"):
                with pytest.raises(ToolError, match=f"Unknown tool: '{outside}'"):
                    await coding.call_tool(outside, {"a": 1, "b": 2})
            # A tool the profile leaves out is said to be so, and where it is: it read
            # "server 'alpha' has no tool 'wipe'" (tests/test_profile_refusals.py).
            hidden = await coding.call_tool("alpha_wipe", {}, raise_on_error=False)
            text = str(hidden.content[0].text)  # type: ignore[union-attr]
            assert "tool 'wipe' of server 'alpha' is not in this profile" in text, text
            assert text.count("alpha_wipe") == 1, text  # in "Unknown tool: ..." only
            # The names it offers for a wrong one are the profile's (test_unknown_names).
            wrong = await coding.call_tool("alpha_wipes", {}, raise_on_error=False)
            text = str(wrong.content[0].text)  # type: ignore[union-attr]
            assert "server 'alpha' has no tool 'wipes'" in text and "alpha_add" in text, text
            assert "alpha_wipe'" not in text, text
            assert {p.name for p in await coding.list_prompts()} == {"alpha_greet",
                                                                     "notes_greet"}
        # alice may use notes and beta: the profile narrows that to notes.
        async with Client(f"{base}/mcp/p/coding", auth=ALICE, mode=mode) as alice:
            assert {n for n in await _names(alice)} == {
                n for n in every if n.startswith("notes_")}
            with pytest.raises(ToolError, match="Unknown tool: 'alpha_add'"):
                await alice.call_tool("alpha_add", {"a": 1, "b": 2})
        async with Client(f"{base}/mcp/p/finder", auth=OPS, mode=mode) as finder:
            names = await _names(finder)
            assert {"search_tools", "call_tool", "call_tools"} <= names
            assert not any(n.startswith(("alpha_", "beta_")) for n in names)
            found = (await finder.call_tool("search_tools", {"query": "add numbers"})
                     ).structured_content["tools"]
            assert "alpha_add" in {c["name"] for c in found}
        refused = await http.post(f"{base}/mcp/p/nope", json={"jsonrpc": "2.0", "id": 1,
                                                              "method": "ping"},
                                  headers={"Authorization": f"Bearer {OPS}",
                                           "Accept": "application/json, text/event-stream"})
        assert refused.status_code == 404
        assert refused.json()["error"]["message"] == (
            "unknown profile 'nope'; known profiles: coding, finder (gateway.profiles in "
            "servers.yaml as this gateway started with it: a profile added since is served "
            "after a restart)")
        # A token is still needed on a profile's endpoint.
        anonymous = await http.post(f"{base}/mcp/p/coding", json={"jsonrpc": "2.0", "id": 1,
                                                                  "method": "ping"},
                                    headers={"Accept": "application/json, text/event-stream"})
        assert anonymous.status_code == 401


async def test_profile_names_are_not_told_to_a_caller_without_a_token() -> None:
    """``/mcp/p/<unknown>`` answered its 404 (listing every profile) before the token
    check: anyone could list the profile names.  Without a valid token, every
    /mcp/p/... path answers /mcp's 401, before any profile lookup."""
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    async with serving(_gateway) as (_, base), httpx2.AsyncClient(timeout=30) as http:
        bare = await http.post(f"{base}/mcp", json=ping, headers=accept)
        assert bare.status_code == 401
        for header in ({}, {"Authorization": "Bearer mgw_not-a-token"}):
            plain = await http.post(f"{base}/mcp", json=ping, headers={**accept, **header})
            for path in ("/mcp/p/nope", "/mcp/p/coding", "/mcp/p/", "/mcp/p/a/b"):
                refused = await http.post(base + path, json=ping, headers={**accept, **header})
                assert refused.status_code == 401, (path, refused.text)
                assert refused.text == plain.text and "coding" not in refused.text
                assert refused.headers["www-authenticate"] == plain.headers["www-authenticate"]


async def test_an_unknown_profiles_404_names_only_the_profiles_the_token_may_see() -> None:
    """The 404 of /mcp/p/<unknown> listed every profile to any valid token: alice, limited
    to notes and beta, was told of 'alphas' (alpha's servers only).  Now a profile is
    named only to a token that may use one of its servers (any, for one without a
    ``servers`` list), and one it may not see is unknown to it, as a server would be."""
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    profiles = {**PROFILES, "alphas": {"servers": ["alpha"]}}

    def gateway_for(base: str) -> Any:
        return _gateway(base, profiles)

    async with serving(gateway_for) as (_, base), httpx2.AsyncClient(timeout=30) as http:

        async def refusal(path: str, token: str) -> str:
            got = await http.post(base + path, json=ping, headers={
                **accept, "Authorization": f"Bearer {token}"})
            assert got.status_code == 404, got.text
            return str(got.json()["error"]["message"])

        assert await refusal("/mcp/p/nope", OPS) == (
            "unknown profile 'nope'; known profiles: alphas, coding, finder "
            "(gateway.profiles in servers.yaml as this gateway started with it: a profile "
            "added since is served after a restart)")
        for path in ("/mcp/p/nope", "/mcp/p/alphas"):
            told = await refusal(path, ALICE)
            assert "alphas" not in told.split(";", 1)[1], told
            assert "known profiles: coding, finder" in told, told
        async with Client(f"{base}/mcp/p/coding", auth=ALICE) as alice:  # notes: hers
            assert {n for n in await _names(alice)} and all(
                n.startswith("notes_") for n in await _names(alice))


def _stdio_config(tmp_path: Path) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(
        "gateway:\n  profiles:\n"
        "    lean: {tools: {include: ['up_echo', 'up_whoami', 'up_refuse']}}\n"
        "    other: {servers: [nobody]}\n"
        "servers:\n  up:\n"
        f"    command: {json.dumps(PY)}\n"
        f"    args: [{json.dumps(str(SERVERS / 'lane.py'))}]\n"
        f"    env: {{LANE_MARKS: {json.dumps(str(tmp_path))}}}\n")
    return path


async def test_serve_profile_in_stdio_on_both_paths(tmp_path: Path) -> None:
    config = _stdio_config(tmp_path)
    answers: dict[bool, list[Any]] = {}
    for lane in (True, False):
        async with raw_host(config, "legacy", lane=lane, command=[
                PY, "-m", "fast_mcp_gateway", "serve", "--profile", "lean", "--log-level",
                "WARNING", "--config"]) as host:
            tools = {t["name"] for t in (await host.request("tools/list"))["result"]["tools"]}
            answers[lane] = [
                sorted(n for n in tools if n.startswith("up_")),
                await host.call("up_echo", {"text": "hi"}),
                await host.call("up_profile", {"name": "x"}),
                (await host.call("up_whoami"))["structuredContent"]["result"].startswith(
                    "gw-"),
            ]
    assert answers[True][:3] == answers[False][:3]
    assert answers[True][3] is True and answers[False][3] is False   # the lane still serves
    names, echoed, outside, _ = answers[True]
    assert names == ["up_echo", "up_refuse", "up_whoami"]
    assert echoed["content"] == [{"type": "text", "text": "hi"}]
    assert outside["isError"] is True
    assert outside["content"][0]["text"] == (
        "Unknown tool: 'up_profile': tool 'profile' of server 'up' is not in this profile: "
        "this gateway serves profile 'lean' (serve --profile lean), which leaves it out; "
        "serve without --profile has it")


async def test_an_unknown_profile_is_a_clear_error(tmp_path: Path) -> None:
    import anyio

    result = await anyio.run_process(
        [PY, "-m", "fast_mcp_gateway", "serve", "--config", str(_stdio_config(tmp_path)),
         "--profile", "nope"], check=False)
    assert result.returncode == 2
    assert ("unknown profile 'nope'; known profiles: lean, other (gateway.profiles in "
            "servers.yaml)") in result.stderr.decode()


@pytest.mark.parametrize(("yaml", "message"), [
    ("profiles: {'a b': {}}", "profile name 'a b' must be 1-64 letters"),
    ("profiles: {x: {exposure: some}}", "'all', 'search' or 'auto'"),
    ("profiles: {x: {tools: {exclude: x}}}", "must be a list"),
    ("profiles: {x: {servrs: [a]}}", "servrs"),
])
def test_bad_profiles_are_refused_at_load(yaml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config_text(f"gateway:\n  {yaml}\n", source="s")


async def test_a_reload_that_changes_the_profiles_serves_the_started_ones(
        tmp_path: Path) -> None:
    # The catalog keeps the profiles it started with until a restart; the endpoint's
    # path check follows it (it followed the reloaded file: a profile the file added
    # passed the check and was served nothing, one it dropped was refused while served).
    from tests.fixtures import make_gateway

    config = tmp_path / "servers.yaml"
    entries = {"alpha": memory_entry("alpha"), "notes": memory_entry("notes")}

    def write(profiles: dict[str, Any]) -> None:
        config.write_text(json.dumps({"gateway": {"profiles": profiles}, "servers": entries}))

    write(PROFILES)

    def gateway_for(base: str) -> Any:
        return make_gateway(entries, {"alpha": alpha_server(), "notes": beta_server()},
                            options={"profiles": PROFILES}, config=config, public_url=base)

    async with serving(gateway_for) as (gateway, base):
        await ready(gateway, "alpha", "notes")
        write({"added": {"servers": ["notes"]}})
        report = await gateway.control.reload_config()
        assert report.error is None and report.restart_needed == ["gateway.profiles"]
        async with Client(f"{base}/mcp/p/coding") as coding:
            assert (await coding.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        async with httpx2.AsyncClient(timeout=30) as http:
            refused = await http.post(
                f"{base}/mcp/p/added", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={"Accept": "application/json, text/event-stream"})
        assert refused.status_code == 404
        # Said so: the file names 'added', and a 404 that only listed the started ones
        # read as a typo to an operator who had just added it.
        assert refused.json()["error"]["message"] == (
            "unknown profile 'added'; known profiles: coding, finder (gateway.profiles in "
            "servers.yaml as this gateway started with it: a profile added since is served "
            "after a restart)")
