"""Secrets a caller sends that no registry knows, echoed back where the gateway shows them.

Found by running a real gateway with secrets planted in every place (review23): a
tool whose upstream echoes an object argument in its ``isError`` text (a password
nested in ``options``) reached the host whole; FastMCP's DEBUG line "Handler called:
call_tool %s with %s" wrote every call's arguments (a password, an admin add's
``--token`` argument) to the gateway's log; a refused URL under another scheme
(``ftp://user:password@...``) was echoed whole in the config error (REST 422, the
admin tools' refusal, ``mcp-gateway check``).
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.telemetry.arguments import mask_argument_values
from fast_mcp_gateway.telemetry.log_filter import SecretLogFilter
from fast_mcp_gateway.telemetry.redaction import mask_text
from tests.fixtures import make_gateway, memory_entry


def _echoing_server() -> FastMCP[Any]:
    mcp: FastMCP[Any] = FastMCP("echoing")

    @mcp.tool
    def configure(options: dict[str, Any]) -> str:
        raise ToolError(f"bad options {options!r}")

    @mcp.tool
    def ok(text: str) -> str:
        return text

    return mcp


@pytest.mark.anyio
async def test_an_isError_text_echoing_nested_credentials_reaches_the_host_masked() -> None:
    password = f"pw-{secrets.token_hex(8)}"
    token = f"tk-{secrets.token_hex(8)}"
    extra = f"ex-{secrets.token_hex(8)}"
    gateway = make_gateway({"echo": memory_entry("echo")}, {"echo": _echoing_server()})
    async with Client(gateway.server) as client:
        nested = await client.call_tool("echo_configure", {"options": {
            "Password": password, "list": [{"access_token": token}], "mode": "fast"}},
            raise_on_error=False)
        # An argument the tool does not take: pydantic's refusal quotes its value.
        unexpected = await client.call_tool("echo_ok", {"text": "x", "api_key": extra},
                                            raise_on_error=False)
    texts = [block.text for result in (nested, unexpected)  # type: ignore[union-attr]
             for block in result.content]
    assert nested.is_error and unexpected.is_error
    assert "'mode': 'fast'" in texts[0]  # the rest of the echo is kept
    for value in (password, token, extra):
        assert not any(value in text for text in texts), texts


def test_the_log_filter_masks_credentials_in_a_logged_structure() -> None:
    password, token, flag = (f"v-{secrets.token_hex(8)}" for _ in range(3))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretLogFilter())
    logger = logging.getLogger("fastmcp.server.mixins.mcp_operations.review23")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        # FastMCP's own words for each tool call (mixins/mcp_operations.py).
        logger.debug("[gw] Handler called: call_tool %s with %s", "gateway_add_server", {
            "name": "x", "config": {"command": "/bin/x", "args": ["--password", password],
                                    "headers": {"Authorization": f"Bearer {token}"}},
            "deep": [{"client_secret": flag}], "count": 3})
        logger.debug("%s", {"token": token})
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "'name': 'x'" in written and "'count': 3" in written
    for value in (password, token, flag):
        assert value not in written, written


def test_a_refused_url_of_another_scheme_is_shown_without_its_credentials() -> None:
    password = f"pw{secrets.token_hex(8)}"
    with pytest.raises(ConfigError) as refused:
        parse_config({"servers": {"r": {"url": f"ftp://user:{password}@h.test/x"}}},
                     source="test")
    assert "is not an http(s) URL" in str(refused.value)
    assert password not in str(refused.value)


@pytest.mark.parametrize("value", [
    'zq"quoted-5be0c1', "zq\\back\\slash-9d2a7e", "pässwörd-40c3f8"])
def test_a_secret_is_masked_as_json_and_repr_write_it(value: str) -> None:
    parse_config({"servers": {"e": {"command": "x", "env": {"API_TOKEN": value}}}},
                 source="test")
    # A server printing its environment as JSON (to stderr, in an error), a dict quoted.
    for text in (json.dumps({"API_TOKEN": value}), repr({"API_TOKEN": value}),
                 json.dumps({"API_TOKEN": value}, ensure_ascii=False)):
        shown = mask_text(text)
        assert "***" in shown and value not in shown
        assert json.dumps(value)[1:-1] not in shown and repr(value)[1:-1] not in shown


def test_a_non_ascii_password_argument_is_masked_as_json_writes_it() -> None:
    password = 'clé"' + secrets.token_hex(6)  # escaped, its é kept
    echoed = "refused " + json.dumps({"password": password}, ensure_ascii=False)
    assert mask_argument_values(echoed, {"password": password}) == \
        'refused {"password": "***"}'  # whole: not only its cut end


def test_a_credential_written_in_the_command_is_masked_where_it_is_shown() -> None:
    token, key = "zqCMD1a2b3c4d5e6f", "zqCMD2b3c4d5e6f7"
    # A shell line in 'command' (copied from a README): runs as no program, and its
    # "command not found" carried the token to the log, last_error and `check`.
    try:  # refused as a command line where its words name a program, else run
        parse_config({"servers": {"a": {"command": f"GITHUB_TOKEN={token} npx -y srv"}}},
                     source="test")
    except ConfigError as exc:
        assert "is not a program" in str(exc) and token not in str(exc)
    assert token not in mask_text(f"command not found: GITHUB_TOKEN={token} npx -y srv")
    with pytest.raises(ConfigError) as refused:
        parse_config({"servers": {"b": {"command": f"npx --api-key={key} -y foo"}}},
                     source="test")
    assert "is not a program" in str(refused.value) and key not in str(refused.value)


def _flag_echoing_server() -> FastMCP[Any]:
    mcp: FastMCP[Any] = FastMCP("flags")

    @mcp.tool
    def connect(host: str, auth_method: str, token_type: str, password: str) -> str:
        raise ToolError(f"cannot reach {host}: it is nonexistent or refused auth_method "
                        f"{auth_method!r} (basically it allows none); token_type "
                        f"{token_type}: true; password={password}")

    return mcp


@pytest.mark.anyio
async def test_an_isError_text_keeps_its_words_that_merely_hold_a_short_value() -> None:
    # review24: {"auth_method": "none"} turned "nonexistent" into "***xistent" and a
    # string "true" masked every "true" of the text on its way to the host.
    gateway = make_gateway({"f": memory_entry("f")}, {"f": _flag_echoing_server()})
    async with Client(gateway.server) as client:
        result = await client.call_tool("f_connect", {
            "host": "db.test", "auth_method": "basic", "token_type": "true",
            "password": "pw12"}, raise_on_error=False)
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error
    assert text == ("cannot reach db.test: it is nonexistent or refused auth_method '***' "
                    "(basically it allows none); token_type true: true; password=***"), text
    with_none = mask_argument_values("nonexistent, or none", {"auth_mode": "nonex"})
    assert with_none == "nonexistent, or none"
