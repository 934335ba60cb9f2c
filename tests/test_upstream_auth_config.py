"""The ``auth:`` block of a url: server (config/upstream_auth.py): what it accepts, and
each refusal naming the server, the field and the fix (docs/design/upstream-oauth.md 2)."""

from __future__ import annotations

from typing import Any

import pytest

from fast_mcp_gateway.config.loader import parse_config, parse_registration
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.telemetry.redaction import mask_text

URL = "https://tickets.example.com/mcp"
CC = {"type": "client_credentials", "client_id": "svc", "client_secret": "${SECRET}",
      "issuer": "https://login.example.com/realms/ops"}
ENV = {"SECRET": "the-client-secret-value"}


def problem(entry: dict[str, Any], **options: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"servers": {"x": entry}}, source="servers.yaml", environ=ENV,
                     **options)
    (issue,) = caught.value.issues
    assert issue.server == "x"
    return str(issue)


def test_a_client_credentials_block_is_read_and_its_secret_kept_out_of_sight() -> None:
    config = parse_config({"servers": {"x": {"url": URL, "auth": {
        **CC, "scopes": ["mcp:tools"], "token_endpoint_auth_method": "client_secret_post"}}}},
        source="servers.yaml", environ=ENV)
    auth = config.servers["x"].auth
    assert auth is not None and auth.client_secret == "the-client-secret-value"
    assert auth.scopes == ("mcp:tools",)
    shown = config.servers["x"].redacted()
    assert shown["auth"]["client_secret"] == "***" and shown["auth"]["client_id"] == "svc"
    assert "the-client-secret-value" not in mask_text("error: the-client-secret-value")
    # A literal secret (not ${VAR}) is masked in texts too.
    parse_config({"servers": {"y": {"url": URL, "auth": {
        **CC, "client_secret": "literal-secret-in-the-file"}}}}, source="servers.yaml")
    assert "literal-secret-in-the-file" not in mask_text("x literal-secret-in-the-file")


def test_an_oauth_block_is_read() -> None:
    config = parse_config({"servers": {"x": {"url": URL, "auth": {
        "type": "oauth", "scopes": ["read"], "client_id": "pre-registered",
        "client_secret": "${SECRET}", "issuer": "https://login.example.com"}}}},
        source="servers.yaml", environ=ENV)
    auth = config.servers["x"].auth
    assert auth is not None and auth.type == "oauth" and auth.per == "gateway"
    assert config.servers["x"].redacted()["auth"]["client_secret"] == "***"


def test_http_token_urls_are_accepted_on_loopback_only() -> None:
    for url in ("http://127.0.0.1:9000/token", "http://localhost/token", "http://[::1]/t"):
        parse_config({"servers": {"x": {"url": URL, "auth": {
            **CC, "issuer": None, "token_url": url}}}}, source="s", environ=ENV)


@pytest.mark.parametrize(("entry", "field", "words"), [
    ({"command": "server", "auth": CC}, None,
     "auth: applies to servers reached by url:; a stdio server takes its credentials from env:"),
    ({"url": URL, "headers": {"Authorization": "Bearer x"}, "auth": CC}, None,
     "both auth: and headers.Authorization set the upstream's Authorization header; "
     "remove one"),
    ({"url": URL, "headers": {"X-User": "${caller.token}"}, "auth": CC}, None,
     "auth: and ${caller.token} / ${caller.claims.<name>} both choose the upstream "
     "credential; keep one"),
    ({"url": URL, "auth": {**CC, "client_secret": None}}, "auth",
     "type client_credentials needs client_id and client_secret"),
    ({"url": URL, "auth": {**CC, "issuer": None}}, "auth",
     "give issuer (its metadata names the token endpoint) or token_url"),
    ({"url": URL, "auth": {**CC, "issuer": None, "token_url": "http://login.example.com/t"}},
     "auth.token_url", "must be https:// (http:// only for 127.0.0.1, ::1 or localhost)"),
    ({"url": URL, "auth": {**CC, "issuer": "ftp://login.example.com"}}, "auth.issuer",
     "must be https://"),
    ({"url": URL, "auth": {**CC, "scopes": ["read", "write all"]}}, "auth.scopes",
     "scopes[1]: a scope is a non-empty word without spaces"),
    ({"url": URL, "auth": {**CC, "grant": "x"}}, "auth.grant", "unknown field"),
    ({"url": URL, "auth": {"type": "oauth", "client_id": "c", "client_secret": "s"}}, "auth",
     "issuer is required with client_secret, so the secret is only ever sent to that "
     "authorization server"),
    ({"url": URL, "auth": {"type": "oauth", "client_secret": "s", "issuer": "https://a"}},
     "auth", "client_secret needs client_id (the client it belongs to)"),
    ({"url": URL, "auth": {"type": "oauth", "token_url": "https://a/token"}}, "auth",
     "token_url and token_endpoint_auth_method are for type client_credentials"),
    ({"url": URL, "auth": {"type": "oauth", "per": "caller"}}, "auth.per", "gateway"),
    ({"url": URL, "auth": {**CC, "token_endpoint_auth_method": "private_key_jwt"}},
     "auth.token_endpoint_auth_method", "client_secret_basic"),
])
def test_each_wrong_auth_block_is_refused_with_the_fix(entry: dict[str, Any],
                                                      field: str | None, words: str) -> None:
    text = problem(entry)
    if field is not None:
        assert f"field '{field}'" in text
    assert words in text
    assert "the-client-secret-value" not in text


def test_a_runtime_registration_takes_the_secret_only_from_allowed_variables() -> None:
    text = problem({"url": URL, "auth": CC}, env_allow=["OTHER_*"])
    assert "environment variable 'SECRET' may not be used by a runtime registration" in text
    assert "auth.client_secret" in text


def test_a_variables_value_is_not_echoed_in_a_refusal() -> None:
    """A registration may use an allowed ``${VAR}`` without reading it: put in a ``tls:``
    path or ``auth.issuer``, its value is refused without being echoed (sec29: 'ca_file
    <the value>: no such file' answered an admin adding a server the variable's value)."""
    for entry, said in (
            ({"url": URL, "tls": {"ca_file": "${SECRET}"}}, "ca_file ***: no such file"),
            ({"url": URL, "tls": {"ca_file": "/etc/${SECRET}.pem"}},
             "ca_file /etc/***.pem: no such file"),
            ({"url": URL, "auth": {"type": "oauth", "issuer": "http://a.example/${SECRET}"}},
             "'http://a.example/***' must be https://")):
        for allowed in (None, ["SECRET"]):  # servers.yaml, a runtime registration
            text = problem(entry, env_allow=allowed)
            assert said in text and ENV["SECRET"] not in text, text
    with pytest.raises(ConfigError) as caught:  # added at run time: a relative path
        parse_registration("x", {"url": URL, "tls": {"ca_file": "${SECRET}"}},
                           source="gateway_add_server", env_allow=["SECRET"], environ=ENV)
    text = str(caught.value)
    assert "field 'tls.ca_file': *** is a relative path" in text and ENV["SECRET"] not in text, text
