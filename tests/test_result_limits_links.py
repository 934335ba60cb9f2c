"""max_result_bytes counts what a host reads: resource links in their exposed form (a
namespace longer each), and a cached result's mark and serverInfo stamp after a reload
lowered the limit."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import mcp_types as types
import pytest

from fast_mcp_gateway.config.curation import CacheRule
from fast_mcp_gateway.front.encodings import JsonTool, TypedTool
from fast_mcp_gateway.front.outcomes import CallRefused
from fast_mcp_gateway.front.results import CACHE_META, ResultLimits, size_of, wire
from fast_mcp_gateway.http.lane import HttpLane
from tests.fixtures import PY, SERVERS, make_gateway, serve_http
from tests.test_http_lane import body_of, headers_of
from tests.test_lane import raw_host

pytestmark = pytest.mark.anyio

LIMIT = 3000
LONG = "a_namespace_long_enough_to_count"   # 33 bytes more per link


def _config(tmp_path: Path) -> Path:
    fidelity = {"command": PY, "args": [str(SERVERS / "fidelity.py")], "max_result_bytes": LIMIT}
    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"servers": {
        "fid": {**fidelity, "namespace": LONG},
        "cut": {**fidelity, "namespace": LONG + "_cut", "oversize": "truncate"}}}))
    return path


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_links_are_measured_as_the_host_reads_them(tmp_path: Path, era: str) -> None:
    config = _config(tmp_path)
    for lane in (True, False):
        async with raw_host(config, era, lane=lane, listed=(f"{LONG}_link",)) as host:
            refused = 0
            # Upstream results from ~1,700 to ~3,300 bytes, each link 33 bytes longer as
            # exposed: measured before that, some reached the host over the limit.
            for count in range(20, 45, 2):
                got = await host.call(f"{LONG}_link", {"count": count})
                if got["isError"]:
                    refused += 1
                    assert "over the server's max_result_bytes (3000)" in \
                        got["content"][0]["text"]
                else:
                    assert size_of(got) <= LIMIT, (lane, count, size_of(got))
                    assert got["content"][1]["uri"].startswith(f"file://{LONG}/")
            assert 0 < refused < 13, (lane, refused)
            # A note for a block left out quotes the URI the host sees (and may read).
            cut = await host.call(f"{LONG}_cut_link", {"count": 3, "embed": 5000})
            assert size_of(cut) <= LIMIT
            exposed = cut["content"][1]["uri"]
            assert exposed.startswith(f"file://{LONG}_cut/"), exposed
            notes = [b["text"] for b in cut["content"] if "left out by the gateway" in
                     b.get("text", "")]
            assert len(notes) == 1 and f"[resource ({exposed}, " in notes[0], notes


async def test_a_hit_kept_under_a_higher_limit_is_not_served_over_a_lower_one() -> None:
    annotations = types.ToolAnnotations(read_only_hint=True)
    config = SimpleNamespace(max_result_bytes=LIMIT, cache=CacheRule(ttl=600), oversize="error",
                             tools=SimpleNamespace(cache={}), idempotent_tools=(),
                             effective_namespace="up")
    service = SimpleNamespace(name="up", config=config, host_of=lambda front: None)
    call: Any = SimpleNamespace(kind="tool", original="read", arguments={"k": 1},
                                service=service, front=None,
                                path=SimpleNamespace(notes=()))
    limits, encoding = ResultLimits(), TypedTool(annotations)
    result = types.CallToolResult(content=[types.TextContent(type="text", text="x" * 1000)])
    limits.review(call, encoding, result)
    hit = limits.cached(call, encoding)
    assert hit is not None and hit.meta[CACHE_META]["hit"] is True
    # What the host of a hit reads: the entry, its mark and the gateway's serverInfo stamp.
    read = {**wire(hit), "_meta": {**hit.meta, types.SERVER_INFO_META_KEY: limits.stamp()}}
    config.max_result_bytes = size_of(read)          # a reload lowers the limit to just that
    assert limits.cached(call, encoding) is not None
    config.max_result_bytes = size_of(read) - 1      # and one byte lower: not served
    assert limits.cached(call, encoding) is None
    assert limits.cached(call, encoding) is None     # dropped, not looked at again


def test_a_lane_result_is_measured_with_the_is_error_it_gets() -> None:
    """The lane writes ``isError: false`` into an upstream's result that has none (as the
    typed path does): counted, or a result just within the limit reached its host over."""
    config = SimpleNamespace(max_result_bytes=LIMIT, cache=None, oversize="error",
                             tools=SimpleNamespace(cache={}), idempotent_tools=())
    service = SimpleNamespace(name="up", config=config, host_of=lambda front: None)
    call: Any = SimpleNamespace(kind="tool", original="echo", arguments={}, service=service,
                                front=None, path=SimpleNamespace(notes=()))
    limits, encoding = ResultLimits(), JsonTool({}, None, json.dumps)
    upstream = {"content": [{"type": "text", "text": "x" * 1000}]}
    read = {**upstream, "isError": False, "_meta": {types.SERVER_INFO_META_KEY: limits.stamp()}}
    config.max_result_bytes = size_of(read)
    limits.review(call, encoding, json.loads(json.dumps(upstream)))   # just within it
    config.max_result_bytes = size_of(read) - 1
    with pytest.raises(CallRefused, match=f"is {size_of(read)} bytes, over"):
        limits.review(call, encoding, json.loads(json.dumps(upstream)))


async def test_the_http_lane_measures_links_as_the_host_reads_them() -> None:
    """The same over the HTTP express lane (a 2026-07-28 POST the lane answers)."""
    fidelity = {"command": PY, "args": [str(SERVERS / "fidelity.py")],
                "max_result_bytes": LIMIT, "namespace": LONG}
    gateway = make_gateway({"fid": fidelity}, http_express_lane=True, call_timeout=60)
    app = gateway.http_app("http")
    lane = getattr(app.mcp_entry, "app", None)
    assert isinstance(lane, HttpLane) and lane.enabled
    async with serve_http(app) as base, httpx2.AsyncClient(base_url=base, timeout=60) as http:
        refused = 0
        for count in range(20, 45, 2):
            before = lane.served
            name = f"{LONG}_link"
            reply = await http.post("/mcp", headers=headers_of(name, None),
                                    content=json.dumps(body_of(name, {"count": count})))
            assert reply.status_code == 200 and lane.served == before + 1, reply.text
            got = reply.json()["result"]
            if got["isError"]:
                refused += 1
            else:
                assert size_of(got) <= LIMIT, (count, size_of(got))
        assert 0 < refused < 13, refused
