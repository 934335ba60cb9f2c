"""max_result_bytes and result caching: the same answers on the express lane and the
full path, a clear error (or a marked truncation) instead of an oversize result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fast_mcp_gateway.config.loader import parse_config_text
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.front.results import CACHE_META, TRUNCATED_META, size_of, truncate
from tests.fixtures import PY, SERVERS
from tests.test_lane import lane_id, raw_host

pytestmark = pytest.mark.anyio

BIG = {"text": "0123456789" * 50, "times": 10}          # 5000 characters of text


def _limited(tmp_path: Path) -> Path:
    """Two servers of the same program behind one gateway, both limited to 2000 bytes:
    ``up`` caches ``whoami`` and ``echo`` and refuses an oversize result, ``cut``
    truncates one and caches nothing."""
    lane = {"command": PY, "args": [str(SERVERS / "lane.py")],
            "env": {"LANE_MARKS": str(tmp_path)}, "max_result_bytes": 2000}
    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"servers": {
        "up": {**lane, "tools": {"cache": {"whoami": {"ttl": 600}, "echo": {"ttl": 600}}}},
        "cut": {**lane, "oversize": "truncate"}}}))
    return path


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_limits_and_cache_answer_alike_on_both_paths(tmp_path: Path, era: str) -> None:
    config = _limited(tmp_path)
    answers: dict[bool, list[Any]] = {}
    for lane in (True, False):
        async with raw_host(config, era, lane=lane, listed=("up_whoami", "cut_whoami")) as host:
            first, again = await host.call("up_whoami"), await host.call("up_whoami")
            assert lane_id(first).startswith("gw-") is lane
            assert lane_id(again) == lane_id(first)              # served from the cache
            assert CACHE_META not in (first.get("_meta") or {})
            mark = again["_meta"][CACHE_META]
            assert mark["hit"] is True and mark["ttl_s"] == 600 and 0 <= mark["age_s"] < 600
            small = await host.call("up_echo", {"text": "ab", "times": 2})
            refused = await host.call("up_echo", BIG)
            detail = await host.call("gateway_server_detail", {"name": "up"})
            answers[lane] = [small, refused, detail["structuredContent"]["curation"]["problems"]]
            cut = await host.call("cut_echo", BIG)
            answers[lane].append(cut)
            # Results just within the limit as the stage measured them: a 2026-07-28
            # host's gets the gateway's serverInfo stamp afterwards, which took it over.
            for chars in range(880, 1000, 10):
                near = await host.call("up_echo", {"text": "x" * chars, "times": 1})
                assert near["isError"] or size_of(near) <= 2000, (chars, size_of(near))
                near = await host.call("cut_echo", {"text": "x" * chars, "times": 1})
                assert size_of(near) <= 2000, (chars, size_of(near))
            assert lane_id(await host.call("cut_whoami")) != lane_id(
                await host.call("cut_whoami"))                  # no cache rule: not cached
    assert answers[True] == answers[False]
    small, refused, problems, cut = answers[True]
    assert small["content"] == [{"type": "text", "text": "abab"}] and not small["isError"]
    assert refused["isError"] is True
    assert refused["content"][0]["text"].startswith(
        "the result of tool 'echo' (server 'up') is 10")   # text + structured copy
    assert "over the server's max_result_bytes (2000)" in refused["content"][0]["text"]
    # echo has no readOnly/idempotent annotation: its cache rule is reported, not applied.
    assert any("tools.cache: 'echo' is not annotated readOnlyHint" in p for p in problems)
    # echo has an output schema and its structured copy cannot fit: dropped, and marked
    # isError so that no host validates the missing part.
    assert cut["isError"] is True and "structuredContent" not in cut
    assert size_of(cut) <= 2000
    assert cut["content"][0]["text"].startswith("0123456789")
    assert cut["content"][-1]["text"] == ("[truncated by the gateway: the result was "
                                          f"{cut['_meta'][TRUNCATED_META]['original_bytes']} "
                                          "bytes, over max_result_bytes (2000); its "
                                          "structured content was dropped]")
    assert cut["_meta"][TRUNCATED_META]["limit"] == 2000


def test_truncation_keeps_every_block_that_fits_in_order_and_notes_the_one_left_out() -> None:
    # It used to stop at the first block that did not fit: [text, large image, text] lost
    # its last text, which fits.  Now every block that fits is kept, in order, and the
    # one that does not is replaced in place by a note saying what it was and how to get
    # it, the whole within the limit.
    data = {"content": [{"type": "text", "text": "a" * 300},
                        {"type": "image", "mimeType": "image/png", "data": "x" * 3000},
                        {"type": "text", "text": "kept too"}], "isError": False}
    out = truncate(data, size_of(data), 1000, "tool 'read' (server 'fs')")
    assert [b["type"] for b in out["content"]] == ["text", "text", "text", "text"]
    first, note, last, notice = (b["text"] for b in out["content"])
    assert (first, last) == ("a" * 300, "kept too")
    assert note.startswith("[image (image/png, 30") and "left out by the gateway" in note
    assert note.endswith("(max_result_bytes 1000): ask tool 'read' (server 'fs') for it "
                         "alone, or for less at a time]")
    assert notice.endswith("over max_result_bytes (1000); 1 of its 3 content blocks left out]")
    assert out["_meta"][TRUNCATED_META]["blocks_left_out"] == 1
    assert size_of(out) <= 1000
    assert out["isError"] is False
    # A text too long for the room left is cut (not left out), the blocks after it kept.
    data = {"content": [{"type": "text", "text": "b" * 3000}, {"type": "text", "text": "end"}]}
    out = truncate(data, size_of(data), 1000, "tool 't'")
    assert [b["text"][:1] for b in out["content"]] == ["b", "e", "["]
    assert out["content"][1]["text"] == "end" and 300 < len(out["content"][0]["text"]) < 3000
    assert out["_meta"][TRUNCATED_META]["blocks_left_out"] == 0
    assert size_of(out) <= 1000
    # Many blocks left out, more than their notes have room for: the closing notice, the
    # longest there is, still fits with its mark (the room kept for them is enough).
    many = {"content": [{"type": "audio", "mimeType": "audio/wav", "data": "z" * 900}] * 120,
            "structuredContent": {"rows": ["x" * 5000]}, "isError": False}
    out = truncate(many, size_of(many), 1000, "tool 't'")
    assert out["content"][-1]["text"].endswith(
        "its structured content was dropped; 120 of its 120 content blocks left out]")
    assert all(b["text"].startswith("[audio (audio/wav, 9") for b in out["content"][:-1])
    assert size_of(out) <= 1000
    structured = {"content": [{"type": "text", "text": "y" * 2000}],
                  "structuredContent": {"rows": ["x" * 2000]}, "isError": False}
    out = truncate(structured, size_of(structured), 1000, "tool 't'")
    assert out["isError"] is True and "structuredContent" not in out
    assert out["_meta"][TRUNCATED_META]["structured_content_dropped"] is True
    assert size_of(out) <= 1000


@pytest.mark.parametrize(("yaml", "message"), [
    ("tools: {cache: {wipe: {ttl: 5}}, override: {wipe: {annotations: "
     "{readOnlyHint: false}}}}", "only read-only or idempotent tools may be cached"),
    ("cache: {ttl: 0}", "greater than 0"),
    ("max_result_bytes: 10", "greater than or equal to 64"),
    ("oversize: cut", "'error' or 'truncate'"),
])
def test_bad_limits_and_cache_rules_are_refused_at_load(yaml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config_text(f"servers:\n  gh:\n    command: x\n    {yaml}\n", source="s")


def test_an_idempotent_tools_entry_allows_caching_a_tool_marked_not_read_only() -> None:
    config = parse_config_text(
        "servers:\n  gh:\n    command: x\n    idempotent_tools: [put]\n"
        "    tools: {cache: {put: {ttl: 5}}, override: {put: {annotations: "
        "{readOnlyHint: false}}}}\n", source="s")
    assert config.servers["gh"].tools.cache["put"].ttl == 5
    assert json.loads(config.servers["gh"].model_dump_json())["tools"]["cache"]["put"] == {
        "ttl": 5.0, "max_entries": 256}


def test_a_cut_text_is_measured_as_json_and_the_blocks_after_it_stay() -> None:
    # Quotes, newlines and control characters are written two to six bytes long in
    # JSON: a text cut by its UTF-8 bytes overflowed, and the last resort then dropped
    # the block kept after it ("end") while the notice said nothing was left out.
    data = {"content": [{"type": "text", "text": '"\n\x01' * 1000},
                        {"type": "text", "text": "end"}]}
    out = truncate(data, size_of(data), 1000, "tool 't'")
    assert [b["text"][:1] for b in out["content"]] == ['"', "e", "["]
    assert out["content"][1]["text"] == "end" and len(out["content"][0]["text"]) > 100
    assert out["_meta"][TRUNCATED_META]["blocks_left_out"] == 0
    assert size_of(out) <= 1000
    # Many small blocks: each measured as it is written (no resultType of its own), so
    # every one that fits is kept; each was counted 23 bytes too long.
    small = {"content": [{"type": "text", "text": "ab"}] * 100}
    out = truncate(small, size_of(small), 2000, "tool 't'")
    assert len(out["content"]) > 55 and size_of(out) <= 2000
    assert out["_meta"][TRUNCATED_META]["blocks_left_out"] == 101 - len(out["content"])
    # The bytes the host's result gains afterwards (the serverInfo stamp) are room too.
    out = truncate(small, size_of(small), 2000, "tool 't'", stamp=300)
    assert size_of(out) <= 1700
