"""Long string values relayed undecoded (upstream/lifting.py): what the host reads is
exactly what decoding and encoding would have given, for any message."""

from __future__ import annotations

import gc
import json
import sys
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fast_mcp_gateway.front.wire import encode_body, encode_line
from fast_mcp_gateway.upstream import lifting
from fast_mcp_gateway.upstream.lifting import Lifted, lifted_loads, text_of, unlifted


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift from a few bytes on, so that generated messages exercise it."""
    monkeypatch.setattr(lifting, "LIFT_MIN", 16)
    monkeypatch.setattr(lifting, "LITERAL_MIN", 8)


def lifted_values(value: Any) -> list[Lifted]:
    if isinstance(value, Lifted):
        return [value]
    if isinstance(value, dict):
        return [x for item in value.values() for x in lifted_values(item)]
    if isinstance(value, list):
        return [x for item in value for x in lifted_values(item)]
    return []


def answer(text: Any, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": "gw-7", "result": {
        "content": [{"type": "text", "text": text}, {"type": "image", "data": "QUJD" * 4,
                                                    "mimeType": "image/png"}],
        "structuredContent": {"text": text, "n": 1.5, "ok": True, "none": None}, **extra}}


TEXTS = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=40)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_a_lifted_answer_encodes_exactly_as_a_decoded_one(small_limits: None, text: str,
                                                          ascii_only: bool,
                                                          indent: int | None) -> None:
    data = json.dumps(answer(text), ensure_ascii=ascii_only, indent=indent).encode()
    message = lifted_loads(data)
    decoded = json.loads(data)
    assert unlifted(message) == decoded
    # The host's line and body carry the same JSON as encoding the decoded message.
    assert json.loads(encode_line(message)) == json.loads(encode_line(decoded))
    assert json.loads(encode_body(message)) == decoded
    for lifted in lifted_values(message):
        assert text_of(lifted) in (text, "QUJD" * 4)


def test_long_literals_are_lifted_and_spliced_back_byte_for_byte() -> None:
    text = 'a "quoted" \\ back\\slash, ✓ 🚀, \u2028 line\nnext\ttab ' * 4000  # ~200 KiB
    data = json.dumps(answer(text), ensure_ascii=False).encode()
    message = lifted_loads(data)
    lifted = lifted_values(message)
    # "text" values are lifted (content and structured); "data" only when long.
    assert len(lifted) == 2 and all(len(str(x)) < 80 for x in lifted)
    assert message["result"]["content"][1]["data"] == "QUJD" * 4
    line = encode_line(message)
    assert json.loads(line)["result"]["content"][0]["text"] == text
    assert json.dumps(text, ensure_ascii=False).encode() in line  # the upstream's bytes


@pytest.mark.parametrize("literal", [
    b'"' + b"x" * 70_000 + b'\x01"',        # a raw control character
    b'"' + b"x" * 70_000 + b'\\q"',         # an escape JSON does not define
    b'"' + b"x" * 70_000 + b'\\u12g4"',     # a \u escape without four hex digits
    b'"' + b"x" * 70_000 + b'\\u\\\\0000"',  # \u, then an escaped backslash and hex
    b'"' + b"x" * 70_000 + b'\xff\xfe"',      # not UTF-8
])
def test_an_invalid_long_literal_is_refused_as_json_loads_refuses_it(literal: bytes) -> None:
    data = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":' + literal \
        + b"}]}}" + b" " * 300_000
    with pytest.raises(ValueError):
        json.loads(data)
    with pytest.raises(ValueError):
        lifted_loads(data)


def test_escaped_backslashes_before_letters_are_judged_right() -> None:
    text = "C:\\users\\new\\" * 20_000  # \\u... and \\n: escaped backslashes, valid
    data = json.dumps(answer(text)).encode() + b" " * 300_000
    message = lifted_loads(data)
    assert lifted_values(message)
    assert json.loads(encode_line(message))["result"]["content"][0]["text"] == text


def test_a_token_an_upstream_writes_is_text_not_another_answers_literal() -> None:
    first = lifted_loads(json.dumps(answer("s" * 300_000)).encode())
    live = str(lifted_values(first)[0])
    # A token-shaped text with another nonce is left as it is (forging a live one needs
    # its random nonce, which never leaves the process) ...
    guessed = f"@gw-lifted-{'0' * 24}-0"
    line = encode_line(answer(guessed))
    assert json.loads(line)["result"]["content"][0]["text"] == guessed
    # ... and a token whose answer is gone is text again (literals are held weakly).
    del first
    gc.collect()
    assert live not in lifting._LIVE
    assert json.loads(encode_line(answer(live)))["result"]["content"][0]["text"] == live


def test_small_answers_and_other_keys_are_parsed_as_usual() -> None:
    small = json.dumps(answer("x" * 1000)).encode()
    assert lifted_values(lifted_loads(small)) == []
    other = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"note": "x" * 400_000}}).encode()
    assert lifted_values(lifted_loads(other)) == []


def test_the_result_stage_measures_a_lifted_answer_as_the_host_reads_it() -> None:
    """A call that began before a reload set ``max_result_bytes`` has its strings lifted:
    the limit still applies to the text the host would read, not to the tokens."""
    from types import SimpleNamespace

    from fast_mcp_gateway.config.loader import parse_config
    from fast_mcp_gateway.front.encodings import JsonTool
    from fast_mcp_gateway.front.outcomes import Call, CallRefused
    from fast_mcp_gateway.front.results import ResultLimits

    config = parse_config({"servers": {"s": {"command": "x", "max_result_bytes": 300_000}}},
                          source="test").servers["s"]
    service: Any = SimpleNamespace(name="s", config=config)
    call = Call("tool", "s_t", service, "t", {}, cast(Any, None), cast(Any, None), service)
    result = lifted_loads(json.dumps(answer("y" * 400_000)).encode())["result"]
    assert lifted_values(result)
    with pytest.raises(CallRefused, match="over the server's max_result_bytes"):
        ResultLimits().review(call, JsonTool({}, None, encode_line), result)


def test_a_literal_json_loads_reads_as_a_lone_surrogate_reaches_the_host_as_utf8() -> None:
    """UTF-8-encoded surrogates (which ``json.loads`` of bytes lets through): the host
    gets them escaped, as encoding the decoded string writes them, never as raw bytes."""
    data = (b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"'
            + b"x" * 300_000 + b'\xed\xa0\x80"}]}}')
    message = lifted_loads(data)
    for encode in (encode_line, encode_body):
        out = encode(message)
        assert json.loads(out.decode("utf-8")) == json.loads(data)


@pytest.mark.parametrize("junk", [b'"note" "x"', b'"note":x', b'"text":"x" "y"'])
def test_a_refused_answer_names_the_place_json_loads_names(junk: bytes) -> None:
    """The error names the upstream's bytes, not the answer with its literals cut out."""
    data = (b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"'
            + b"x" * 300_000 + b'"}],' + junk + b"}}")
    with pytest.raises(ValueError) as expected:
        json.loads(data)
    with pytest.raises(ValueError) as got:
        lifted_loads(data)
    assert str(got.value) == str(expected.value)


def test_a_text_of_escaped_quotes_is_walked_in_a_few_steps() -> None:
    """JSON as text (what FastMCP writes for a structured result) is mostly escaped
    quotes: finding its end must not cost a Python step per quote (lifting it then
    cost four times what decoding and encoding it does)."""
    text = json.dumps([{"id": i, "name": f"item {i}", "ok": True} for i in range(20_000)])
    data = json.dumps(answer(text)).encode()
    searches = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal searches
        if event == "c_call" and getattr(arg, "__name__", "") in ("find", "index"):
            searches += 1

    sys.setprofile(count)
    try:
        message = lifted_loads(data)
    finally:
        sys.setprofile(None)
    assert len(lifted_values(message)) == 2
    assert json.loads(encode_line(message))["result"]["content"][0]["text"] == text
    assert searches < 1_000  # 320,000 with a step per escaped quote


def test_the_result_stage_looks_at_a_result_with_nothing_lifted_in_one_step() -> None:
    """``unlifted`` runs on every result of a server with ``max_result_bytes`` or a cache
    rule: with no lifted string alive anywhere it must not walk (and copy) the result
    (a 20,000-row structured result took twice its size measurement)."""
    gc.collect()
    assert not lifting._LIVE
    rows = [{"id": i, "tags": ["a", "b"]} for i in range(2_000)]
    result = {"content": [{"type": "text", "text": "x"}], "structuredContent": {"rows": rows}}
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls  # the package's and its registry's calls (not a gc callback's)
        where = frame.f_code.co_filename
        calls += event == "call" and ("fast_mcp_gateway" in where or "weakref" in where)

    sys.setprofile(count)
    try:
        assert unlifted(result) is result
    finally:
        sys.setprofile(None)
    assert calls <= 2
    # While some answer is lifted, a result is walked, and copied only where lifted.
    held = lifted_loads(json.dumps(answer("z" * 300_000)).encode())
    assert unlifted(result) is result
    decoded = unlifted(held)
    assert decoded["result"]["content"][0]["text"] == "z" * 300_000
    assert decoded["result"]["content"][1] is held["result"]["content"][1]


def test_a_lane_calls_parked_outcome_is_typed_decoded_for_a_task_round() -> None:
    """A call an express lane began and parked (MRTR) may be continued by a round that
    opts into tasks (the full path's ``TaskCall``): its lifted outcome is typed with
    its texts, not its tokens."""
    from types import SimpleNamespace

    from fast_mcp_gateway.front.outcomes import Call
    from fast_mcp_gateway.front.tasks import TaskCall

    tool: Any = SimpleNamespace(annotations=None, links=None)
    service: Any = SimpleNamespace(name="s")
    call = Call("tool", "s_t", service, "t", {}, cast(Any, None), cast(Any, None), service)
    outcome = lifted_loads(json.dumps(answer("y" * 300_000)).encode())["result"]
    assert lifted_values(outcome)
    sending = TaskCall({}, tool, cast(Any, None))
    typed = sending.finish(call, sending.adopt(outcome)).output
    assert typed.content[0].text == "y" * 300_000
    assert typed.structured_content == {"text": "y" * 300_000, "n": 1.5, "ok": True,
                                        "none": None}
