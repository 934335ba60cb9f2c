"""What is relayed is what the upstream said (issue 8 items 3 and 5, issue 15 item 1).

``tests/servers/fidelity.py`` is a hand-written upstream whose every byte is known:
tools without a title, a prompt without arguments, a task-only tool, resource links,
a -32042 error with ``data``, instructions.  Each behaviour is checked on the stdio
express lane and on the full FastMCP path (``MCP_GATEWAY_EXPRESS_LANE=false``), for a
handshake-era and a 2026-07-28 host, against the upstream's own lists and answers.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from fast_mcp_gateway.routing.view import normalize_uri
from tests.fixtures import PY, SERVERS
from tests.servers.fidelity import LISTS, README, URL_ERROR
from tests.test_lane import CLIENT_INFO, RawHost

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "modern"]
LIST_METHODS = ["tools/list", "prompts/list", "resources/list", "resources/templates/list"]
KEYS = {"tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
        "resources/templates/list": "resourceTemplates"}


def write_config(tmp_path: Path, *args: str) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text("servers:\n  fid:\n"
                    f"    command: {json.dumps(PY)}\n"
                    f"    args: {json.dumps([str(SERVERS / 'fidelity.py'), *args])}\n")
    return path


@asynccontextmanager
async def fidelity_host(tmp_path: Path, era: str, *, lane: bool,
                        args: tuple[str, ...] = ()) -> AsyncIterator[RawHost]:
    """``mcp-gateway serve`` in front of the fidelity upstream (run with ``args``),
    ``fid`` listed."""
    environ = {**os.environ, "MCP_GATEWAY_EXPRESS_LANE": str(lane).lower()}
    argv = [PY, "-m", "fast_mcp_gateway", "serve", "--config",
            str(write_config(tmp_path, *args)),
            "--log-level", "WARNING"]
    process = await anyio.open_process(argv, env=environ, stderr=None)
    async with process, anyio.create_task_group() as tg:
        host = RawHost(process, era, None)
        tg.start_soon(host.read)
        if era == "legacy":
            reply = await host.request("initialize", {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": CLIENT_INFO})
            assert "result" in reply, reply
            await host.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        with anyio.fail_after(30):
            while not any(t["name"] == "fid_plain"  # noqa: ASYNC110 - another process
                          for t in (await host.request("tools/list"))["result"]["tools"]):
                await anyio.sleep(0.05)  # its progress: nothing to wait on
        try:
            yield host
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.fail_after(20):
                await process.wait()
            tg.cancel_scope.cancel()


def exposed_uri(uri: str) -> str:
    return uri.replace("file:///", "file://fid//", 1)


def namespaced(method: str) -> list[dict[str, Any]]:
    """The upstream's own list, as the gateway must expose it (only names changed), in
    the gateway's order: by exposed name (URI, URI template), whatever the upstream's."""
    items = copy.deepcopy(LISTS[method][KEYS[method]])
    for item in items:
        if "name" in item and method in ("tools/list", "prompts/list"):
            item["name"] = f"fid_{item['name']}"
        if "uri" in item:  # listed: in the catalog's normalised form (as read back)
            item["uri"] = normalize_uri(exposed_uri(item["uri"]))
    items.sort(key=lambda i: i.get("name") if method in ("tools/list", "prompts/list")
               else i.get("uri", i.get("uriTemplate")))
    return [i for i in items if i.get("execution", {}).get("taskSupport") != "required"]


def fid_only(method: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    items = result[KEYS[method]]
    if method in ("tools/list", "prompts/list"):
        return [i for i in items if i["name"].startswith("fid_")]
    return items


@pytest.mark.parametrize("era", ERAS)
async def test_lists_are_the_upstreams_own_on_the_lane_and_the_full_path(
        tmp_path: Path, era: str) -> None:
    answers: dict[bool, dict[str, list[dict[str, Any]]]] = {}
    for lane in (True, False):
        async with fidelity_host(tmp_path, era, lane=lane) as host:
            # Twice: a handshake-era host's first list goes the full path, then the lane.
            answers[lane] = {m: [(await host.request(m))["result"] for _ in range(2)]
                             for m in LIST_METHODS}
            assert host.unanswered == []
    assert answers[True] == answers[False]
    for method, (first, second) in answers[True].items():
        assert first == second
        # Equal to the upstream's, apart from the namespacing: no title made from the
        # name, no _meta.fastmcp, no "arguments": [], no mimeType, no task-only tool.
        assert fid_only(method, first) == namespaced(method), method
    tools = answers[True]["tools/list"][0]["tools"]
    assert "fid_task_only" not in {t["name"] for t in tools}
    if era == "modern":
        assert answers[True]["tools/list"][0]["resultType"] == "complete"


@pytest.mark.parametrize("era", ERAS)
async def test_a_list_on_the_lane_is_the_full_paths_bytes(tmp_path: Path, era: str) -> None:
    """The lane's encoded lists are the bytes the SDK's transport writes (pydantic-core),
    not only the same JSON: ``json.dumps`` wrote the upstream's ``0.00001`` as ``1e-05``."""
    lines: dict[bool, list[bytes]] = {}
    for lane in (True, False):
        async with fidelity_host(tmp_path, era, lane=lane) as host:
            lines[lane] = []
            for method in LIST_METHODS:
                for _ in range(2):  # a handshake-era host's first list goes the full path
                    reply = await host.request(method, request_id=f"{method}-{_}")
                    assert "result" in reply, reply
                    lines[lane].append(host.answers[f"{method}-{_}"])
    assert b'"minimum":0.00001' in lines[True][1]
    assert lines[True] == lines[False]


@pytest.mark.parametrize("era", ERAS)
async def test_an_upstream_error_response_reaches_the_host_as_it_was(
        tmp_path: Path, era: str) -> None:
    for lane in (True, False):
        async with fidelity_host(tmp_path, era, lane=lane) as host:
            reply = await host.request("tools/call", {"name": "fid_needs_url", "arguments": {}})
            assert reply.get("error") == URL_ERROR, (lane, reply)
            # A failure the gateway detects itself is still a tool error result.
            refused = await host.call("fid_task_only", {})
            assert refused["isError"] is True
            # One sentence, whose fix does not break a server that has no such era.
            assert refused["content"][0]["text"].startswith(
                "tool 'fid_task_only' of server 'fid' is not exposed: it runs only as a task")
            assert "if the server also speaks 2026-07-28, set `protocol: 2026-07-28`" in \
                refused["content"][0]["text"]


@pytest.mark.parametrize("era", ERAS)
async def test_links_in_results_and_prompts_resolve_through_the_gateway(
        tmp_path: Path, era: str) -> None:
    link = exposed_uri(README)
    results: dict[bool, dict[str, Any]] = {}
    for lane in (True, False):
        async with fidelity_host(tmp_path, era, lane=lane) as host:
            result = results[lane] = await host.call("fid_link", {})
            blocks = result["content"]
            assert blocks[1]["uri"] == link and blocks[2]["resource"]["uri"] == link
            read = await host.request("resources/read", {"uri": link})
            contents = read["result"]["contents"]
            # The upstream was asked for its own URI; the host sees the link it followed.
            assert contents[0]["text"] == f"content of {README}"
            assert contents[0]["uri"] == link
            # The link as URL parsers write it (``file://fid/srv/...``: pydantic, so a
            # FastMCP host, and the lists' own form): the same file, not the file
            # ``/readme.txt`` of a host named "srv".
            parsed = await host.request("resources/read", {"uri": normalize_uri(link)})
            assert parsed["result"]["contents"][0]["text"] == f"content of {README}", parsed
            listed = await host.request("resources/read", {
                "uri": normalize_uri(exposed_uri("file:///srv/listed.txt"))})
            assert listed["result"]["contents"][0]["text"] == "content of file:///srv/listed.txt"
            prompt = (await host.request("prompts/get", {"name": "fid_linked",
                                                         "arguments": {"topic": "t"}}))["result"]
            contents = [m["content"] for m in prompt["messages"]]
            assert contents[1]["uri"] == link and contents[2]["resource"]["uri"] == link
            bare = (await host.request("prompts/get", {"name": "fid_bare"}))["result"]
            assert bare["messages"][0]["content"]["text"] == "bare prompt"
            unknown = await host.request("resources/read", {"uri": "file://nobody//x"})
            assert "error" in unknown
    assert results[True] == results[False]


@pytest.mark.parametrize("era", ERAS)
async def test_links_of_a_server_without_resources_are_relayed_as_they_came(
        tmp_path: Path, era: str) -> None:
    """A server that serves no resources (server-filesystem: ``read_media_file`` embeds
    ``file:///...``) had its results' URIs namespaced into ``file://fid//srv/...``:
    a link no read could follow (the server has no ``resources/read``), in place of the
    host's own file URI, and unlike the same URI in ``structuredContent``.  They are
    relayed as they came."""
    for lane in (True, False):
        async with fidelity_host(tmp_path, era, lane=lane, args=("--no-resources",)) as host:
            blocks = (await host.call("fid_link", {}))["content"]
            assert blocks[1]["uri"] == README and blocks[2]["resource"]["uri"] == README
            prompt = (await host.request("prompts/get", {"name": "fid_linked",
                                                         "arguments": {"topic": "t"}}))["result"]
            contents = [m["content"] for m in prompt["messages"]]
            assert contents[1]["uri"] == README and contents[2]["resource"]["uri"] == README


async def test_instructions_are_composed_from_the_servers(tmp_path: Path) -> None:
    async with fidelity_host(tmp_path, "modern", lane=True) as host:
        reply = await host.request("server/discover", {})
    text = reply["result"]["instructions"]
    assert "## fid\nFidelity fixture.\nCall link to get a link to file:///srv/readme.txt." in text
    assert "'<namespace>_<name>'" in text
