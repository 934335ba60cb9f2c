"""Well-known credential formats are masked in every text, under any key or none.

A token the config never named (a host passes a GitHub token as a tool's ``text``, an
upstream echoes it in its error) was masked only under a credential-like key name: it
reached the call record's ``error`` and ``arguments``, the logs, REST and the
dashboard.  ``mask_text`` now masks the issuers' formats too (GitHub, Slack, OpenAI /
Anthropic, Stripe secret keys, GitLab, AWS key ids, Google API keys, JWTs, private-key
PEM blocks), keeping the format's prefix so that the text still says what was there;
ordinary text (prose, UUIDs, hashes, paths, base64) passes unchanged, and the pattern is
linear on input made of near-matches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.telemetry.arguments import redact_arguments
from fast_mcp_gateway.telemetry.log_filter import SecretLogFilter
from fast_mcp_gateway.telemetry.redaction import mask_text
from fast_mcp_gateway.upstream.model import StderrTail
from tests.fixtures import make_gateway, memory_entry

pytestmark = pytest.mark.anyio

ALNUM = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xYzQ"  # 34 characters
GITHUB = "ghp_" + (ALNUM + "Ab")  # + 36
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
       ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7Mhg"
       "\nq0xAqQ3ZEHvmbWnR+7Nk3E6Kq8gG\n-----END RSA PRIVATE KEY-----")

TOKENS = [
    (GITHUB, "ghp_"),
    ("gho_" + ALNUM + "Ab", "gho_"),
    ("ghu_" + ALNUM + "Ab", "ghu_"),
    ("ghs_" + ALNUM + "Ab", "ghs_"),
    ("ghr_" + ALNUM + "Ab", "ghr_"),
    ("github_pat_11ABCDEFG0" + "a1B2c3D4e5_" * 6 + "Zz9Yy8Xx7Ww6", "github_pat_"),
    ("xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "xoxb-"),
    ("xoxp-1234567890-1234567890-1234567890-0123456789abcdef", "xoxp-"),
    ("xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAtMTIzNDU2Nzg5MA", "xoxe.xoxp-"),  # rotation
    ("xoxe-1-My0xLTEyMzQ1Njc4OTAtMTIzNDU2Nzg5MA", "xoxe-"),  # refresh
    ("xapp-1-A0123456789-1234567890123-0123456789abcdef", "xapp-"),  # app-level
    ("sk-" + ALNUM + "0123456789abcd", "sk-"),
    ("sk-proj-" + ALNUM + "-" + ALNUM + "_" + ALNUM, "sk-proj-"),
    ("sk-ant-api03-" + ALNUM * 3 + "-AAAA", "sk-ant-api03-"),
    # Shorter than 32 after 'sk-': a LiteLLM virtual key (token_urlsafe(16)), keys cut
    # short in an error or a log line, the newer formats' own prefixes.
    ("sk-" + "PqaBKbnkL0xrQ9ExbzRfBw", "sk-"),
    ("sk-" + "0123456789abcdef0123456789abcdef", "sk-"),  # DeepSeek: 32 hex digits
    ("sk-proj-" + "Ab3dE5fG7hJ9kL1mN2pQ", "sk-proj-"),
    ("sk-svcacct-" + "Ab3dE5fG7hJ9kL1mN2pQ", "sk-svcacct-"),
    ("sk-admin-" + "Ab3dE5fG7hJ9kL1mN2pQ", "sk-admin-"),
    ("sk-None-" + "Ab3dE5fG7hJ9kL1mN2pQ", "sk-None-"),
    ("sk-ant-admin01-" + "Ab3dE5fG7hJ9kL1mN2pQ", "sk-ant-admin01-"),
    ("sk-ant-oat01-" + "Ab3dE5fG7hJ9kL1mN2pQ", "sk-ant-oat01-"),
    ("sk-or-v1-" + "0123456789abcdef" * 4, "sk-or-v1-"),  # OpenRouter
    ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "sk_live_"),
    ("rk_live_" + "51H8xYzAbCdEfGhIjKlMnOpQr", "rk_live_"),
    ("glpat-" + "xYz12AbC3dEf4GhI5jKl", "glpat-"),
    # The gateway's own ('mcp-gateway token new': mgw_ + token_urlsafe(32)): a caller
    # pasting it into a tool's argument had it stored whole in the call record.
    ("mgw_" + "bfeLYOrVtZNjCNMKu2pfkhHpxV6jNMd0p39bW5hNDlo", "mgw_"),
    ("mgw_" + "qnHUh3xgKgucwemltBMyXTl0R_xibQqDyHnP_8etGvs", "mgw_"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIA"),
    ("ASIAY34FZKBOKMUTVV7A", "ASIA"),
    ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIza"),
    (JWT, "eyJ"),
    (PEM, "-----BEGIN RSA PRIVATE KEY-----"),
]


@pytest.mark.parametrize("token, kept", TOKENS)
def test_a_well_known_token_format_is_masked_in_any_text(token: str, kept: str) -> None:
    for text, expected in [
        (token, f"{kept}***"),
        (f"tool failed: bad input {token}; try again",
         f"tool failed: bad input {kept}***; try again"),
        (f"input_value='{token}', input_type=str", f"input_value='{kept}***', input_type=str"),
        (f'{{"text": "{token}"}}', f'{{"text": "{kept}***"}}'),
        # After an escape, as JSON and repr write a string (an argument echoed in an
        # error, a JSON body logged): the escape's letter was taken for the token's.
        (json.dumps({"text": "line\n" + token}), json.dumps({"text": f"line\n{kept}***"})),
        (repr("a\tb\r" + token), repr(f"a\tb\r{kept}***")),
        (json.dumps("caf\u00e9 " + "\u00e9" + token), json.dumps(f"caf\u00e9 \u00e9{kept}***")),
    ]:
        assert mask_text(text) == expected


def test_a_private_key_cut_short_is_masked_to_the_end() -> None:
    text = "loaded: " + PEM[:90]
    assert mask_text(text) == "loaded: -----BEGIN RSA PRIVATE KEY-----***"


@pytest.mark.parametrize("text", [
    "The gateway restarts a server whose entry changed; its tools stay listed meanwhile.",
    f"request {uuid.UUID(int=0x1234567890ABCDEF1234567890ABCDEF)} ended",
    f"sha256 {hashlib.sha256(b'x').hexdigest()} / sha1 {hashlib.sha1(b'x').hexdigest()}",
    "/home/user/.cache/gh_pages/ghp_notes/github_pat_readme.md",
    "C:\\Users\\ask-admin\\desk-0123456789abcdef0123456789abcdef0123456789",
    base64.b64encode(b"an ordinary sentence, base64-encoded for transport" * 3).decode(),
    base64.urlsafe_b64encode(b'{"kind": "not a token", "n": 12345678901234}').decode(),
    "task-risk-disk-usage-sk-learn-compatible-estimator-interface",
    "ghp_short sk-short xoxb- glpat-short AKIA1234 AIzaShort eyJhbGci",
    "ASIAN MARKETS OPENED; AKIAIOSFODNN7EXAMPLEZZZ is too long for a key id",
    "pk_live_4eC39HqLyjWDarjtT1zdp7dc is publishable, not secret",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
    "ticket TASK-1234: sk-ant was mentioned, nothing else",
    "locales: sk-SK, cs-CZ; the keys start sk-proj-, sk-svcacct- or sk-ant-api03-",
    "the sk-hynix-2024-q3-results-summary slug and sk-CamelCaseWordsWithoutDigits",
    "LiteLLM's example master key sk-1234 is a placeholder",
    "the dashboard's cookie mgw_dashboard_8765 and a short mgw_token_example",
])
def test_ordinary_text_is_left_as_written(text: str) -> None:
    assert mask_text(text) == text


@pytest.mark.parametrize("unit, expected", [
    ("ghp_", None), ("sk-", None), ("eyJa.", None), ("AKIA", None), ("sk-" + "a" * 19 + " ", None),
    ("sk-admin-dashboard-settings ", None),
    ("sk-Ab3dE5fG7hJ9kL1mN2pQ ", "sk-*** " * (1_000_000 // 24)),
    ("xoxb-", "xoxb-***"), ("github_pat_", "github_pat_***"), ("sk-a1", "sk-***"),
    ("-----BEGIN PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----***"),  # no END: to the end
    ("eyJaaaaaaaa.", "eyJ***." * 27_777 + "eyJaaaaaaaa." * 2),
])
def test_a_megabyte_of_near_matches_is_scanned_in_one_pass(unit: str,
                                                           expected: str | None) -> None:
    """Linear on adversarial input (no timing asserted: a quadratic scan of 1 MB would
    not end within the test's timeout)."""
    text = unit * (1_000_000 // len(unit))
    assert mask_text(text) == (text if expected is None else expected)


def test_the_log_filter_masks_a_token_in_a_message() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "upstream said %s",
                               (f"bad token {GITHUB}",), None)
    SecretLogFilter().filter(record)
    assert record.getMessage() == "upstream said bad token ghp_***"


def test_recorded_argument_values_are_masked_by_format() -> None:
    assert redact_arguments({"text": GITHUB, "items": [f"x {JWT}"], "n": 3}) == {
        "text": "ghp_***", "items": ["x eyJ***"], "n": 3}


def echo_server() -> FastMCP[Any]:
    mcp = FastMCP("echo")

    @mcp.tool
    def echo_fail(text: str) -> str:
        raise ToolError(f"cannot handle {text!r}")

    return mcp


async def test_a_token_a_tool_echoes_reaches_neither_the_host_nor_the_record(
        tmp_path: Path) -> None:
    """The trial's reproduction: ``echo_fail({"text": "ghp_..."})``."""
    gateway = make_gateway({"echo": memory_entry("echo")}, {"echo": echo_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        result = await client.call_tool("echo_echo_fail", {"text": GITHUB},
                                        raise_on_error=False)
        assert result.is_error
        assert result.content[0].text.endswith("cannot handle 'ghp_***'"), result
        (call,) = (await client.call_tool("gateway_calls", {})).data.calls
    assert call.error.endswith("cannot handle 'ghp_***'"), call.error
    assert '"text": "ghp_***"' in call.arguments, call.arguments
    assert GITHUB not in repr(call)


def test_a_private_key_a_server_prints_to_stderr_is_masked_line_by_line() -> None:
    """The stderr tail masks each line as it comes: a key's body lines hold no header."""
    tail = StderrTail(20)
    tail.feed(f"loading key\n{PEM}\nkey loaded\n-----BEGIN PRIVATE KEY-----\n".encode())
    tail.feed(b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nProc-Type: 4,ENCRYPTED\n\nthen it crashed\n")
    assert tail.tail() == [
        "loading key", "-----BEGIN RSA PRIVATE KEY-----***", "***", "***",
        "-----END RSA PRIVATE KEY-----", "key loaded",
        "-----BEGIN PRIVATE KEY-----***", "***", "***", "***",
        "then it crashed"]  # a key cut short: its lines, not the rest
