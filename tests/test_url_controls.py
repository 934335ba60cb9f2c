"""A server URL holding a control character (CR/LF, TAB, NUL, DEL...) is refused where
it is validated, naming the field and the character: it passed validation
(``gateway_update_server`` stored it) and failed only at connect, with httpx's "Invalid
non-printable ASCII character in URL"."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client
from mcp.types import TextContent

from fast_mcp_gateway.config.loader import parse_config
from fast_mcp_gateway.errors import ConfigError
from tests.fixtures import alpha_server, make_gateway, memory_entry


@pytest.mark.parametrize(("char", "shown"), [("\r\n", r"'\r' (U+000D)"),
                                             ("\n", r"'\n' (U+000A)"),
                                             ("\t", r"'\t' (U+0009)"),
                                             ("\x7f", r"'\x7f' (U+007F)"),
                                             ("\x85", r"'\x85' (U+0085)")])
def test_a_url_with_a_control_character_is_refused_naming_it(char: str, shown: str) -> None:
    url = f"http://127.0.0.1:9/mcp{char}X-Injected: 1"
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"api": {"url": url}}}, source="servers.yaml")
    message = str(info.value)
    assert "server 'api', field 'url': " in message
    assert f"holds the control character {shown} at position 22" in message, message
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"api": {"instances": [{"url": "http://127.0.0.1:9/mcp"},
                                                        {"url": url}]}}}, source="f.yaml")
    assert "field 'instances[1].url': " in str(info.value)


@pytest.mark.anyio
async def test_an_update_to_such_a_url_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        refused = await client.call_tool("gateway_update_server", {
            "name": "alpha", "config": {"url": "http://127.0.0.1:9/in-memory/alpha\r\nX: 1"}},
            raise_on_error=False)
        assert refused.is_error
        [text] = [c.text for c in refused.content if isinstance(c, TextContent)]
        assert r"field 'url': holds the control character '\r' (U+000D)" in text
        detail = await client.call_tool("gateway_server_detail", {"name": "alpha"})
        assert detail.structured_content is not None
        assert "\r" not in str(detail.structured_content)


def test_a_header_value_with_a_control_character_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"api": {"url": "http://127.0.0.1:9/mcp",
                                          "headers": {"X-Key": "a\x01b"}}}}, source="f.yaml")
    assert r"field 'headers.X-Key': holds the control character '\x01' (U+0001)" in str(
        info.value)
    parse_config({"servers": {"api": {"url": "http://127.0.0.1:9/mcp",
                                      "headers": {"X-Key": "a\tb"}}}}, source="f.yaml")
