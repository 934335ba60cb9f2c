"""``mcp-gateway pins`` on a terminal: what an upstream named is shown, not acted on; the
approve line it prints can be pasted; its reader leaving and its misuse end in one line."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from fast_mcp_gateway.routing.pinning import Finding
from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.store.records import PinRecord

CLI = [sys.executable, "-m", "fast_mcp_gateway", "pins"]
# An upstream's tool name that sets the terminal's title and turns the text red.
HOSTILE = "ok\x1b]0;pwned\x07\x1b[31mred"


async def _pending(db: Path, server: str, name: str, description: str) -> None:
    store = await open_store(str(db))
    try:
        approved = json.dumps({"name": name, "description": "before"})
        await store.put_pins([
            PinRecord(server=server, kind="tool", name=name, digest="a", definition=approved,
                      status="approved", actor="first use", at=1.0),
            PinRecord(server=server, kind="tool", name=name, digest="b",
                      definition=json.dumps({"name": name, "description": description}),
                      status="pending", actor="changed", at=2.0,
                      markers=["hidden \x1b[8m text"])])
    finally:
        await store.close()


def _pins(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--db", str(db)], capture_output=True, text=True,
                          timeout=60)


def test_an_upstreams_control_characters_are_shown_escaped(tmp_path: Path) -> None:
    """The tool's name, the server's and the markers reached the terminal raw: a name
    an upstream chose could retitle the window, recolour or hide the review text."""
    db = tmp_path / "pins.db"
    anyio.run(_pending, db, "evil\x1b[2J", HOSTILE, "now \x1b[2J different")
    done = _pins(db)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout, done.stdout
    assert r"tool 'ok\x1b]0;pwned\x07\x1b[31mred' is changed" in done.stdout
    assert r"(injection markers: hidden \x1b[8m text)" in done.stdout
    # --json is for programs: the names as they are (JSON escapes the characters).
    listed = json.loads(_pins(db, "--json").stdout)
    assert listed[0]["name"] == HOSTILE


def test_the_approve_line_is_one_shell_word_per_name(tmp_path: Path) -> None:
    """``approve: mcp-gateway pins approve a b get weather`` approved nothing: a server
    or tool name with a space became two words."""
    db = tmp_path / "pins.db"
    anyio.run(_pending, db, "my server", "get weather", "changed")
    done = _pins(db)
    line = next(x for x in done.stdout.splitlines() if "approve:" in x)
    words = shlex.split(line.split("approve:", 1)[1])
    assert words == ["mcp-gateway", "pins", "approve", "my server", "get weather"], line
    approved = _pins(db, *words[2:])
    assert approved.returncode == 0, approved.stderr
    assert "approved tool 'get weather' of my server" in approved.stdout


def test_a_held_tools_refusal_names_the_server_as_pasteable_words() -> None:
    finding = Finding(server='my "team" server', kind="tool", name="lookup", state="new",
                      current={"name": "lookup"}, current_digest="d", approved=None,
                      markers=(), held=True)
    message = finding.message
    assert '`mcp-gateway pins approve \'my "team" server\'`' in message
    body = message.split("gateway_approve_changes ", 1)[1].split(", `", 1)[0]
    assert json.loads(body) == {"server": 'my "team" server'}


def test_a_closed_stdout_ends_pins_without_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "pins.db"
    anyio.run(_pending, db, "up", "lookup", "changed")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone, as after `| head -1` has read its line
    try:
        done = subprocess.run([*CLI, "--db", str(db)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 1


@pytest.mark.parametrize(("args", "said"), [
    (["approve"], "mcp-gateway: pins approve needs a server"),
    (["status", "uq"], "the store has no definitions of a server 'uq'; known: up"),
])
def test_misuse_is_said_on_stderr(tmp_path: Path, args: list[str], said: str) -> None:
    """``pins approve`` without a server printed its usage on stdout; ``pins status uq``
    (a typo) said "nothing to approve", as for a known server."""
    db = tmp_path / "pins.db"
    anyio.run(_pending, db, "up", "lookup", "changed")
    done = _pins(db, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert said in done.stderr, done.stderr
