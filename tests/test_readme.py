"""The README stays true to the code where it can be checked mechanically."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fast_mcp_gateway.admin import doc
from fast_mcp_gateway.admin.mcp_tools import ADMIN_TOOLS


@pytest.mark.anyio
async def test_the_admin_tool_table_is_generated_from_the_tools() -> None:
    rows = await doc.tool_rows()
    assert [name for name, *_ in rows] == [tool.name for tool in ADMIN_TOOLS]
    readme = doc.README.read_text(encoding="utf-8")
    assert doc.with_table(readme, doc.table(rows)) == readme, (
        "README.md's admin tool table differs from the tools: run "
        "'python -m fast_mcp_gateway.admin.doc'")


def test_the_table_generator_finds_drift(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{doc.START}\n| stale |\n{doc.END}\nrest\n")
    assert doc.main(["--check", "--readme", str(readme)]) == 1
    assert doc.main(["--readme", str(readme)]) == 0
    assert doc.main(["--check", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\nrest\n") and "| stale |" not in text
    assert "`gateway_pin_status`" in text and "`gateway_alert_history`" in text


def test_a_summary_is_the_first_sentence_on_one_line() -> None:
    assert doc.summary("Do a thing (see\nbelow). More text.\n\nSecond paragraph.") == \
        "Do a thing (see below)."
    assert doc.summary("a | b") == "a \\| b"


def _library_snippet() -> str:
    text = doc.README.read_text(encoding="utf-8")
    section = text.split("## Library mode", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_library_mode_snippet_lists_every_demo_server() -> None:
    """The README's library example, run as written against the shipped servers.yaml
    (real demo servers).  The start-up wait is 0 here: entering the client then waits
    for nothing, so only ``gateway.wait_ready`` can make the demo tools appear."""
    root = doc.README.parent
    env = {**os.environ, "MCP_GATEWAY_STARTUP_WAIT": "0"}
    done = subprocess.run([sys.executable, "-c", _library_snippet()], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ready_line, tools_line = done.stdout.splitlines()[-2:]
    assert ready_line == "ready: ('notes', 'clock') failed: {}", done.stdout
    tools = ast.literal_eval(tools_line)
    assert "gateway_list_servers" in tools
    assert any(t.startswith("notes_") for t in tools), tools
    assert any(t.startswith("clock_") for t in tools), tools


def test_every_gateway_url_in_the_readme_uses_the_default_port() -> None:
    """The README's gateway URLs (``serve`` without ``--port`` listens on the default)."""
    from fast_mcp_gateway.config.settings import GatewaySettings

    lines = doc.README.read_text(encoding="utf-8").splitlines()
    served = re.compile(r"127\.0\.0\.1:(\d+)/(?:mcp|sse|api/v1|metrics|ui|health|ready)\b")
    # ``url:`` lines configure upstream servers, which listen where they like.
    ports = {int(p) for line in lines if "url:" not in line for p in served.findall(line)}
    assert ports == {GatewaySettings.model_fields["port"].default}, ports


def _rest_table(readme: str) -> set[tuple[str, str]]:
    """(method, path) of each operation the README's REST API table names: a row's items
    are `METHOD /path`, `/last-segment` (the previous item's method and parent) or
    `/full/path` (the previous item's method)."""
    section = readme.split("## REST API", 1)[1].split("\n## ", 1)[0]
    out: set[tuple[str, str]] = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        method = path = ""
        for item in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
            parts = item.split()
            if len(parts) == 2:
                method, path = parts
            elif path and item.count("/") == 1:
                path = path.rsplit("/", 1)[0] + item
            else:
                path = item
            out.add((method, path))
    return out


def test_the_rest_table_names_every_operation() -> None:
    """The table lacked /pins and the seven /alerts operations: a reader of the REST
    section could not know they exist."""
    from fast_mcp_gateway.http.api import ENDPOINTS

    readme = doc.README.read_text(encoding="utf-8")
    served = {(ep.method, ep.path) for ep in ENDPOINTS}
    documented = _rest_table(readme)
    assert served - documented == set(), "README.md's REST API table lacks these"
    assert documented - served == set(), "README.md's REST API table names these in vain"


def test_every_http_error_code_is_in_the_readme() -> None:
    """The README's "Codes and statuses" lacked six codes the HTTP surfaces answer with
    (body_too_large, admin_disabled, authentication_required, misdirected_request,
    forbidden_origin, unknown_profile, internal_error): a client could not know them."""
    src = Path(__file__).parents[1] / "src" / "fast_mcp_gateway"
    answered: dict[str, str] = {}
    for path in sorted((src / "http").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for status, code in re.findall(r'ApiError\(\s*(\d{3}|status), "([a-z_]+)"', text):
            answered[code] = status
        answered |= dict.fromkeys(re.findall(r'"code": "([a-z_]+)"', text), "")
    assert len(answered) >= 20, answered  # the scan still finds them
    codes = doc.README.read_text(encoding="utf-8").split("Codes and statuses:")[1]
    codes = codes.split("\n\n")[0]
    missing = {code for code in answered if f"`{code}`" not in codes}
    assert missing == set(), f"README.md's codes and statuses lack {sorted(missing)}"
    for code, status in answered.items():
        if status.isdigit():
            assert f"`{code}` {status}" in codes, (code, status)


def test_every_npx_command_in_the_readme_runs_without_asking() -> None:
    """On a machine without the package, ``npx <package>`` asks "Need to install the
    following packages ... Ok to proceed? (y)" and waits: a command copied from the
    README stopped there (or, without a terminal, failed).  ``-y`` installs it as
    asked."""
    text = doc.README.read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S)
    commands = [line.strip() for block in blocks for line in block.splitlines()
                if line.strip().startswith("npx ")]
    assert commands, "the README's npx commands are not found any more"
    asking = [c for c in commands if c.split()[1] not in ("-y", "--yes")]
    assert asking == [], "these npx commands ask before installing: add -y"


def test_the_oauth_section_sends_a_one_shot_client_to_mcp_gateway_login() -> None:
    """A one-shot client (the Inspector CLI, a script) calling ``gateway_sign_in`` ends
    the stdio gateway it started, and the link with it: the README says to use
    ``mcp-gateway login`` there (oauth4: a user trial's link stopped working)."""
    readme = " ".join(doc.README.read_text(encoding="utf-8").split())
    section = readme[readme.index("## Signing in to remote servers (OAuth)"):]
    assert ("The link works only while the gateway that gave it runs: a one-shot client "
            "(the MCP Inspector CLI, a script) that starts the gateway on stdio, calls "
            "`gateway_sign_in` and exits ends that gateway, and the link with it") in section
    assert "From such a client, use `mcp-gateway login linear` instead" in section
