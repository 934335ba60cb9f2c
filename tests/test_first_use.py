"""What a new user hit trying the product (a trial in the twelfth session, from the README
only, against real upstreams and hosts); each test failed on the code it was written
against and states what a user expects instead."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.stdio_gateway import stdio_gateway

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "fast_mcp_gateway"]


def _servers(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "servers", "--config", str(config), "--db",
                           str(tmp_path / "g.db")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_the_readme_replicas_example_loads(tmp_path: Path) -> None:
    """README's "Replicas, balancing and failure handling" block, as printed (its
    'retry: {... on: [...]}' key is a bare 'on', which YAML 1.1 reads as true): a user
    who copies it gets 'has a key YAML reads as true' and no gateway."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)
                 if "retry:" in b and "replicas: 3" in b)
    assert re.search(r"\bon: \[connect", block), "the README example changed; re-check"
    config = tmp_path / "servers.yaml"
    config.write_text(block, encoding="utf-8")
    done = _servers(config, tmp_path)
    assert done.returncode == 0, done.stderr


def test_a_list_field_error_gives_an_example_for_that_field(tmp_path: Path) -> None:
    """'tools.include: "x*"' (or env_allow, pinned, idempotent_tools) as a string: the
    fix shown is 'include: ["-y", "some-package"]', the example for 'args'."""
    config = tmp_path / "servers.yaml"
    config.write_text(textwrap.dedent("""\
        gateway:
          env_allow: GITHUB_TOKEN
        servers:
          a:
            command: python
            tools: {include: "issue_*"}
        """), encoding="utf-8")
    done = _servers(config, tmp_path)
    assert done.returncode == 2
    assert "must be a list" in done.stderr
    assert "some-package" not in done.stderr, done.stderr


def test_http_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    """A second gateway (or anything) on the port: the user gets an exception-group
    traceback ending in 'SystemExit: 3', after a banner saying it serves there."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n", encoding="utf-8")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*CLI, "serve", "--config", str(config), "--transport", "http", "--port",
             str(port), "--db", str(tmp_path / "g.db")],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert str(port) in done.stderr and "in use" in done.stderr


CRASHY = """\
import os
from fastmcp import FastMCP

mcp = FastMCP("crashy")


@mcp.tool
def die() -> str:
    os._exit(7)


@mcp.tool
def ok(x: int) -> int:
    return x * 2


if __name__ == "__main__":
    mcp.run(show_banner=False, log_level="WARNING")
"""


def test_a_call_right_after_an_upstream_crash_waits_for_its_restart(tmp_path: Path) -> None:
    """The supervisor restarts a crashed stdio server at once ('next attempt in 0.1s'),
    yet a call made meanwhile fails at once with 'c is reconnecting (...)': a host sees
    a second error for one crash, where waiting (within the connect timeout) for the
    restart that is already under way would answer it."""
    server = tmp_path / "crashy.py"
    server.write_text(CRASHY, encoding="utf-8")
    config = tmp_path / "servers.yaml"
    config.write_text(textwrap.dedent(f"""\
        servers:
          c:
            command: {sys.executable}
            args: ["{server}"]
        """), encoding="utf-8")
    with stdio_gateway("--config", str(config), "--no-db") as gateway:
        assert gateway.call("c_ok", x=1) == {"result": 2}
        died = gateway.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call",
                             "params": {"name": "c_die", "arguments": {}}})
        assert died is not None and died["result"]["isError"]
        reply = gateway.send({"jsonrpc": "2.0", "id": 901, "method": "tools/call",
                              "params": {"name": "c_ok", "arguments": {"x": 3}}})
        assert reply is not None
        assert not reply["result"].get("isError"), reply["result"]["content"][0]["text"]
        assert reply["result"]["structuredContent"] == {"result": 6}


def test_the_gateway_log_is_one_format_one_line_per_record(tmp_path: Path) -> None:
    """Claude keeps the gateway's stderr as mcp-server-gateway.log.  The gateway's own
    records are one line each ('2026-.. INFO name: text'), but FastMCP's records come
    through its rich console handler: '[11/29/26 22:41:26] INFO  Starting MCP server'
    wrapped over three lines at 80 columns with 'transport.py:241' appended, and
    'Error calling tool 'gateway_add_server'' (no reason, no logger name) for every
    refused admin call, despite cli/main.py setting the fastmcp logger to WARNING."""
    with stdio_gateway("--config", "servers.yaml", "--no-db") as gateway:
        refused = gateway.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call",
                                "params": {"name": "gateway_add_server",
                                           "arguments": {"name": "x",
                                                         "config": {"comand": "y"}}}})
        assert refused is not None and refused["result"]["isError"]
        # An upstream refusing a read (notes has no note 999): FastMCP logged "Error
        # reading resource" at ERROR with a whole traceback for the upstream's answer.
        deadline = time.monotonic() + 60
        while True:  # each listing is a round trip; the notes server starts meanwhile
            listed = gateway.send({"jsonrpc": "2.0", "id": 901,
                                   "method": "resources/templates/list", "params": {}})
            assert listed is not None
            templates = [t["uriTemplate"] for t in listed["result"]["resourceTemplates"]
                         if "{note_id}" in t["uriTemplate"]]
            if templates or time.monotonic() > deadline:
                break
        assert templates, listed
        missing = gateway.send({"jsonrpc": "2.0", "id": 902, "method": "resources/read",
                                "params": {"uri": templates[0].replace("{note_id}", "999")}})
        assert missing is not None and "no note with id 999" in json.dumps(missing)
        err = gateway.stop()
    assert "Error reading resource" not in err and "Traceback" not in err, err
    record = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: |mcp-gateway: )")
    stray = [line for line in err.splitlines() if line.strip() and not record.match(line)]
    assert not stray, "\n".join(stray)


KEYS = """\
import os
from fastmcp import FastMCP

mcp = FastMCP("keys")


@mcp.tool
def key_info() -> str:
    value = os.environ.get("API_KEY", "")
    return f"stars={value == '***'} plain={os.environ.get('X_PLAIN', '')}"


if __name__ == "__main__":
    mcp.run(show_banner=False, log_level="WARNING")
"""


def test_updating_a_server_with_its_shown_config_keeps_its_secret(tmp_path: Path) -> None:
    """Read, change one field, write back: gateway_server_detail shows env API_KEY as
    '***', and gateway_update_server (REST PUT /api/v1/servers/<name> alike) with that
    config stores and starts the server with API_KEY='***', silently breaking its
    credential.  The dashboard's edit form keeps a '***' secret; these paths do not."""
    server = tmp_path / "keys.py"
    server.write_text(KEYS, encoding="utf-8")
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n", encoding="utf-8")
    with stdio_gateway("--config", str(config), "--db", str(tmp_path / "g.db")) as gateway:
        added = gateway.call("gateway_add_server", name="k", config={
            "command": sys.executable, "args": [str(server)],
            "env": {"API_KEY": "sk-real-12345", "X_PLAIN": "a"}})
        assert added["added"] == ["k"]
        gateway.wait_for("gateway_list_servers", lambda r: r["ready"] == 1)
        detail = gateway.call("gateway_server_detail", name="k")
        shown = {k: v for k, v in detail["config"].items() if k != "name"}
        assert shown["env"]["API_KEY"] == "***"
        shown["env"]["X_PLAIN"] = "b"
        assert gateway.call("gateway_update_server", name="k", config=shown)["restarted"] == ["k"]
        gateway.wait_for("gateway_list_servers", lambda r: r["ready"] == 1)
        assert gateway.call("k_key_info") == {"result": "stars=False plain=b"}


def test_without_a_store_adding_a_server_says_what_needs_the_store(tmp_path: Path) -> None:
    """'serve --no-db' (README: "turns recording off"): gateway_add_server and
    gateway_remove_server answer 'call logging is off: serve with a store', which names
    the wrong feature: the user asked to add a server, not to log calls (and
    gateway_disable_server, which also persists, works without a store)."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n", encoding="utf-8")
    with stdio_gateway("--config", str(config), "--no-db") as gateway:
        reply = gateway.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": {
            "name": "gateway_add_server",
            "arguments": {"name": "t", "config": {"command": sys.executable}}}})
        assert reply is not None and reply["result"]["isError"]
        text = reply["result"]["content"][0]["text"]
        assert "call logging" not in text, text


def test_importing_the_claude_entry_of_this_gateway_is_refused(tmp_path: Path) -> None:
    """README's Claude Desktop entry is 'mcp-gateway serve --config /path/servers.yaml';
    a user who then imports that Claude file (gateway_import_servers, or the dashboard's
    paste) registers this very gateway as its own upstream.  The file check refuses it
    ('runs this gateway itself'), runtime registrations do not: the import says
    added ['gateway'] and a nested gateway starts; with the default store (HOME's data
    folder, which the nested gateway shares) each nested gateway loads the same
    registration again (measured: 43 to 65 processes within 12 s from a 3-entry file)."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n", encoding="utf-8")
    claude = {"mcpServers": {"gateway": {
        "command": sys.executable,
        "args": ["-m", "fast_mcp_gateway", "serve", "--config", str(config)]}}}
    with stdio_gateway("--config", str(config), "--db", str(tmp_path / "g.db")) as gateway:
        reply = gateway.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": {
            "name": "gateway_import_servers", "arguments": {"content": json.dumps(claude)}}})
        assert reply is not None
        result = reply["result"]
        assert result["isError"], result["content"][0]["text"]
        assert "itself" in result["content"][0]["text"]


def test_a_server_name_that_is_a_dot_segment_is_refused(tmp_path: Path) -> None:
    """'/' is refused in a new name because it is a path segment of /api/v1/servers/<name>
    and /ui/servers/<name>; '..' (and '.') are accepted, and then GET, PUT and DELETE
    /api/v1/servers/.. answer 'GET /api/v1/: Not Found' (the client or router folds the
    dot segment): the server can only be reached through the MCP admin tools."""
    config = tmp_path / "servers.yaml"
    config.write_text("servers: {}\n", encoding="utf-8")
    with stdio_gateway("--config", str(config), "--db", str(tmp_path / "g.db")) as gateway:
        for name in ("..", "."):
            reply = gateway.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call",
                                  "params": {"name": "gateway_add_server", "arguments": {
                                      "name": name, "config": {"url": "http://127.0.0.1:9/mcp"}}}})
            assert reply is not None
            assert reply["result"]["isError"], (name, reply["result"]["content"][0]["text"])


MODE = "2026-07-28"  # "legacy" passes: the handshake-era path forwards the token


async def _caller_token_through_a_2026_host(tmp_path: Path) -> str:
    import hashlib
    import secrets as _secrets

    from fastmcp import Client

    from tests.fixtures import make_gateway, serve_http
    from tests.test_asks_routing import asker_http, until

    value = "mgw_" + _secrets.token_urlsafe(32)
    digest = hashlib.sha256(value.encode()).hexdigest()
    async with asker_http(tmp_path, tmp_path / "asker.jsonl") as url:
        gateway = make_gateway(
            {"asker": {"url": url, "protocol": "legacy",
                       "headers": {"Authorization": "Bearer ${caller.token}"}}},
            options={"auth": {"tokens": [
                {"name": "alice", "sha256": digest, "scopes": ["tools"]}]}},
            db=tmp_path / "gateway.db")
        service = gateway.manager.get("asker")
        async with serve_http(gateway.http_app("http")) as base:
            await until(lambda: service.state == "ready")
            async with Client(f"{base}/mcp", mode=MODE, auth=value) as host:
                result = await host.call_tool("asker_whoami", {}, raise_on_error=False)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.data == hashlib.sha256(f"Bearer {value}".encode()).hexdigest()
    return str(result.data)


def test_a_2026_host_with_a_bearer_token_reaches_a_caller_token_upstream(
        tmp_path: Path) -> None:
    """'headers: {Authorization: "Bearer ${caller.token}"}' works for a handshake-era
    host, but a 2026-07-28 host (FastMCP 4's default Client(mode="auto")) calling with a
    valid token through the HTTP express lane gets "takes the caller's own credential
    ..., and this call has none: serve the gateway over HTTP with 'gateway: auth' and
    call it with a bearer token" -- it did both.  MCP_GATEWAY_HTTP_EXPRESS_LANE=false
    makes it work, so the lane drops the caller."""
    import anyio

    anyio.run(_caller_token_through_a_2026_host, tmp_path)
