"""``sk-`` keys are masked by their shape, names that start ``sk-`` are not.

The ``sk-`` rule masked any 16 characters after a known kind (``sk-admin-``,
``sk-proj-``...) and any 32 with a digit after ``sk-``: a page or setting's name such as
``sk-admin-dashboard-settings`` or ``sk-hynix-2024-q3-results-summary-report`` became
``sk-admin-***`` in the logs and the call records.  A key's body is random (base64url,
alphanumerics or hex, 20 to 160 characters); a name's is words joined by ``-`` or
``_``.  Properties both ways: keys in the issuers' formats are always masked, names made
of words never are.
"""

from __future__ import annotations

import base64
import logging

from hypothesis import assume, given
from hypothesis import strategies as st

from fast_mcp_gateway.telemetry.arguments import redact_arguments
from fast_mcp_gateway.telemetry.log_filter import SecretLogFilter
from fast_mcp_gateway.telemetry.redaction import mask_text, mask_tokens

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# The issuers' formats: (prefix kept when masked, body).  A key comes from a random
# generator, so its body has many distinct characters (a run of one letter is no key).
KEYS = st.one_of(
    # OpenAI: project, service account, admin and legacy-user keys (~160 characters).
    st.tuples(st.sampled_from(["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-"]),
              st.binary(min_size=30, max_size=120).map(_b64url)),
    # OpenAI's first keys: 48 alphanumerics.
    st.tuples(st.just("sk-"), st.text(ALNUM, min_size=48, max_size=48)),
    # Anthropic: 93 base64url characters and "AA".
    st.tuples(st.sampled_from(["sk-ant-api03-", "sk-ant-admin01-", "sk-ant-oat01-"]),
              st.binary(min_size=70, max_size=70).map(lambda b: _b64url(b)[:93] + "AA")),
    # OpenRouter: 64 hex digits; DeepSeek: 32.
    st.tuples(st.just("sk-or-v1-"), st.binary(min_size=32, max_size=32).map(bytes.hex)),
    st.tuples(st.just("sk-"), st.binary(min_size=16, max_size=16).map(bytes.hex)),
)


@given(KEYS, st.sampled_from(["{}", "invalid key {}; check it", "'{}'", '{{"key": "{}"}}',
                              "Authorization: x-api-key {}."]))
def test_a_key_in_an_issuers_format_is_always_masked(key: tuple[str, str], where: str
                                                     ) -> None:
    kept, body = key
    assume(len(set(body)) >= 12)
    text = where.format(kept + body)
    masked = mask_text(text)
    assert body not in masked, masked
    assert masked == where.format(f"{kept}***"), masked


_LOWER = st.from_regex(r"[a-z]{1,12}", fullmatch=True)
WORD = st.one_of(
    _LOWER,
    _LOWER.map(str.capitalize),  # Dashboard
    st.lists(_LOWER.filter(lambda w: len(w) >= 3), min_size=2, max_size=3).map(
        lambda ws: ws[0] + "".join(w.capitalize() for w in ws[1:])),  # camelCase
    st.from_regex(r"[A-Z]{2,5}", fullmatch=True),  # README, HTTP
    st.from_regex(r"[a-z]{1,3}[0-9]{1,2}", fullmatch=True),  # q3, v2
    st.integers(0, 99_999_999).map(str),  # 2024
)


@given(st.sampled_from(["sk-", "sk-admin-", "sk-proj-", "sk-svcacct-", "sk-None-",
                        "sk-ant-api03-", "sk-or-v1-"]),
       st.lists(WORD, min_size=2, max_size=10), st.sampled_from(["-", "_"]))
def test_a_name_made_of_words_is_never_masked(prefix: str, words: list[str], joint: str
                                              ) -> None:
    name = prefix + joint.join(words)
    for text in (name, f"opened {name} in the dashboard", f"'{name}',", f"{name}-"):
        assert mask_tokens(text) == text


def test_the_trials_names_stay_in_logs_and_records() -> None:
    """The reproduction: a tool's argument naming a settings page."""
    for name in ("sk-admin-dashboard-settings", "sk-proj-settings-overview-page",
                 "sk-hynix-2024-q3-results-summary-report", "sk-None-of-the-above-applies"):
        assert redact_arguments({"page": name}) == {"page": name}
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "opened %s", (name,), None)
        SecretLogFilter().filter(record)
        assert record.getMessage() == f"opened {name}"
    # A key with the same prefix is still masked there.
    key = "sk-admin-" + "Qm9vdFN0cmFwS2V5LTE3Mzg0NTYxMjM0NTY3ODkw"
    assert redact_arguments({"page": key}) == {"page": "sk-admin-***"}
