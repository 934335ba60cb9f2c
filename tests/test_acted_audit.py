"""Admin operations that act first and audit after, while the store cannot take the entry.

A reconnect, a breaker reset, a replica restarted or drained, a registration saved and
applied: each acted, and then its audit entry met a SQLite file another process keeps
write-locked.  They answered "the write did not happen ... try again" (503 over REST)
although they had acted -- a reconnect's caller told to try again reconnected twice.
Now they answer what they did and the entry is held (``admin/held_audit.py``), written
once the store answers.  ``inspect_call_tool`` audits before it calls: it is still
refused, and the tool is not called.  Real SQLite files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.store import sqlite_connection
from tests.fixtures import alpha_server, make_gateway, memory_entry, replica_server
from tests.test_held_audit import WriteLock, locked
from tests.test_pinning import ListChanges, shifty_server

pytestmark = pytest.mark.anyio


async def test_operations_that_acted_answer_so_and_their_entries_are_held(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 100)
    db = tmp_path / "g.db"
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=str(db), instance_id="gw-1")
    async with Client(gateway.server) as host:
        store, held = gateway.store, gateway.control.held_audit
        assert store is not None
        service = gateway.control.manager.get("alpha")
        before = service.attempts
        async with locked(db):
            answer = await host.call_tool("gateway_reconnect_server", {"name": "alpha"})
            assert answer.structured_content["state"] == "ready", answer
            assert service.attempts == before + 1  # reconnected once, and said so
            await host.call_tool("gateway_reset_breaker", {"name": "alpha"})
            await host.call_tool("gateway_restart_replica", {"name": "alpha", "replica": 0})
            await host.call_tool("gateway_drain_replica", {"name": "alpha", "replica": 0})
            assert service.draining == {0}
            assert [e.action for e in held.entries] == [
                "reconnect_server", "reset_breaker", "restart_replica", "drain_replica"]
        assert await held.flushed(60)
        entries = list(reversed(await store.audit()))
        assert [(e.action, e.target, e.actor, e.instance_id) for e in entries] == [
            ("reconnect_server", "alpha", "stdio", "gw-1"),
            ("reset_breaker", "alpha", "stdio", "gw-1"),
            ("restart_replica", "alpha", "stdio", "gw-1"),
            ("drain_replica", "alpha", "stdio", "gw-1")]
        assert entries[0].result == "ready"


async def test_a_registration_saved_before_the_store_locked_is_applied_and_audited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registration is written; another process takes the file's write lock while
    the server starts: the add answers 'added' and its entry is written later."""
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 100)
    db = tmp_path / "g.db"
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": replica_server("b")},
                           db=str(db))
    lock = WriteLock(db)
    try:
        async with Client(gateway.server) as host:
            manager = gateway.control.manager
            replace = manager.replace_server

            async def locked_meanwhile(server: Any, **kwargs: Any) -> Any:
                await lock.take()
                return await replace(server, **kwargs)

            monkeypatch.setattr(manager, "replace_server", locked_meanwhile)
            answer = await host.call_tool("gateway_add_server", {
                "name": "beta", "config": memory_entry("beta")})
            assert answer.structured_content["added"] == ["beta"], answer
            assert "beta" in manager.services
            assert [e.action for e in gateway.control.held_audit.entries] == ["add_server"]
            lock.other.execute("ROLLBACK")
            assert await gateway.control.held_audit.flushed(60)
            assert gateway.store is not None
            [entry] = await gateway.store.audit()
            assert (entry.action, entry.target) == ("add_server", "beta")
    finally:
        lock.release()


async def test_a_tool_call_by_the_inspector_is_refused_while_it_cannot_be_audited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 100)
    db = tmp_path / "g.db"
    calls: list[str] = []
    gateway = make_gateway({"svc": memory_entry("a")}, {"a": replica_server("a", calls)},
                           db=str(db))
    async with Client(gateway.server) as host:
        async with locked(db):
            with pytest.raises(ToolError, match="write lock"):
                await host.call_tool("gateway_inspect_call_tool",
                                     {"name": "svc", "tool": "write",
                                      "arguments": {"value": "x"}})
        assert calls == [] and gateway.control.held_audit.entries == []
        await host.call_tool("gateway_inspect_call_tool", {
            "name": "svc", "tool": "write", "arguments": {"value": "y"}})
        assert calls == ["a:y"]


async def test_an_approval_made_while_the_store_is_locked_is_answered_and_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The approval is made here at once (the held tool released); its pins were
    requeued for the pin worker, and the approval answered an error."""
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 100)
    db = tmp_path / "g.db"
    gateway = make_gateway({"sh": memory_entry("sh", pinning="enforce")},
                           {"sh": shifty_server()}, db=str(db))
    changes = ListChanges()
    async with Client(gateway.server, mode="legacy", message_handler=changes) as host:
        await host.call_tool("sh_shift", {"description": "Look a word up, now."})
        await changes.after(1)
        assert "sh_lookup" not in {t.name for t in await host.list_tools()}  # held
        async with locked(db):
            approved = (await host.call_tool("gateway_approve_changes", {"server": "sh"})
                        ).structured_content
            assert [a["name"] for a in approved["approved"]] == ["lookup"], approved
            assert "sh_lookup" in {t.name for t in await host.list_tools()}
        held = gateway.control.held_audit
        assert await held.flushed(60)
        assert gateway.store is not None
        assert "approve_changes" in [e.action for e in await gateway.store.audit()]


async def test_an_add_that_did_not_start_and_cannot_be_taken_back_says_it_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An add is taken back when its server does not start; the store locked between the
    two writes left it stored and running, unaudited, the caller told only 'the write
    did not happen ... try again'."""
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 100)
    db = tmp_path / "g.db"
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=str(db))
    lock = WriteLock(db)
    try:
        async with Client(gateway.server) as host:
            manager = gateway.control.manager
            replace = manager.replace_server

            async def then_locked(server: Any, **kwargs: Any) -> Any:
                service = await replace(server, **kwargs)
                await lock.take()
                return service

            monkeypatch.setattr(manager, "replace_server", then_locked)
            with pytest.raises(ToolError, match=(
                    r"did not start \(.*\) and could not be taken back, so it stays added: "
                    r".*write lock.*; once the store answers, remove it "
                    r"\(gateway_remove_server\) or fix its settings "
                    r"\(gateway_update_server\)")):
                await host.call_tool("gateway_add_server", {
                    "name": "dead", "config": {"url": "http://127.0.0.1:9/mcp"}})
            lock.other.execute("ROLLBACK")
            assert "dead" in manager.services  # kept running, as stored
            assert gateway.store is not None
            assert "dead" in [r.name for r in await gateway.store.servers()]
            assert await gateway.control.held_audit.flushed(60)
            [entry] = await gateway.store.audit()
            assert entry.action == "add_server"
            assert (entry.result or "").startswith("added, not taken back: "), entry.result
    finally:
        lock.release()
