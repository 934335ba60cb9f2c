"""A server name with accents keeps its letters in its namespace: "Ümlaut" was
namespaced "_mlaut" (each character outside [A-Za-z0-9_-] became "_"); now the accent
is dropped, not the letter (``config.names.host_safe``).  ASCII names are namespaced as
they were."""

from __future__ import annotations

from typing import Any

import pytest
from fastmcp import Client, FastMCP

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.config.names import host_safe
from fast_mcp_gateway.errors import ConfigError
from tests.fixtures import make_gateway, memory_entry

pytestmark = pytest.mark.anyio


def test_namespaces_of_accented_names_keep_their_letters() -> None:
    servers = {name: {"command": "echo"} for name in
               ("Ümlaut", "Łódź café", "天气", "my server.v2", "a-b_C9")}
    config = parse_config({"servers": servers})
    assert {name: s.effective_namespace for name, s in config.servers.items()} == {
        "Ümlaut": "Umlaut", "Łódź café": "Lodz_cafe", "天气": "__",
        "my server.v2": "my_server_v2", "a-b_C9": "a-b_C9"}
    assert host_safe("\ufb01le \uff26\uff55\uff4c\uff4c") == "file_Full"   # NFKD forms
    assert host_safe("Straße Ærø") == "Strasse_AEro"   # letters NFKD keeps whole


def test_two_names_written_alike_in_ascii_are_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="namespace 'Uber' is already used by server "
                                          "'Über'; give one of them another 'namespace:'"):
        parse_config({"servers": {"Über": {"command": "echo"}, "Uber": {"command": "echo"}}})


def weather() -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP("wetter")

    @server.tool(name="vorhersage_für_morgen")
    def forecast() -> str:
        return "sonnig"

    return server


async def test_a_host_sees_and_calls_the_tools_by_their_ascii_names() -> None:
    gateway = make_gateway({"Ümlaut": memory_entry("Ümlaut")}, {"Ümlaut": weather()})
    async with Client(gateway.server) as client:
        names = [tool.name for tool in await client.list_tools()]
        assert "Umlaut_vorhersage_fur_morgen" in names, names
        result = await client.call_tool("Umlaut_vorhersage_fur_morgen", {})
        assert result.data == "sonnig"
