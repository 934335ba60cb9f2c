"""A token sent as an argument's *name* (``{"mgw_...": 1}``, a JWT as a key) is masked
where the same token as a value is: call records, the inspector's history, the audit,
error texts and logs; the upstream still gets the arguments as sent."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from fast_mcp_gateway.telemetry.arguments import mask_argument_values, redact_arguments
from fast_mcp_gateway.telemetry.recorder import dumps_arguments
from tests.fixtures import alpha_server, make_gateway, memory_entry, until

pytestmark = pytest.mark.anyio

TOKEN = "mgw_" + "bfeLYOrVtZNjCNMKu2pfkhHpxV6jNMd0p39bW5hNDlo"
OTHER = "mgw_" + "qnHUh3xgKgucwemltBMyXTl0R_xibQqDyHnP_8etGvs"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
       ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
HIDDEN = (TOKEN[4:], OTHER[4:], JWT.split(".")[2][-12:])   # what must never show


def _shows_none(text: str) -> None:
    assert not [part for part in HIDDEN if part in text], text


def test_keys_are_masked_as_values_are_and_kept_apart() -> None:
    arguments = {TOKEN: 1, OTHER: 2, "nested": [{JWT: "v"}], "text": TOKEN, "plain": 3}
    shown = redact_arguments(arguments)
    assert shown == {"mgw_***": 1, "mgw_*** (2)": 2, "nested": [{"eyJ***": "v"}],
                     "text": "mgw_***", "plain": 3}
    assert arguments[TOKEN] == 1 and JWT in arguments["nested"][0]   # not changed
    _shows_none(dumps_arguments(arguments, frozenset()) or "")   # records and the audit
    assert redact_arguments({"x": 1}, (), frozenset({"secret-key-name"})) == {"x": 1}
    assert redact_arguments({"secret-key-name": 1}, (), frozenset({"secret-key-name"})) \
        == {"***": 1}
    # An error echoing the arguments (pydantic cuts a long key around "..."): masked.
    echoed = (f"2 validation errors\n{TOKEN}\n  Unexpected keyword argument "
              f"[input_value={{'{JWT[:24]}...{JWT[-19:]}': 2}}, input_type=dict]")
    _shows_none(mask_argument_values(echoed, {TOKEN: 1, "x": {JWT: 2}}))


async def test_a_token_as_a_key_reaches_no_record_error_or_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "gw.db")
    seen: list[str] = []
    async with Client(gateway.server) as client:
        async def call(name: str, arguments: dict[str, Any]) -> Any:
            result = await client.call_tool(name, arguments, raise_on_error=False)
            seen.append(json.dumps([c.model_dump() for c in result.content]))
            return result

        refused = await call("alpha_add", {"a": 1, "b": 2, TOKEN: 1, "x": {JWT: 2}})
        assert refused.is_error      # the upstream got the key, and refused it
        assert "Unexpected keyword argument" in seen[-1]
        assert (await call("gateway_server_detail", {"name": "alpha", TOKEN: 1})).is_error
        assert "mgw_***' is not accepted" in seen[-1]
        await call("gateway_inspect_call_tool", {"server": "alpha", "tool": "add",
                                                 "arguments": {"a": 1, "b": 2, OTHER: 3}})

        await until(lambda: len(seen) == 3)
        assert gateway.recorder is not None and await gateway.recorder.flushed(within=30)
        records = json.dumps((await client.call_tool("gateway_calls", {"limit": 50}))
                             .structured_content)
        assert "mgw_***" in records, records
        history = json.dumps((await client.call_tool("gateway_inspector_history", {}))
                             .structured_content)
        audit = json.dumps((await client.call_tool("gateway_audit", {})).structured_content)
    # The upstream's own error, relayed to the host that sent the key: its tokens are
    # masked whole (pydantic's cut of the JWT is its, as for a JWT sent as a value).
    assert TOKEN not in seen[0] and JWT not in seen[0] and "mgw_***" in seen[0]
    for text in (*seen[1:], records, history, audit, caplog.text):
        _shows_none(text)


def test_a_literal_masked_form_after_a_token_key_loses_neither_entry() -> None:
    # A key written as 'mgw_***' after a token's: it took the token's place in the
    # record, and the token's entry (its value) was lost.
    shown = redact_arguments({TOKEN: 1, "mgw_***": 2, OTHER: 3, "mgw_*** (3)": 4})
    assert shown == {"mgw_*** (2)": 1, "mgw_***": 2, "mgw_*** (4)": 3, "mgw_*** (3)": 4}


def test_many_token_keys_cost_in_proportion_to_their_number() -> None:
    # Each key masked alike counted '(2)', '(3)'... up from 1: n keys cost n*n/2 probes
    # (8,000 token keys, 432 kB of arguments, held a call 5.3 s).  Counted in lines this
    # module runs (no timing): a few per key.
    import secrets

    from fast_mcp_gateway.telemetry import arguments as module

    n = 600
    keys = {f"mgw_{secrets.token_urlsafe(32)}": i for i in range(n)}
    shown, lines = _lines_run(module.__file__, lambda: redact_arguments(keys))
    assert len(shown) == n and f"mgw_*** ({n})" in shown
    assert lines < 40 * n, lines


def _lines_run(module_file: str, work: Any) -> tuple[Any, int]:
    """``work()``'s answer and how many lines of ``module_file`` it ran (no timing)."""
    import sys
    from types import FrameType

    lines = 0

    def trace(frame: FrameType, event: str, _arg: Any) -> Any:
        nonlocal lines
        if frame.f_code.co_filename != module_file:
            return None
        if event == "line":
            lines += 1
        return trace

    sys.settrace(trace)
    try:
        return work(), lines
    finally:
        sys.settrace(None)


def test_cut_values_are_found_in_proportion_to_the_marks() -> None:
    # Each length of each value was tried at each '...': a 470-character password of
    # '...'s echoed ran 276,740 lines here (2.4 kB: 0.47 s; 19 kB: minutes, on the
    # event loop).  A long cut prefix and suffix are masked as before.
    from fast_mcp_gateway.telemetry import arguments as module

    password = "pw-" + "x1y2z3" * 50 + "..." * 150 + "tail-of-it" * 5
    arguments = {"password": password, "api_token": TOKEN}
    text = (f"failed for {arguments!r}; shown cut: {password[:290]}... and "
            f"\u2026{password[-45:]} and {TOKEN[:30]}...")
    shown, lines = _lines_run(module.__file__, lambda: mask_argument_values(text, arguments))
    assert "x1y2z3x1y2" not in shown and "tail-of-it" not in shown, shown
    _shows_none(shown)
    assert shown.startswith("failed for {'password': '***'"), shown
    assert lines < 100 * text.count("..."), lines


def test_cut_values_past_the_work_bound_leave_the_text_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_mcp_gateway.telemetry import arguments as module

    monkeypatch.setattr(module, "CUT_WORK", 1000)
    arguments = {"password": "s3cret-" + "..." * 50 + "-end-of-it"}
    shown = mask_argument_values(f"bad {arguments!r}", arguments)
    assert shown == module.CUT_LEFT_OUT
    assert "s3cret" not in shown and "end-of-it" not in shown


def test_values_a_long_error_text_never_shows_are_not_tried_at_its_marks() -> None:
    # ~30 kB of progress dots and an error that echoes none of the three credential
    # values: each was tried at each '...' (10,000 marks, ~360,000 lines here; 200 kB
    # and three values: 0.8 s on the event loop), though none could be cut there.
    from fast_mcp_gateway.telemetry import arguments as module

    arguments = {"password": "s3cr3t-Pa55w0rd-abcdefghijklmnop", "api_key": "k" * 40,
                 "api_token": TOKEN}
    text = "Loading" + "." * 30_000 + " failed: the credentials were refused"
    shown, lines = _lines_run(module.__file__, lambda: mask_argument_values(text, arguments))
    assert shown == text
    assert lines < 500, lines
    # One that it shows whole is masked, and its cut ends still found at the marks.
    cut = f"{text} for {arguments['password']} (was {arguments['password'][:12]}...)"
    shown = mask_argument_values(cut, arguments)
    assert shown.endswith("for *** (was ***...)"), shown[-60:]


def test_each_mark_counts_toward_the_work_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # A mark cost as much as a value tried at it, and was not counted: with one value,
    # the bound (~0.2 s) let twice the marks through (200 kB: 0.8 s at load 6).
    from fast_mcp_gateway.telemetry import arguments as module

    monkeypatch.setattr(module, "CUT_WORK", 100_000)
    password = "s3cr3t-Pa55w0rd-abcdefghijklmnop"
    shown = mask_argument_values(f"bad {password}" + "." * 3_000, {"password": password})
    assert shown == module.CUT_LEFT_OUT
    shown = mask_argument_values(f"bad {password}" + "." * 1_200, {"password": password})
    assert shown.startswith("bad ***..."), shown[:20]
