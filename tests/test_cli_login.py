"""``mcp-gateway login`` / ``logout`` / ``login --list`` and ``check`` for a server with
``auth: {type: oauth}`` (cli/login.py, cli/check.py): real subprocesses on a real
SQLite file, against fastmcp's in-memory authorization server on 127.0.0.1.

The link is read from the CLI's stderr and followed by a test "person" (no browser); a
gateway already running on the same store leaves ``signed_out`` by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import PY
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, running, state_is

pytestmark = pytest.mark.anyio


def cli(*args: str) -> list[str]:
    return [PY, "-m", "fast_mcp_gateway", *args]


async def login(config: Path, db: Path, port: int, env: dict[str, str]) -> tuple[int, str]:
    """Run ``login tickets``, follow the link it prints; its exit code and stderr."""
    said = ""
    async with await anyio.open_process(
            cli("login", "tickets", "--config", str(config), "--db", str(db)),
            env={**env, "MCP_GATEWAY_OAUTH_CALLBACK_PORT": str(port)}) as process:
        assert process.stderr is not None
        async for chunk in TextReceiveStream(process.stderr):
            said += chunk
            lines = [x for x in said.splitlines() if x.startswith("http://127.0.0.1:")]
            if lines and "\n" in said.split(lines[0], 1)[1]:
                page = await person_signs_in(lines[0])
                assert page.status_code == 200
                break
        said += "".join([chunk async for chunk in TextReceiveStream(process.stderr)])
        code = await process.wait()
    return code, said


async def test_login_from_a_terminal_signs_in_a_running_gateway(tmp_path: Path) -> None:
    db, port = tmp_path / "gateway.db", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
    async with signing_upstream() as (provider, url):
        config = tmp_path / "servers.yaml"
        await anyio.Path(config).write_text(
            f"servers:\n  tickets: {{url: '{url}', auth: {{type: oauth}}}}\n")
        check = await anyio.run_process(cli("check", "--config", str(config), "--db", str(db),
                                            "--json"), env=env, check=False)
        report = json.loads(check.stdout)
        (row,) = report["servers"] if "servers" in report else report["rows"]
        assert check.returncode == 1 and row["status"] == "signed_out"
        assert "mcp-gateway login tickets" in row["error"]
        gw = gateway(url, db, free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            code, said = await login(config, db, port, env)
            assert code == 0, said
            assert "Open this link to sign in to 'tickets' (expires in 10 min, at " in said
            assert f"comes back to http://127.0.0.1:{port}/oauth/callback on the gateway's " \
                   f"machine" in said
            assert f"Signed in to 'tickets'; the sign-in is kept in {db}" in said
            await state_is(gw, UpstreamState.READY)  # read from the store, by itself
            assert (await client.call_tool("tickets_add", {"a": 4, "b": 4})).data == 8
        for token in [*provider.access_tokens, *provider.refresh_tokens]:
            assert token not in said
        listed = await anyio.run_process(cli("login", "--list", "--db", str(db)), env=env)
        text = listed.stdout.decode()
        assert text.startswith("tickets\towner=gateway\tissuer=http://127.0.0.1:")
        assert "by cli" in text
        check = await anyio.run_process(cli("check", "--config", str(config), "--db", str(db),
                                            "--json"), env=env, check=False)
        assert check.returncode == 0, check.stdout
        out = await anyio.run_process(cli("logout", "tickets", "--config", str(config),
                                          "--db", str(db)), env=env)
        assert "'tickets' is signed out" in out.stderr.decode()
        listed = await anyio.run_process(cli("login", "--list", "--db", str(db)), env=env)
        assert "no stored sign-ins" in listed.stderr.decode()
        # Audited as gateway_sign_in/out are (sec29: a terminal's were not).
        assert (await audited(db))[:2] == [("cli", "sign_out", "tickets", "forgotten"),
                                           ("cli", "sign_in", "tickets", "signed in")]


async def audited(db: Path) -> list[tuple[str, str, str | None, str | None]]:
    from fast_mcp_gateway.store import open_store

    store = await open_store(str(db))
    try:
        return [(e.actor, e.action, e.target, e.result) for e in await store.audit()]
    finally:
        await store.close()


def test_login_of_a_server_without_oauth_names_those_with_one(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("servers:\n  plain: {url: 'http://127.0.0.1:9/mcp'}\n")
    done = subprocess.run(cli("login", "plain", "--config", str(config), "--db",
                              str(tmp_path / "g.db")), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "no server 'plain' with auth: {type: oauth} in" in done.stderr
    assert "(those with one: none)" in done.stderr





async def test_ctrl_c_while_login_waits_for_the_browser_says_so_without_a_traceback(
        tmp_path: Path) -> None:
    """A person who sees the authorization server's own error page (a wrong client_id)
    stops ``login`` with Ctrl-C (trial15: a Python traceback, KeyboardInterrupt)."""
    db, env = tmp_path / "gateway.db", {k: v for k, v in os.environ.items()
                                          if not k.startswith("MCP_GATEWAY_")}
    async with signing_upstream() as (_provider, url):
        config = tmp_path / "servers.yaml"
        await anyio.Path(config).write_text(
            f"servers:\n  tickets: {{url: '{url}', auth: {{type: oauth}}}}\n")
        said = ""
        async with await anyio.open_process(
                cli("login", "tickets", "--config", str(config), "--db", str(db)),
                env={**env, "MCP_GATEWAY_OAUTH_CALLBACK_PORT": str(free_port())}) as process:
            assert process.stderr is not None
            async for chunk in TextReceiveStream(process.stderr):
                said += chunk
                if "comes back to" in said and said.endswith("\n"):
                    break
            process.send_signal(signal.SIGINT)
            said += "".join([chunk async for chunk in TextReceiveStream(process.stderr)])
            code = await process.wait()
    assert code == 130, said
    assert "Traceback" not in said and "KeyboardInterrupt" not in said
    assert said.rstrip().endswith("mcp-gateway: login stopped (Ctrl-C); no sign-in was "
                                  "kept, and the link no longer works")
    assert not await audited(db)


async def test_logout_forgets_the_sign_in_of_a_server_no_longer_in_the_file(
        tmp_path: Path) -> None:
    """A server removed from servers.yaml keeps its sign-in in the store (for when it
    comes back): ``logout`` still forgets it (sec29: 'no server ... in servers.yaml',
    and nothing could forget or revoke its tokens)."""
    from fast_mcp_gateway.store import open_store
    from fast_mcp_gateway.store.credentials import StoredCredential
    from fast_mcp_gateway.upstream.oauth_grant import CredentialBook

    db, config = tmp_path / "gateway.db", tmp_path / "servers.yaml"
    await anyio.Path(config).write_text("servers:\n  plain: {url: 'http://127.0.0.1:9/mcp'}\n")
    store = await open_store(str(db))
    try:
        await CredentialBook([], str(db), lambda: store).save(StoredCredential(
            server="gone", owner="gateway", issuer=None, token_endpoint=None,
            revocation_endpoint=None, resource=None, scopes=None, redirect_uri=None,
            expires_at=None, sealed="", updated_at=1.0, updated_by="cli"),
            {"tokens": {"access_token": "an-access-token-of-gone"}})
    finally:
        await store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
    out = await anyio.run_process(cli("logout", "gone", "--config", str(config), "--db",
                                      str(db)), env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "'gone' is signed out" in out.stderr.decode()
    listed = await anyio.run_process(cli("login", "--list", "--db", str(db)), env=env)
    assert "no stored sign-ins" in listed.stderr.decode()
    assert await audited(db) == [("cli", "sign_out", "gone", "forgotten")]
    again = await anyio.run_process(cli("logout", "gone", "--config", str(config), "--db",
                                        str(db)), env=env, check=False)
    assert again.returncode == 2 and "no server 'gone' with auth: {type: oauth}" in \
        again.stderr.decode()
