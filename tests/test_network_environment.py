"""A stdio server gets the machine's proxy and certificate settings, and no other secret.

The MCP SDK's stdio client passes a server only HOME, LOGNAME, PATH, SHELL, TERM and
USER: ``npx -y @modelcontextprotocol/server-...`` behind a TLS-inspecting firewall
(``NODE_EXTRA_CA_CERTS``) or a proxy (``HTTPS_PROXY``) then hung retrying its download
through the gateway, where the same command typed in the user's shell worked.
"""

from __future__ import annotations

import pytest
from fastmcp import Client

from fast_mcp_gateway.upstream import processes
from tests.fixtures import make_gateway, stdio_entry

pytestmark = pytest.mark.anyio

NETWORK = {"NODE_EXTRA_CA_CERTS": "/etc/corp/ca.pem", "HTTPS_PROXY": "http://127.0.0.1:3128",
           "no_proxy": "localhost,127.0.0.1", "SSL_CERT_FILE": "/etc/corp/bundle.pem"}


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in NETWORK.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-servers-0123456789")
    monkeypatch.setenv("HTTP_PROXY", "")  # set but empty: not passed on


async def test_a_stdio_server_gets_the_network_settings_and_nothing_else(network: None) -> None:
    gateway = make_gateway({"env": stdio_entry("env_echo.py", env={"OWN": "its own"})})
    async with Client(gateway.server) as client:
        async def env(name: str) -> str:
            return str((await client.call_tool("env_env", {"name": name})).data)

        for key, value in NETWORK.items():
            assert await env(key) == value, key
        assert await env("OWN") == "its own"
        assert await env("AWS_SECRET_ACCESS_KEY") == "<unset>"
        assert await env("HTTP_PROXY") == "<unset>"


def test_a_server_started_early_gets_them_too(network: None) -> None:
    env = processes.default_environment()
    assert {k: env.get(k) for k in NETWORK} == NETWORK
    assert "AWS_SECRET_ACCESS_KEY" not in env and "HTTP_PROXY" not in env
