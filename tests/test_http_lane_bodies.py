"""Request bodies the HTTP express lane leaves to the full path, and the record's
arguments (redacted on the call's path) as the lane writes them.

The lane parses a body as UTF-8 text; anything else JSON allows as bytes (a UTF-8
BOM, UTF-16, encoded lone surrogates) goes to FastMCP's app unchanged, which
answers it as it always has: both gateways must give the same answer, and the lane
must not have taken it.
"""

from __future__ import annotations

import gc
import json
import tracemalloc

import pytest

from fast_mcp_gateway.telemetry.recorder import dumps_arguments
from tests.test_http_lane import body_of, both, headers_of

pytestmark = pytest.mark.anyio


async def test_bodies_that_are_not_plain_utf8_go_to_the_full_path() -> None:
    text = json.dumps(body_of("alpha_add", {"a": 2, "b": 3}))
    async with both() as (lane, full):
        for raw in (b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16"),
                    text.replace('"b"', '"b\xed\xa0\x80"').encode("latin-1")):
            before = lane.served
            got = await lane.http.post("/mcp", content=raw, headers=headers_of("alpha_add"))
            want = await full.http.post("/mcp", content=raw, headers=headers_of("alpha_add"))
            assert lane.served == before  # not taken
            assert (got.status_code, got.content) == (want.status_code, want.content)
        # Escaped (not encoded) surrogates are plain UTF-8 text: the lane takes them.
        escaped = json.dumps(body_of("alpha_add", {"a": 2, "b": 3, "x": "\ud800"}))
        before = lane.served
        got = await lane.http.post("/mcp", content=escaped.encode(),
                                   headers=headers_of("alpha_add"))
        assert lane.served == before + 1 and got.status_code == 200


def test_recorded_arguments_mask_credential_keys_at_any_depth() -> None:
    # (0: a key that is not a string; its value is a known secret, masked as one)
    arguments = {"text": "hi", "Api_Key": "k1", 0: "zero", "": "empty",
                 "nested": [{"MyToken": "t", "keep": "Bearer abcdefghijk"}],
                 "obj": {"passwordHint": {"deep": 1}}}
    recorded = json.loads(dumps_arguments(arguments, frozenset({"zero"})) or "")
    assert recorded == {"text": "hi", "Api_Key": "***", "0": "***", "": "empty",
                        "nested": [{"MyToken": "***", "keep": "Bearer ***"}],
                        "obj": {"passwordHint": "***"}}
    assert dumps_arguments(None, frozenset()) is None
    # Keys are matched as given (the recorder's redact_keys), case-insensitively.
    assert json.loads(dumps_arguments({"Session": 1, "x": 2}, frozenset(),
                                      ("SESSION",)) or "") == {"Session": "***", "x": 2}


async def test_the_lane_observes_what_the_full_path_observes() -> None:
    """Every kind of ending reaches the observers on the lane as on the full path."""
    calls = [("alpha_add", {"a": 1, "b": 2}), ("alpha_fail", {"message": "boom"}),
             ("fid_needs_url", {})]
    seen: dict[str, list[tuple[str, str, str | None]]] = {}
    async with both() as (lane, full):
        for front in (lane, full):
            outcomes = seen[front.base] = []
            front.gateway.provider.pipeline.observers.append(
                lambda o, into=outcomes: into.append((o.tool, o.status, o.error)))
            before = front.served
            for name, arguments in calls:
                got = await front.http.post("/mcp", content=json.dumps(body_of(
                    name, arguments)), headers=headers_of(name))
                assert got.status_code == 200
            assert front.served - before == (3 if front is lane else 0)
        assert seen[lane.base] == seen[full.base]
        assert [status for _, status, _ in seen[lane.base]] == ["success", "error", "error"]


def test_remembered_key_names_do_not_keep_a_callers_long_keys_alive() -> None:
    # The redaction remembers its verdict per key name (names repeat call after call);
    # a caller chooses the names, so long ones must not be kept from call to call
    # (4,096 remembered 1 MB names would hold 4 GB).
    keys = ("x-review8-probe",)  # a key set of this test's own: a fresh memory
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(50):
            name = f"{n:04d}" + "k" * 100_000
            dumps_arguments({name: "v", "token": "t"}, frozenset(), keys)
            del name
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept} bytes kept after 50 calls with 100 kB key names"
    # Short names are still matched as before (case-insensitively, anywhere in the key).
    assert json.loads(dumps_arguments({"My-X-Review8-Probe-Id": 1, "ok": 2}, frozenset(),
                                      keys) or "") == {"My-X-Review8-Probe-Id": "***", "ok": 2}
