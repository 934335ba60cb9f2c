"""Defects a team operator's trial found (HTTP gateways on one PostgreSQL, scoped tokens,
runtime registrations, reloads, outages), each pinned by the cheapest test that shows it.
"""

from __future__ import annotations

import pytest

from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.telemetry.redaction import credential_args, mask_text


@pytest.mark.parametrize("line", [
    "echo boom API_KEY=sk-live-abcdef123 >&2; exit 3",
    "GITHUB_TOKEN=sk-live-abcdef123 exec npx -y @modelcontextprotocol/server-github",
    "export GITHUB_TOKEN='sk-live-abcdef123'&& npx -y server",
    "npx -y some-server --api-key sk-live-abcdef123 --verbose",
])
def test_a_credential_inside_a_shell_line_is_masked(line: str) -> None:
    """``command: sh, args: ["-c", "GITHUB_TOKEN=ghp_... npx ..."]`` (a common way to pass
    a key in Claude Desktop files) kept the key in clear: in the shown settings, the
    audit log, and every stderr tail, last_error and health record quoting it, because
    only a whole argument of the form ``NAME=value`` was recognised."""
    assert credential_args(["-c", line]) == ["sk-live-abcdef123"]
    config = ServerConfig(name="gh", command="sh", args=("-c", line))
    assert "sk-live" not in str(config.redacted())
    assert mask_text(f"stderr: {line}") == f"stderr: {line.replace('sk-live-abcdef123', '***')}"


def test_a_shell_line_without_credentials_registers_nothing() -> None:
    assert credential_args(["-c", "cd /srv && exec npx -y server --port 8080 --auth-mode=none"]
                           ) == []
