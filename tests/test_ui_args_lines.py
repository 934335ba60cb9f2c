"""The dashboard's add form takes one argument per line.  An operator typing a server's
arguments as in a terminal (``-m fast_mcp_gateway.demo.clock`` on one line) got the
server's own error -- Python's "Error while finding module specification for
' fast_mcp_gateway.demo.clock'" -- with nothing next to Arguments; now the field says
which line was passed as one argument and how to split it."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import httpx2
import pytest

from fast_mcp_gateway.ui.actions import _joined_args
from tests.fixtures import make_gateway, serve_http

pytestmark = pytest.mark.anyio


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[-1500:]
    return found[1]


async def test_a_server_that_did_not_start_with_a_shell_line_of_args_says_to_split_it(
        tmp_path: Path) -> None:
    gateway = make_gateway({}, db=tmp_path / "gw.db", allow_unauthenticated_admin=True)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=120, follow_redirects=False) as http:
        csrf = _csrf((await http.get(base + "/ui/add")).text)
        form = {"csrf_token": csrf, "name": "clock", "kind": "stdio",
                "command": sys.executable, "args": "-m fast_mcp_gateway.demo.clock",
                "enabled": "on"}
        refused = await http.post(base + "/ui/add", data=form)
        assert refused.status_code == 422, refused.text[-1500:]
        said = html.unescape(refused.text)
        assert 'id="err-args"' in refused.text, said[-3000:]
        assert ("each line is one argument: '-m fast_mcp_gateway.demo.clock' was passed as "
                "one, its space included; if '-m' and 'fast_mcp_gateway.demo.clock' are "
                "two, put each on its own line") in said
        # Split as said, it starts.
        form["args"] = "-m\nfast_mcp_gateway.demo.clock"
        saved = await http.post(base + "/ui/add", data=form)
        assert saved.status_code == 200 and "Saved server" in saved.text, saved.text[-1500:]


def test_only_an_option_with_a_space_before_any_equals_sign_is_told() -> None:
    assert _joined_args({"args": ["--root=/My Files", "/srv/My Files", "-v"]}) is None
    assert _joined_args({}) is None
    told = _joined_args({"args": ["-y @modelcontextprotocol/server-everything"]})
    assert told is not None and "'-y' and '@modelcontextprotocol/server-everything'" in told
