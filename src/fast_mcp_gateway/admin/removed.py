"""What a read of a server removed at runtime is told: that it was removed, when and by
whom (as the audit has it), and how to add it back.

``GET /api/v1/servers/<name>`` of a server ``DELETE``d (or removed by
``gateway_remove_server``, the dashboard, a reload of a file without it) answered the
404 of a name never known: "no server named ...", leaving the operator to wonder
whether it was ever there.  ``removal`` looks for the newest audit entry about the name
among the newest ``SCANNED`` (a ``remove_server`` of it, or a ``reload_config`` whose
report removed it) and at the store's rows (a ``servers.yaml`` entry removed at runtime
is kept removed by a row of its own, ``TOMBSTONE``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.config.registrations import TOMBSTONE
from fast_mcp_gateway.store import StorageError

SCANNED = 500
"""Audit entries looked at, newest first: a removal older than that is told without
its time and actor."""


@dataclass(frozen=True)
class Removal:
    """How a server no longer runs: ``by`` (the audit's actor) and ``at`` (ISO 8601,
    UTC) when the audit has it; ``reload``: a config reload removed it (its file entry
    went), else an admin operation; ``tombstoned``: its file entry is kept removed."""

    by: str | None = None
    at: str | None = None
    reload: bool = False
    tombstoned: bool = False

    def words(self, name: str) -> str:
        """The 404's message for ``name`` (REST's words)."""
        when = (f" by '{self.by}' at {self.at}" if self.by is not None and self.at is not None
                else "")
        if self.reload:
            return (f"server '{name}' was removed by a config reload{when} (its entry left "
                    f"the config file); add it back to the file (a saved file is reloaded) "
                    f"or with POST /api/v1/servers (body: name and config)")
        kept = ("; its servers.yaml entry stays removed until then" if self.tombstoned
                else "")
        return (f"server '{name}' was removed at runtime{when}; add it back with POST "
                f"/api/v1/servers (body: name and config){kept}")

    def details(self, name: str) -> dict[str, str | None]:
        return {"server": name, "removed_at": self.at, "removed_by": self.by}


def _removed_by_reload(result: str | None, name: str) -> bool:
    if not result or (name.isascii() and name.isprintable() and '"' not in name
                      and "\\" not in name and f'"{name}"' not in result):
        return False   # not named in it: no parse (a 404 parsed up to 500 reports)
    try:
        report = json.loads(result or "")
    except ValueError:
        return False
    removed = report.get("removed") if isinstance(report, dict) else None
    return isinstance(removed, list) and name in removed


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


async def removal(ctx: AdminContext, name: str) -> Removal | None:
    """How ``name``, which no longer runs, was removed; None if neither the audit (its
    newest ``SCANNED`` entries) nor the store says it was (or the store cannot say)."""
    store = ctx.store
    if store is None:
        return None
    try:
        tombstoned = any(row.name == name and row.config == TOMBSTONE
                         for row in await store.servers())
        entries = await store.audit(limit=SCANNED)
    except StorageError:
        return None
    for entry in entries:   # newest first: the first about ``name`` tells
        if entry.action == "remove_server" and entry.target == name:
            return Removal(by=entry.actor, at=_iso(entry.at), tombstoned=tombstoned)
        if entry.action == "reload_config" and _removed_by_reload(entry.result, name):
            return Removal(by=entry.actor, at=_iso(entry.at), reload=True)
        if entry.target == name:
            break   # added or changed since: not how it went
    return Removal(tombstoned=True) if tombstoned else None
