"""Curation (tools/resources/prompts rules): one result for listing and for every call path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.config.loader import parse_config_text, parse_registration
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.routing.curation import curate
from fast_mcp_gateway.upstream.model import Catalog
from tests.fixtures import alpha_server, make_gateway, memory_entry
from tests.test_lane import lane_id, raw_host, write_config

pytestmark = pytest.mark.anyio


def _server(**rules: Any) -> Any:
    config = parse_config_text("servers: {gh: {command: x}}", source="t").servers["gh"]
    return config.model_copy(update={k: type(getattr(config, k)).model_validate(v)
                                     for k, v in rules.items()})


def _tool(name: str, **extra: Any) -> types.Tool:
    return types.Tool(name=name, input_schema={"type": "object"}, **extra)


CATALOG = Catalog(tools=[_tool(n) for n in ("issue_get", "issue_delete_all", "pr_list", "misc")],
                  resources=[types.Resource(name="s", uri="file:///secrets/a"),
                             types.Resource(name="d", uri="file:///docs/a")],
                  templates=[types.ResourceTemplate(name="t", uri_template="file:///secrets/{p}")])


@pytest.mark.parametrize(("rules", "visible", "hidden"), [
    ({}, ["issue_get", "issue_delete_all", "pr_list", "misc"], []),
    ({"tools": {"include": ["issue_*", "pr_*"]}},
     ["issue_get", "issue_delete_all", "pr_list"], [("misc", "tools.include")]),
    ({"tools": {"include": ["issue_*"], "exclude": ["*_delete_*"]}},
     ["issue_get"], [("issue_delete_all", "tools.exclude"), ("pr_list", "tools.include"),
                     ("misc", "tools.include")]),
    ({"tools": {"exclude": ["*"]}}, [],
     [(n, "tools.exclude") for n in ("issue_get", "issue_delete_all", "pr_list", "misc")]),
])
def test_include_then_exclude_on_original_names(rules: dict[str, Any], visible: list[str],
                                                hidden: list[tuple[str, str]]) -> None:
    result = curate(_server(**rules), CATALOG)
    assert [e.name for e in result.tools] == visible
    assert sorted((h.original, h.rule) for h in result.hidden if h.kind == "tool") \
        == sorted(hidden)


def test_resource_globs_apply_to_uris_and_templates() -> None:
    result = curate(_server(resources={"exclude": ["file:///secrets/*"]}), CATALOG)
    assert [e.original for e in result.resources] == ["file:///docs/a"]
    assert result.templates == []
    assert {(h.kind, h.original) for h in result.hidden} == {
        ("resource", "file:///secrets/a"), ("resource_template", "file:///secrets/{p}")}


def test_renames_overrides_and_rules_that_did_nothing() -> None:
    result = curate(_server(tools={
        "exclude": ["misc"],
        "rename": {"issue_get": "get_issue", "pr_list": "issue_delete_all", "misc": "m",
                   "nope": "x"},
        "override": {"issue_get": {"description": "Host view", "annotations": {
            "destructiveHint": False}}, "ghost": {"title": "t"}},
    }), CATALOG)
    assert [(e.name, e.original) for e in result.tools] == [
        ("get_issue", "issue_get"), ("issue_delete_all", "issue_delete_all"),
        ("pr_list", "pr_list")]
    assert result.tools[0].item.description == "Host view"
    assert result.tools[0].item.annotations is not None
    assert result.tools[0].item.annotations.destructive_hint is False
    assert CATALOG.tools[0].description is None  # the upstream's own is untouched
    assert result.overridden == [("issue_get", ("description", "annotations"))]
    assert result.renamed == [("tool", "issue_get", "get_issue")]
    assert sorted(result.problems) == sorted([
        "tools.rename: 'misc' is hidden, not renamed",
        "tools.rename: no tool 'nope' on this server",
        "tools.rename: 'pr_list' -> 'issue_delete_all' skipped: the server already has a "
        "tool 'issue_delete_all'",
        "tools.override: no tool 'ghost' on this server",
    ])


@pytest.mark.parametrize(("yaml", "field", "message"), [
    ("tools: {rename: {a: 'bad name'}}", "tools.rename", "is not a valid name"),
    ("tools: {rename: {a: x, b: x}}", "tools.rename", "rename collision: 'a' and 'b'"),
    ("tools: {override: {a: {descripton: x}}}", "tools.override.a.descripton",
     "did you mean 'description'"),
    ("tools: {override: {a: {annotations: {readOnly: true}}}}",
     "tools.override.a.annotations", "unknown annotation 'readOnly'"),
    ("tools: {include: issue_*}", "tools.include", "must be a list"),
    ("resources: {rename: {a: b}}", "resources.rename", "unknown field"),
    ("prompts: {exclud: [x]}", "prompts.exclud", "did you mean 'exclude'"),
])
def test_bad_rules_are_located_errors(yaml: str, field: str, message: str) -> None:
    text = f"servers:\n  gh:\n    command: x\n    {yaml}\n"
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="servers.yaml")
    (issue,) = info.value.issues
    assert (issue.server, issue.field) == ("gh", field)
    assert message in issue.message
    # Runtime registrations go through the same schema.
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_registration("gh", {"command": "x", **_yaml_rules(yaml)}, source="admin")


def _yaml_rules(text: str) -> dict[str, Any]:
    import yaml as pyyaml

    return dict(pyyaml.safe_load(text))


def test_bad_exposure_options_are_located() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text("gateway: {exposure: serch, search: {pinned: [a, a]}}\n", source="s")
    fields = {i.field for i in info.value.issues}
    assert fields == {"gateway.exposure", "gateway.search"}


CURATED = {
    "tools": {"exclude": ["wipe", "slow"], "rename": {"add": "plus"},
              "override": {"fail": {"description": "Host sees this",
                                    "annotations": {"readOnlyHint": True}}}},
    "resources": {"exclude": ["data://config", "data://items/{item_id}"]},
    "prompts": {"exclude": ["greet"]},
}


async def test_listing_and_calling_agree_in_process(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha", **CURATED)},
                           {"alpha": alpha_server()}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        tools = {t.name: t for t in await client.list_tools()}
        assert "alpha_wipe" not in tools and "alpha_add" not in tools
        assert tools["alpha_plus"].title == "Add numbers"
        assert tools["alpha_fail"].description == "Host sees this"
        assert tools["alpha_fail"].annotations.read_only_hint is True
        assert (await client.call_tool("alpha_plus", {"a": 2, "b": 3})).data == 5
        for name in ("alpha_wipe", "alpha:wipe"):
            with pytest.raises(ToolError, match=re.escape(
                    "tool 'wipe' of server 'alpha' is hidden by its 'tools.exclude' rule")):
                await client.call_tool(name, {})
        assert "data://alpha/config" not in {str(r.uri) for r in await client.list_resources()}
        with pytest.raises(MCPError, match=re.escape(
                "resource 'data://config' of server 'alpha' is hidden by its "
                "'resources.exclude' rule")):
            await client.read_resource("data://alpha/config")
        assert await client.list_resource_templates() == []
        with pytest.raises(MCPError, match=re.escape(
                "resource template 'data://items/{item_id}' of server 'alpha' is hidden")):
            await client.read_resource("data://alpha/items/7")
        assert await client.list_prompts() == []
        with pytest.raises(MCPError, match="prompt 'greet' of server 'alpha' is hidden"):
            await client.get_prompt("alpha_greet", {"name": "x"})
        detail = (await client.call_tool("gateway_server_detail",
                                         {"name": "alpha"})).structured_content
        calls = (await client.call_tool("gateway_calls", {"status": "rejected"})
                 ).structured_content["calls"]
    curation = detail["curation"]
    assert {(h["kind"], h["original"], h["rule"]) for h in curation["hidden"]} == {
        ("tool", "wipe", "tools.exclude"), ("tool", "slow", "tools.exclude"),
        ("resource", "data://config", "resources.exclude"),
        ("resource_template", "data://items/{item_id}", "resources.exclude"),
        ("prompt", "greet", "prompts.exclude")}
    assert [(r["exposed"], r["original"]) for r in curation["renamed"]] == [
        ("alpha_plus", "add")]
    assert curation["overridden"] == {"fail": ["description", "annotations"]}
    # Refusals by name go through the pipeline: recorded, with the upstream's own names.
    assert {(c["exposed"], c["original"]) for c in calls} >= {
        ("alpha_wipe", "wipe"), ("data://alpha/config", "data://config")}


async def test_overrides_never_reach_the_gateways_own_decisions() -> None:
    # 'fail' claims readOnlyHint to the host; the gateway still treats it as the upstream
    # says (not idempotent: never retried).
    gateway = make_gateway({"alpha": memory_entry("alpha", **CURATED)},
                           {"alpha": alpha_server()})
    async with Client(gateway.server):
        lane_tool = gateway.provider.lane_tool("alpha_fail")
        assert lane_tool is not None and lane_tool.annotations is None


LANE_RULES = {"tools": {"exclude": ["refuse"], "rename": {"echo": "say"},
                        "override": {"profile": {"description": "Host-only words"}}}}


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_rules_hold_on_the_lane_and_the_full_path_alike(tmp_path: Path,
                                                              era: str) -> None:
    config = write_config(tmp_path, **LANE_RULES)
    answers: dict[bool, list[Any]] = {}
    for lane in (True, False):
        async with raw_host(config, era, lane=lane) as host:
            assert lane_id(await host.call("up_whoami")).startswith("gw-") is lane
            tools = {t["name"]: t for t in
                     (await host.request("tools/list"))["result"]["tools"]}
            answers[lane] = [
                sorted(tools), tools["up_profile"]["description"],
                await host.call("up_say", {"text": "ab", "times": 2}),
                await host.call("up_refuse", {"reason": "x"}),
                # The reply, not its id (the start-up polls send a varying number).
                (await host.request("tools/call", {"name": "up_echo", "arguments": {}}))
                .get("result"),
            ]
    assert answers[True] == answers[False]
    names, description, said, refused, old_name = answers[True]
    assert "up_refuse" not in names and "up_echo" not in names and "up_say" in names
    assert description == "Host-only words"
    assert said["content"] == [{"type": "text", "text": "abab"}]  # upstream got 'echo'
    assert refused["isError"] is True
    assert refused["content"][0]["text"] == ("tool 'refuse' of server 'up' is hidden by its "
                                             "'tools.exclude' rule")
    assert "up_echo" in str(old_name)  # the pre-rename name is simply unknown
