"""What pinning keeps of a server no longer configured, and forgetting it.

A removed server's pins stay (added again, it is checked against what was approved,
not trusted anew), but ``gateway_pin_status`` / ``GET /pins`` and ``mcp-gateway pins``
went on listing its findings for ever (3,404 of a server removed after a loop).  Now the
listings leave them out and count what is kept (``not_configured``; the CLI's "not
listed" line), and ``gateway_forget_pins`` / ``DELETE /api/v1/pins/{name}`` /
``mcp-gateway pins forget SERVER`` drop it, audited, for a server not configured only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.store.records import PinRecord
from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http
from tests.test_pinning import POISON, shifty_server
from tests.test_rest import AUTH, OPS

pytestmark = pytest.mark.anyio


async def test_a_removed_servers_findings_leave_the_listing_and_can_be_forgotten(
        tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "sh": shifty_server()}, db=db,
                           options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=f"{base}/api/v1", timeout=60,
                               headers={"Authorization": f"Bearer {OPS}"}) as rest, \
            Client(f"{base}/mcp", auth=OPS) as host:
        added = await rest.post("/servers", json={"name": "sh", "config": memory_entry("sh")})
        assert added.status_code == 201, added.text
        await host.call_tool("sh_shift", {"description": POISON})
        book = gateway.manager.pins
        assert await book.written.wait_until(lambda: book.audited >= 1, 60)  # stored
        status = (await host.call_tool("gateway_pin_status", {})).structured_content
        assert [(f["server"], f["name"]) for f in status["findings"]] == [("sh", "lookup")]

        removed = await rest.delete("/servers/sh")
        assert removed.status_code == 200, removed.text
        # The removal says what it keeps, and how to drop it (said nothing before).
        assert removed.json()["pins_kept"] == {"sh": 2}, removed.text
        status = (await host.call_tool("gateway_pin_status", {})).structured_content
        assert status["findings"] == []  # were listed for ever
        assert status["not_configured"] == {"sh": 2} and "sh" not in status["pinned"]
        assert (await rest.get("/pins")).json()["not_configured"] == {"sh": 2}

        with pytest.raises(ToolError, match="server 'alpha' is configured: its pins are what"):
            await host.call_tool("gateway_forget_pins", {"server": "alpha"})
        forgotten = await rest.delete("/pins/sh")
        assert forgotten.status_code == 200, forgotten.text
        assert forgotten.json() == {"server": "sh", "approved": 2, "pending": 1}
        assert (await rest.delete("/pins/sh")).status_code == 404  # nothing kept now
        status = (await host.call_tool("gateway_pin_status", {})).structured_content
        assert status["not_configured"] == {} and status["findings"] == []
        audit = (await host.call_tool("gateway_audit", {})).structured_content["entries"]
        assert [(e["action"], e["target"], e["result"]) for e in audit
                if e["action"] == "forget_pins"] == [
            ("forget_pins", "sh", "2 approved and 1 pending definition(s) forgotten")]
    store = await open_store(str(db))
    try:
        assert await store.pins("sh") == [] and await store.pins("alpha") != []
    finally:
        await store.close()


async def _pins_of(db: Path, rows: list[PinRecord]) -> None:
    store = await open_store(str(db))
    try:
        await store.put_pins(rows)
    finally:
        await store.close()


def _row(server: str, name: str, status: str) -> PinRecord:
    return PinRecord(server=server, kind="tool", name=name, digest=status,
                     definition=json.dumps({"name": name, "description": status}),
                     status=status, actor="first use" if status == "approved" else "changed",
                     at=1.0)


def _pins(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "pins", *args,
                           "--db", str(tmp_path / "g.db"), "--config",
                           str(tmp_path / "servers.yaml")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_the_cli_sets_apart_and_forgets_a_server_no_longer_configured(tmp_path: Path) -> None:
    (tmp_path / "servers.yaml").write_text(json.dumps({"servers": {
        "alpha": {"url": "http://127.0.0.1:9/mcp"}}}))
    anyio.run(_pins_of, tmp_path / "g.db", [
        _row("alpha", "add", "approved"), _row("alpha", "add", "pending"),
        _row("gone", "a", "approved"),
        *(_row("gone", f"t{i}", "pending") for i in range(3))])
    listed = _pins(tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "alpha: tool 'add' is changed" in listed.stdout
    assert "gone: tool" not in listed.stdout  # its 3 findings were listed, for ever
    assert ("not listed: the definitions kept of server(s) no longer configured"
            in listed.stdout) and "gone (3 pending, 1 approved)" in listed.stdout
    flagged = json.loads(_pins(tmp_path, "--json").stdout)
    assert {(r["server"], r["configured"]) for r in flagged} == {("alpha", True),
                                                                 ("gone", False)}

    refused = _pins(tmp_path, "forget", "alpha")
    assert refused.returncode == 2 and "server 'alpha' is configured" in refused.stderr
    done = _pins(tmp_path, "forget", "gone")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("server 'gone': 1 approved and 3 pending definition(s) "
                                   "forgotten; added again, it is trusted on first use")
    again = _pins(tmp_path, "forget", "gone")
    assert again.returncode == 2 and "no definitions of a server 'gone'" in again.stderr
    assert "not listed" not in _pins(tmp_path).stdout

    async def audited() -> list[tuple[str, str, str | None]]:
        store = await open_store(str(tmp_path / "g.db"))
        try:
            return [(e.actor, e.action, e.target) for e in await store.audit(limit=10)]
        finally:
            await store.close()

    assert anyio.run(audited) == [("cli", "forget_pins", "gone")]


async def test_pins_of_a_server_another_gateway_registered_are_not_forgotten(
        tmp_path: Path) -> None:
    """Another gateway on the store registers 'sh' (its pins stored); this one has not
    applied it (a SQLite file tells it nothing) and forgot its pins as those of a server
    no longer configured: added here at the next restart, it was trusted on first use.
    'mcp-gateway pins forget' already counted the store's registrations; the gateway's
    forget now does too, and deletes nothing, audits nothing."""
    db = tmp_path / "g.db"
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=db, options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=f"{base}/api/v1", timeout=60,
                               headers={"Authorization": f"Bearer {OPS}"}) as rest:
        other = await open_store(str(db))  # the other gateway, after this one started
        try:
            await other.put_server("sh", memory_entry("sh"), True)
            await other.put_pins([_row("sh", "lookup", "approved"),
                                  _row("alpha", "add", "approved")])
        finally:
            await other.close()
        assert "sh" not in gateway.manager.services  # not applied here
        refused = await rest.delete("/pins/sh")
        assert refused.status_code == 400, refused.text
        assert "server 'sh' is configured: its pins are what" in refused.json()["error"]["message"]
        # Another spelling of a configured server names no row: nothing to forget.
        for spelling in ("ALPHA", "alpha ", "\u0430lpha", "alpha#0", "alpha/0"):
            assert (await rest.delete(f"/pins/{quote(spelling, safe='')}")).status_code \
                == 404, spelling
    store = await open_store(str(db))
    try:
        assert [r.name for r in await store.pins("sh")] == ["lookup"]
        assert await store.pins("alpha") != []
        assert [e for e in await store.audit(limit=50) if e.action == "forget_pins"] == []
    finally:
        await store.close()


def test_the_clis_forget_deletes_nothing_its_audit_entry_cannot_be_stored_with(
        tmp_path: Path) -> None:
    """``pins forget`` deleted the rows and then wrote its audit entry: a store that took
    the delete and not the entry (gone or locked between the two) left them forgotten,
    unaudited.  Now both are one transaction; the audit table refusing the entry (a
    trigger, as a write that fails there) leaves every row in place."""
    import sqlite3

    (tmp_path / "servers.yaml").write_text(json.dumps({"servers": {}}))
    anyio.run(_pins_of, tmp_path / "g.db", [_row("gone", "a", "approved"),
                                            _row("gone", "a", "pending")])
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.execute("CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN"
                   " SELECT RAISE(ABORT, 'the audit cannot be written'); END")
    failed = _pins(tmp_path, "forget", "gone")
    assert failed.returncode == 2 and "the audit cannot be written" in failed.stderr

    async def kept() -> int:
        store = await open_store(str(tmp_path / "g.db"))
        try:
            return len(await store.pins("gone"))
        finally:
            await store.close()

    assert anyio.run(kept) == 2  # were deleted, unaudited
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.execute("DROP TRIGGER no_audit")
    done = _pins(tmp_path, "forget", "gone", "--json")
    assert json.loads(done.stdout) == {"server": "gone", "approved": 1, "pending": 1}
    assert anyio.run(kept) == 0


async def test_pins_of_a_server_in_another_running_gateways_file_are_not_forgotten(
        tmp_path: Path) -> None:
    """Gateway B on the same store has 'sh' in its servers.yaml (its lease, as ``serve``
    holds it, names that file); this gateway has no 'sh', and forgot its pins as those
    of a server no longer configured: B trusted whatever 'sh' listed after its next
    start.  Now this gateway and the CLI read the file of each other gateway running on
    the store, and refuse; one whose file cannot be read here (another host) too."""
    import socket

    from fast_mcp_gateway.admin.instance_lease import PREFIX

    db, other = tmp_path / "g.db", tmp_path / "b.yaml"
    other.write_text(json.dumps({"servers": {"sh": {"url": "http://127.0.0.1:9/mcp"}}}))
    (tmp_path / "servers.yaml").write_text(json.dumps({"servers": {}}))
    b_holder = f"host {socket.gethostname()} pid 999999 config {other} #b0b0b0"
    store = await open_store(str(db))
    try:
        await store.put_pins([_row("sh", "lookup", "approved")])
        assert await store.hold_lease(f"{PREFIX}b", b_holder, 600)
    finally:
        await store.close()
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=db, options={"auth": AUTH})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=f"{base}/api/v1", timeout=60,
                               headers={"Authorization": f"Bearer {OPS}"}) as rest:
        refused = await rest.delete("/pins/sh")
    assert refused.status_code == 400, refused.text
    said = refused.json()["error"]["message"]
    assert f"server 'sh' is configured in {other}, the config file of another gateway" in said

    def forget() -> subprocess.CompletedProcess[str]:
        return _pins(tmp_path, "forget", "sh")

    done = await anyio.to_thread.run_sync(forget)
    assert done.returncode == 2 and f"server 'sh' is configured in {other}" in done.stderr
    store = await open_store(str(db))
    try:  # B stops; a gateway of another host runs
        await store.release_lease(f"{PREFIX}b", b_holder)
        await store.hold_lease(f"{PREFIX}c", f"host not-{socket.gethostname()} pid 7 "
                               f"config /etc/c.yaml #c0c0c0", 600)
    finally:
        await store.close()
    done = await anyio.to_thread.run_sync(forget)
    assert done.returncode == 2 and "its config file cannot be read here" in done.stderr
    store = await open_store(str(db))
    try:
        assert [r.name for r in await store.pins("sh")] == ["lookup"]
        await store.release_lease(f"{PREFIX}c", f"host not-{socket.gethostname()} pid 7 "
                                  f"config /etc/c.yaml #c0c0c0")
    finally:
        await store.close()
    done = await anyio.to_thread.run_sync(forget)
    assert done.returncode == 0, done.stderr


async def test_a_running_gateway_whose_file_is_not_this_ones_here_keeps_the_pins(
        tmp_path: Path) -> None:
    """Another gateway running on the store was skipped as "this one's file" by its path
    alone: two gateways built in code (each names "<config>", not a file) forgot each
    other's servers' pins, and so did one of another host at the same path (another
    file there); one of a container on this host's name (host networking; its own pid
    space) had this host's file at its path read for it.  Each is refused now, and the
    advice says who can forget: not "that gateway", which reads this one as unreadable."""
    import socket

    from fast_mcp_gateway.admin.instance_lease import PREFIX, pid_space
    from fast_mcp_gateway.admin.pins import configured_elsewhere

    mine = tmp_path / "servers.yaml"
    mine.write_text(json.dumps({"servers": {}}))
    host, space = socket.gethostname(), pid_space()
    assert space is not None  # /proc tells it here
    other_space = "0" * 12 if space != "0" * 12 else "1" * 12
    cases = {
        "<config>": f"host {host} pid 999999 ns {space} config <config> #b0b0b0",
        "host": f"host not-{host} pid 7 config {mine} #c0c0c0",
        "container": f"host {host} pid 7 ns {other_space} config {mine} #d0d0d0",
    }
    store = await open_store(str(tmp_path / "g.db"))
    try:
        for case, holder in cases.items():
            assert await store.hold_lease(f"{PREFIX}other", holder, 600)
            this = "<config>" if case == "<config>" else str(mine)
            said = await configured_elsewhere(
                store, "sh", f"host {host} pid {1} ns {space} config {this} #a0a0a0")
            assert said is not None, case  # None on the old code: forgotten
            assert "forget them once it is stopped (or from that gateway, if it can read " \
                "the config file of every other gateway running on this store)" in said
            assert ("names no config file" if case == "<config>"
                    else "another host or container") in said, said
            await store.release_lease(f"{PREFIX}other", holder)
        # The same gateway's file on this host is skipped; another file here is read.
        assert await store.hold_lease(
            f"{PREFIX}other", f"host {host} pid 7 ns {space} config {mine} #e0e0e0", 600)
        assert await configured_elsewhere(store, "sh", None, str(mine)) is None
        assert await configured_elsewhere(store, "sh", None, str(tmp_path / "x.yaml")) \
            is None  # read: no 'sh' in it
    finally:
        await store.close()



def test_a_lease_naming_a_fifo_blocks_no_forget(tmp_path: Path) -> None:
    """The config file another gateway's lease names (a store row: whoever writes the
    store chooses it) was checked to be a file, then opened: one swapped for a FIFO
    between the two blocked the reading thread for ever, and the forget with it, holding
    the registration lock (no add of any server after).  The swap is made right after
    that check here, in a process of its own (a hang fails by its timeout); a FIFO
    named from the start is told as no file."""
    import os

    path = tmp_path / "b.yaml"
    path.write_text(json.dumps({"servers": {"sh": {"url": "http://127.0.0.1:9/mcp"}}}))
    script = (
        "import os, pathlib, sys\n"
        "from fast_mcp_gateway.admin import pins\n"
        "path, checked = sys.argv[1], pathlib.Path.is_file\n"
        "def is_file(self):\n"
        "    found = checked(self)\n"
        "    if str(self) == path and found:  # the swap, after the check\n"
        "        os.unlink(path)\n"
        "        os.mkfifo(path)\n"
        "    return found\n"
        "pathlib.Path.is_file = is_file\n"
        "print(pins._configures(path, 'sh'))  # not checked first now: read\n"
        "pathlib.Path(path).is_file()  # the hook swaps it now (no check did)\n"
        "print(pins._configures(path, 'sh'))\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, check=False, timeout=45)  # under the test's 60 s
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "None", done.stdout  # a FIFO by then: no file
    assert os.path.exists(path)


async def test_a_refusal_quotes_nothing_of_the_file_a_lease_names(tmp_path: Path) -> None:
    """A lease (a store row: whoever writes the store writes it) may name any file this
    gateway can read; the refusal quoted the error reading it as a config, and that
    quotes the file: each line of a shadow-style file a top-level key, its hash with it,
    sent to the REST caller.  Now it says that the file is not a valid config, and
    where to be told why."""
    import socket

    from fast_mcp_gateway.admin.instance_lease import PREFIX
    from fast_mcp_gateway.admin.pins import configured_elsewhere

    secret = "root:$6$saltsalt$Xq9hashhashhash:19000:0:99999:7:::"
    shadow = tmp_path / "shadow"
    shadow.write_text(f"{secret}\ndaemon:*:19000:0:99999:7:::\n")
    holder = f"host {socket.gethostname()} pid 7 config {shadow} #f0f0f0"
    store = await open_store(str(tmp_path / "g.db"))
    try:
        assert await store.hold_lease(f"{PREFIX}other", holder, 600)
        said = await configured_elsewhere(store, "sh", None, str(tmp_path / "servers.yaml"))
    finally:
        await store.close()
    assert said is not None and "saltsalt" not in said and "Xq9hash" not in said, said
    assert f"{shadow}: not a valid config; 'mcp-gateway check --config {shadow}' there " \
        "says why" in said, said
