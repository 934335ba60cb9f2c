"""A call's error text is masked with the values of its credential-like arguments: an
upstream that echoes its input in an error (pydantic's ``input_value=...``, a tool's own
f-string) must not put a password into the call log.  ``mask_argument_values`` is the
helper the call recorder applies to ``Invocation.error``."""

from __future__ import annotations

import pydantic
import pytest

from fast_mcp_gateway.telemetry.arguments import mask_argument_values


class Login(pydantic.BaseModel):
    user: str
    password: str


def _pydantic_error(arguments: dict[str, object]) -> str:
    try:
        Login.model_validate(arguments)
    except pydantic.ValidationError as exc:
        return str(exc)
    raise AssertionError("expected a validation error")


def test_pydantic_echoes_of_a_password_are_masked() -> None:
    arguments = {"password": "hunter2-secret"}  # user missing: pydantic echoes the dict
    error = _pydantic_error(arguments)
    assert "hunter2-secret" in error  # what an upstream sends back
    masked = mask_argument_values(error, arguments)
    assert "hunter2-secret" not in masked
    assert "Field required" in masked  # the rest of the explanation is kept


@pytest.mark.parametrize("value, echoed", [
    ("it's \"x\" 42", "it\\'s \"x\" 42"),          # repr escapes the quote
    ('say "hi" 9f8e', 'say \\"hi\\" 9f8e'),       # JSON escapes the quotes
    (12345678, "12345678"),                          # a number, written out
])
def test_every_written_form_of_the_value_is_masked(value: object, echoed: str) -> None:
    text = f"bad api_key {echoed} (code 7)"
    assert mask_argument_values(text, {"api_key": value}) == "bad api_key *** (code 7)"


def test_nested_and_listed_credentials_are_masked_and_other_values_kept() -> None:
    arguments = {"user": "alice-the-user", "auth": {"token": "tok-0001", "scheme": "bearer-x"},
                 "items": [{"secret": "s3cr3t-1"}], "count": 1234}
    text = "alice-the-user: tok-0001 bearer-x s3cr3t-1 1234"
    # Everything under a credential-like key (auth: the whole mapping) is masked; the
    # user name and the count are not credentials.
    assert mask_argument_values(text, arguments) == "alice-the-user: *** *** *** 1234"


def test_nothing_to_mask_leaves_the_text_alone() -> None:
    assert mask_argument_values("failed", {"q": "x"}) == "failed"
    assert mask_argument_values("failed", None) == "failed"
    assert mask_argument_values("", {"password": "abcd"}) == ""
    # Short values would mask common substrings everywhere (MIN_SECRET_LENGTH).
    assert mask_argument_values("no pin 12 here", {"pin": "12", "password": "ab"}) == (
        "no pin 12 here")


class Strict(pydantic.BaseModel, extra="forbid"):
    user: str


@pytest.mark.parametrize("arguments", [
    {"password": "sk-live-" + "A1b2C3d4E5f6G7h8I9j0" * 3},       # echoed in a dict, cut
    {"user": "alice", "api_key": "sk-proj-" + "Z9y8X7w6V5u4T3s2R1q0" * 3},  # extra, cut
])
def test_a_long_value_pydantic_cuts_short_is_masked_whole(arguments: dict[str, str]) -> None:
    try:
        (Login if "password" in arguments else Strict).model_validate(arguments)
    except pydantic.ValidationError as exc:
        error = str(exc)
    secret = next(v for k, v in arguments.items() if k != "user")
    assert "..." in error and secret not in error  # pydantic's input_value is cut short
    masked = mask_argument_values(error, arguments)
    for piece in (secret[:12], secret[-12:], secret[20:32]):
        assert piece not in masked, masked
    # The same cut pieces in a tool's own text ("key sk-live-...J0") are masked too.
    own = f"rejected key {secret[:20]}...{secret[-10:]}"
    assert mask_argument_values(own, arguments) == "rejected key ***...***"


def test_a_small_number_under_a_credential_key_is_not_masked_everywhere() -> None:
    text = "max_tokens must be <= 1024, got 2048 at line 12"
    assert mask_argument_values(text, {"max_tokens": 2048}) == text
    assert mask_argument_values("pin 12345678 refused", {"password": 12345678}) == (
        "pin *** refused")
