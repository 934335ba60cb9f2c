"""A credential a host passes to a tool is masked where its upstream may echo it first.

A server that prints its input to stderr as it crashes put a host's password in the
stderr tail, ``last_error``, the health records and the gateway's log: those texts are
made (and masked) before the call's own error, which alone was masked with the call's
arguments.  Values of credential-named arguments of tools whose schema declares such a
property are now masked from the call's start (``redaction.RECENT``, bounded).
"""

from __future__ import annotations

import json
import logging
import secrets

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.telemetry.arguments import names_credentials, redact_arguments
from fast_mcp_gateway.telemetry.redaction import MASK, RecentSecrets, mask_text
from tests.fixtures import make_gateway, stdio_entry, until

pytestmark = pytest.mark.anyio


async def test_a_password_a_crashing_server_prints_is_masked_everywhere(
        caplog: pytest.LogCaptureFixture) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    gateway = make_gateway({"leaky": stdio_entry("leaky.py")})
    caplog.set_level(logging.INFO)
    async with Client(gateway.server) as client:
        with pytest.raises(ToolError) as failed:
            await client.call_tool("leaky_login", {"user": "ada", "password": password})
        service = gateway.manager.get("leaky")

        def detail() -> str:
            replica = service.replicas[0]
            return json.dumps([replica.stderr.tail(50), replica.last_error],
                              default=str)

        await until(lambda: "fatal: login failed" in detail())
        shown = detail()
        listed = (await client.call_tool("gateway_server_detail", {"name": "leaky"})).data
    assert password not in shown and f"ada:{MASK}" in shown, shown
    assert password not in json.dumps(listed, default=str)
    assert password not in str(failed.value)
    assert password not in caplog.text
    assert mask_text(f"later: {password}") == f"later: {MASK}"


def test_only_the_latest_values_are_kept() -> None:
    """A host sending a new password per call cannot grow the registry: the oldest go."""
    recent = RecentSecrets(limit=3)
    recent.add(["first-value", "short", "second-value"])  # "short" is under MIN_LENGTH
    recent.add(["third-value", "fourth-value"])
    assert "first-value" not in recent and "short" not in recent
    assert recent.mask("second-value third-value fourth-value first-value") == (
        f"{MASK} {MASK} {MASK} first-value")
    recent.add(["second-value", "fifth-value"])  # seen again: the newest, kept
    assert "second-value" in recent and "third-value" not in recent
    assert recent.mask("x" * 50) == "x" * 50


def test_a_schema_names_a_credential_at_any_depth() -> None:
    assert names_credentials({"type": "object", "properties": {"password": {}}})
    assert names_credentials({"properties": {"login": {"properties": {"api_key": {}}}}})
    assert names_credentials({"properties": {"items": {"items": {"properties": {
        "token": {}}}}}})
    assert not names_credentials({"properties": {"text": {}, "user": {}}})
    assert not names_credentials(None)


def test_an_author_is_no_credential() -> None:
    """"auth" in a key is a credential's (auth_token, oauth, Authorization), but an
    ``author`` or an ``authority`` was recorded as *** and, through its tool's schema,
    would have been masked in every log line for a while."""
    shown = redact_arguments({"author": "Jane Austen", "authority": "example.test:443",
                              "coauthors": ["Ada"], "auth": "s3cr3t-value",
                              "oauth_token": "tok-123456", "Authorization": "Bearer x"})
    assert shown == {"author": "Jane Austen", "authority": "example.test:443",
                     "coauthors": ["Ada"], "auth": MASK, "oauth_token": MASK,
                     "Authorization": MASK}
    assert not names_credentials({"properties": {"author": {}, "title": {}}})
    assert names_credentials({"properties": {"author": {}, "auth_header": {}}})
