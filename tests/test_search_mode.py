"""Exposure modes: search meta-tools in front of the catalog, the same pipeline behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.routing.search import SearchDoc, SearchIndex, first_sentence, tokenize
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry
from tests.test_lane import raw_host, write_config

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("text", "terms"), [
    ("getIssueComments", ["get", "issue", "comment"]),
    ("list_pull-requests", ["list", "pull", "request"]),
    ("Remove the files from a folder", ["delete", "file", "dir"]),
    ("HTTPServer branches", ["http", "server", "branch"]),
])
def test_tokenize_splits_names_and_folds_words(text: str, terms: list[str]) -> None:
    assert tokenize(text) == terms


def _doc(name: str, description: str, server: str = "s", **params: str) -> SearchDoc:
    return SearchDoc(name, server, None, description, {"type": "object", "properties": {
        p: {"type": "string", "description": d} for p, d in params.items()}})


DOCS = [
    _doc("github_create_issue", "Create a new issue in a GitHub repository.", "github",
         title="Issue title"),
    _doc("github_list_commits", "List commits of a branch.", "github", sha="branch or SHA"),
    _doc("fs_delete_file", "Delete a file from disk.", "fs", path="file path"),
    _doc("slack_post_message", "Post a message to a Slack channel.", "slack"),
    _doc("jira_create_issue", "Create a Jira issue in a project.", "jira"),
]


@pytest.mark.parametrize(("query", "server", "expected"), [
    ("remove a file", None, ["fs_delete_file"]),
    ("open a new github issue", None, ["github_create_issue", "jira_create_issue"]),
    ("create issue", "jira", ["jira_create_issue"]),
    ("send slack message", None, ["slack_post_message"]),
    ("commits on a branch", None, ["github_list_commits"]),
    ("zzz unrelated", None, []),
])
def test_bm25_ranks_the_expected_tool_first(query: str, server: str | None,
                                            expected: list[str]) -> None:
    hits = SearchIndex(DOCS).search(query, 2, server)
    assert [d.name for d, _ in hits][: len(expected)] == expected
    if not expected:
        assert hits == []


def test_remember_finds_the_memory_servers_tools() -> None:
    # The reference memory server's words (entities, observations, knowledge graph)
    # hold no "remember": the one tool that did was a form filler's "Remember Me".
    docs = [
        _doc("devtools_fill_form", 'Fill out multiple form elements at once. Example: '
             'Fill username, password, and check "Remember Me" in one call.', "devtools"),
        _doc("memory_create_entities", "Create multiple new entities in the knowledge "
             "graph", "memory", entities="The entities to create"),
        _doc("memory_add_observations", "Add new observations to existing entities in "
             "the knowledge graph", "memory", entityName="The name of the entity"),
    ]
    for query in ("remember that my sister is called Anna", "recall what you know "
                  "about Anna", "memorize this"):
        hits = [d.server for d, _ in SearchIndex(docs).search(query, 2)]
        assert hits == ["memory", "memory"], (query, hits)


async def test_a_servers_description_finds_its_tools_below_a_tool_saying_it_itself() -> None:
    """A server's ``description:`` was not searched: "save a note" found none of a
    memory server's tools (their words are entities and observations).  Its terms now
    count ``SERVER_WEIGHT`` each, through the gateway's own index of servers.yaml."""
    servers = {"alpha": {**memory_entry("alpha"),
                         "description": "Notes: save a note, keep what the user said"},
               "beta": memory_entry("beta")}
    gateway = make_gateway(servers, {"alpha": alpha_server(), "beta": beta_server()},
                           options={"exposure": "search"})
    async with Client(gateway.server) as client:
        found = (await client.call_tool("search_tools", {"query": "save a note", "k": 20})
                 ).structured_content["tools"]
    # (The gateway's own tools are found too: this in-process host has scope admin.)
    assert {c["server"] for c in found} - {"gateway"} == {"alpha"}, found
    docs = [SearchDoc("memory_create_entities", "memory", None, "Create multiple new "
                      "entities in the knowledge graph", {},
                      server_description="Remembers notes the user asks to save"),
            SearchDoc("notes_save_note", "notes", None, "Save a note", {})]
    hits = [d.name for d, _ in SearchIndex(docs).search("save a note", 2)]
    assert hits == ["notes_save_note", "memory_create_entities"], hits


def test_a_long_server_description_does_not_bury_its_servers_tools() -> None:
    """A server's description was counted in each of its tools' length: a few lines of
    it (the 4,096 characters a description may have) made every one of its tools "long"
    for BM25, and 'send an email' ranked another server's send_message above the mail
    server's own send_email.  A tool's length is its own words; the description's terms
    still count (``SERVER_WEIGHT``) where they match."""
    notes = ("Operated by the platform team. Runs in the eu-west cluster behind the "
             "corporate proxy; restarts nightly at 02:00 UTC. Contact #platform-oncall for "
             "access, quotas or outages. ") * 23
    assert len(notes) <= 4096
    docs = [SearchDoc("mail_send_email", "mail", None, "Send an email to a recipient.", {},
                      server_description=notes),
            SearchDoc("chat_send_message", "chat", None, "Send a message to a channel.", {})]
    docs += [SearchDoc(f"{w}_{o}", f"s{i}", None, f"{w.title()} the {o}.", {})
             for i, (w, o) in enumerate((w, o) for w in ("list", "read", "create", "get")
                                        for o in ("file", "issue", "page", "event"))]
    hits = [d.name for d, _ in SearchIndex(docs).search("send an email", 2)]
    assert hits == ["mail_send_email", "chat_send_message"], hits
    docs[0] = SearchDoc("mail_send_email", "mail", None, "Send an email to a recipient.", {},
                        server_description=notes + " Email and send.")
    assert [d.name for d, _ in SearchIndex(docs).search("send an email", 1)] == [
        "mail_send_email"]


def test_cards_are_compact_and_complete() -> None:
    card = DOCS[0].card()
    assert card == {"name": "github_create_issue", "server": "github",
                    "description": "Create a new issue in a GitHub repository.",
                    "inputSchema": DOCS[0].input_schema}
    assert first_sentence("One. Two.") == "One."
    assert first_sentence("line one\nLine two") == "line one"


def two(mode: str, db: Path | None = None, **search: Any) -> Any:
    memory = {"alpha": alpha_server(), "beta": beta_server()}
    servers = {"alpha": memory_entry("alpha"), "beta": memory_entry("beta")}
    return make_gateway(servers, memory, options={"exposure": mode, "search": search}, db=db)


async def test_search_mode_lists_meta_tools_and_calls_through_the_pipeline(
        tmp_path: Path) -> None:
    gateway = two("search", tmp_path / "g.db", pinned=["beta_echo"])
    async with Client(gateway.server) as client:
        listed = await client.list_tools()
        names = [t.name for t in listed]
        upstream = [n for n in names if not n.startswith("gateway_")]
        assert upstream == ["search_tools", "call_tool", "call_tools", "beta_echo"]
        definitions = [t.model_dump() for t in listed]
        found = (await client.call_tool("search_tools", {"query": "add two numbers",
                                                         "server": "alpha"})).structured_content
        assert found["tools"][0]["name"] == "alpha_add"
        assert found["tools"][0]["inputSchema"]["required"] == ["a", "b"]
        assert {c["server"] for c in found["tools"]} == {"alpha"}
        result = await client.call_tool("call_tool", {"name": "alpha_add",
                                                      "arguments": {"a": 2, "b": 5}})
        assert result.structured_content == {"result": 7}
        # A name a host remembers still works directly.
        assert (await client.call_tool("alpha_add", {"a": 1, "b": 1})).data == 2
        with pytest.raises(ToolError, match=r"Unknown tool: 'nope'.*search_tools finds them"):
            await client.call_tool("call_tool", {"name": "nope"})
        batch = (await client.call_tool("call_tools", {"calls": [
            {"name": "alpha_add", "arguments": {"a": 1, "b": 2}},
            {"name": "alpha_fail", "arguments": {"message": "boom"}},
            {"name": "beta_echo", "arguments": {"text": "hi"}},
        ]})).structured_content["results"]
        assert [r["isError"] for r in batch] == [False, True, False]
        assert batch[0]["structuredContent"] == {"result": 3}
        assert batch[1]["content"][0]["text"] == "boom"
        # The meta-tools' definitions do not change with the catalog.
        await gateway.manager.remove_server("beta")
        again = [t.model_dump() for t in await client.list_tools()]
        assert again == [d for d in definitions if d["name"] != "beta_echo"]
        calls = (await client.call_tool("gateway_calls", {"limit": 50})).structured_content
    recorded = {(c["exposed"], c["status"]) for c in calls["calls"]}
    assert {("alpha_add", "success"), ("alpha_fail", "error"), ("beta_echo", "success")} \
        <= recorded


async def test_arguments_written_as_json_text_are_refused_saying_so() -> None:
    # A model often writes the arguments object as a JSON string; the refusal said only
    # "must be an object", not what it got nor how to send it.
    async with Client(two("search").server) as client:
        with pytest.raises(ToolError, match=r"got text \(JSON written as a string\?\): "
                                            r"pass the object itself"):
            await client.call_tool("call_tool", {"name": "alpha_add",
                                                 "arguments": '{"a": 1, "b": 2}'})
        batch = (await client.call_tool("call_tools", {"calls": [
            {"name": "alpha_add", "arguments": [1, 2]}]})).structured_content["results"]
        assert "got an array" in batch[0]["error"], batch


async def test_one_server_under_several_names_is_one_card_naming_its_copies() -> None:
    # Two copies of alpha (two accounts, two roots) offer the same 'add': each copy
    # took one of the k places with a full card, and k=2 showed 'add' twice.
    gateway = make_gateway({n: memory_entry(n) for n in ("alpha", "alpha2", "beta")},
                           {"alpha": alpha_server(), "alpha2": alpha_server(),
                            "beta": beta_server()}, options={"exposure": "search"})
    async with Client(gateway.server) as client:
        found = (await client.call_tool("search_tools", {"query": "add two numbers",
                                                         "k": 2})).structured_content
    first, second = found["tools"]
    assert first["name"] == "alpha_add"
    assert first["also_on"] == [{"name": "alpha2_add", "server": "alpha2"}]
    assert second["name"] not in ("alpha_add", "alpha2_add") and "also_on" not in second


@pytest.mark.parametrize(("mode", "threshold", "search"), [
    ("all", 80, False), ("auto", 80, False), ("auto", 3, True), ("search", 80, True)])
async def test_auto_switches_above_the_threshold(mode: str, threshold: int,
                                                 search: bool) -> None:
    gateway = two(mode, auto_threshold_tools=threshold)
    async with Client(gateway.server) as client:
        names = {t.name for t in await client.list_tools()}
    assert ("search_tools" in names) is search
    assert ("alpha_add" in names) is not search


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_search_then_call_from_a_real_host_in_both_eras(tmp_path: Path,
                                                              era: str) -> None:
    config = tmp_path / "servers.yaml"
    base = write_config(tmp_path).read_text()
    config.write_text("gateway:\n  exposure: search\n  search: {pinned: [up_whoami]}\n"
                      + base)
    async with raw_host(config, era) as host:
        tools = [t["name"] for t in (await host.request("tools/list"))["result"]["tools"]]
        assert [n for n in tools if not n.startswith("gateway_")] == [
            "search_tools", "call_tool", "call_tools", "up_whoami"]
        found = await host.call("search_tools", {"query": "echo text", "k": 3})
        cards = json.loads(found["content"][0]["text"])["tools"]
        assert cards[0]["name"] == "up_echo"
        said = await host.call("call_tool", {"name": "up_echo",
                                             "arguments": {"text": "ab", "times": 2}})
        assert said["content"] == [{"type": "text", "text": "abab"}]
        refused = await host.call("call_tool", {"name": "up_echo", "arguments": {}})
        assert refused["isError"] is True


async def test_a_meta_tool_call_with_a_key_it_does_not_take_is_refused(
        tmp_path: Path) -> None:
    """A model wrote 'args' (or 'parameters', 'tool') where call_tool takes 'arguments'
    (trial8): the key was dropped and the tool ran with no arguments at all -- a
    destructive tool whose parameters all have defaults ran as if asked to."""
    gateway = two("search", tmp_path / "g.db")
    async with Client(gateway.server) as client:
        with pytest.raises(ToolError) as refused:
            await client.call_tool("call_tool", {"name": "alpha_wipe", "args": {"x": 1}})
        assert str(refused.value) == (
            "call_tool takes 'name' and 'arguments'; 'args' is not one of them: put the "
            "tool's exposed name in 'name' and its parameters in 'arguments'")
        with pytest.raises(ToolError, match=r"'tool' is not one of them"):
            await client.call_tool("call_tool", {"tool": "alpha_add"})
        batch = (await client.call_tool("call_tools", {"calls": [
            {"name": "alpha_wipe", "parameters": {}},
            {"name": "alpha_add", "arguments": {"a": 1, "b": 2}}]})).structured_content
        assert batch["results"][0] == {
            "name": "alpha_wipe", "isError": True,
            "error": "each call takes 'name' and 'arguments'; 'parameters' is not one of "
                     "them: put the tool's exposed name in 'name' and its parameters in "
                     "'arguments'"}
        assert batch["results"][1]["structuredContent"] == {"result": 3}
        with pytest.raises(ToolError, match=r"search_tools takes 'query', 'server' and 'k'; "
                                            r"'limit' is not one of them"):
            await client.call_tool("search_tools", {"query": "add", "limit": 3})
        calls = (await client.call_tool("gateway_calls", {"limit": 50})).structured_content
    assert "alpha_wipe" not in {c["exposed"] for c in calls["calls"]}   # never ran
