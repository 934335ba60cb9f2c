"""Admin operations that read (or clear) what the store keeps: calls, statistics,
health transitions, the audit log and the inspector history.

Each needs the store (without one, an ``AdminError`` naming what it keeps) and first waits,
bounded, for queued records to be written, so a caller sees its own recent calls.
Pages are newest first; a full page carries the id (or cursor) of the next.

A ``server`` filter naming no server is an error worded as every admin operation words
it ("no server named 'x' (known: ...)"), not an empty page -- unless the store still
holds records of it: a removed server's history stays readable (``_check_server``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, Literal

from fast_mcp_gateway.admin.context import Actor, AdminContext, finishing, require_store
from fast_mcp_gateway.admin.invalid import invalid_of
from fast_mcp_gateway.admin.models import CallPage, CallRecord, GroupStats, HistoryPage, StatsReport
from fast_mcp_gateway.errors import AdminError
from fast_mcp_gateway.store import Store
from fast_mcp_gateway.store.base import ISSUED_CURSOR, NOT_ISSUED
from fast_mcp_gateway.store.stats import LatencyStats, merged
from fast_mcp_gateway.telemetry.recorder import Recorder

CallStatus = Literal["success", "error", "timeout", "rejected", "cancelled"]
GroupBy = Literal["none", "server", "tool"]


def _call_log(ctx: AdminContext) -> tuple[Store, Recorder]:
    store = require_store(ctx)
    assert ctx.recorder is not None  # opened together with the store
    return store, ctx.recorder


async def _check_server(ctx: AdminContext, server: str | None, found: bool,
                        recorded: Callable[[], Awaitable[Sequence[Any]]]) -> None:
    """Raise the unknown-server error for ``server`` when it is not configured and the
    store keeps nothing of it.  ``found``: the answer already holds some of its records;
    ``recorded`` reads any one (asked only when neither says it exists)."""
    if server is None or found or server in ctx.manager.services \
            or server in invalid_of(ctx):  # configured, not started: an empty history
        return
    if not await recorded():
        ctx.manager.get(server)  # raises AdminError: "no server named 'x' (known: ...)"


async def _any_call(store: Store, server: str | None) -> list[Any]:
    rows, _ = await store.invocations(server=server, limit=1)
    return list(rows)


def _next_id(rows: Sequence[Any], limit: int) -> int | None:
    last: int | None = rows[-1].id if len(rows) == limit else None
    return last


async def calls(ctx: AdminContext, *, server: str | None = None, tool: str | None = None,
                status: CallStatus | None = None, since_minutes: float | None = None,
                limit: int = 20, cursor: str | None = None, oldest_first: bool = False,
                instance: str | None = None, client: tuple[str, str] | None = None) -> CallPage:
    """The latest calls through the gateway, filtered and paged (``AdminError`` for a
    cursor the gateway did not issue); ``client``: one caller's only (a caller without
    scope ``admin`` sees its own: ``Principal.own_records``)."""
    if cursor and not ISSUED_CURSOR.fullmatch(cursor):
        # The caller's mistake, not the store's (a StorageError reads as "unavailable").
        raise AdminError(f"invalid cursor {cursor!r}: {NOT_ISSUED} (or none for the first)")
    store, recorder = _call_log(ctx)
    await recorder.flushed(within=2)
    since = None if since_minutes is None else time.time() - since_minutes * 60
    rows, next_cursor = await store.invocations(
        since=since, server=server, tool=tool, status=status, instance=instance, limit=limit,
        cursor=cursor, newest_first=not oldest_first, client=client)
    await _check_server(ctx, server, bool(rows) or cursor is not None,
                        lambda: _any_call(store, server))
    return CallPage(calls=[CallRecord(**{k: getattr(r, k) for k in CallRecord.model_fields})
                           for r in rows], next_cursor=next_cursor)


async def stats(ctx: AdminContext, *, group_by: GroupBy = "none", since_minutes: float = 60,
                server: str | None = None, servers: frozenset[str] | None = None
                ) -> StatsReport:
    """Counts, success rates and latency percentiles over a window, with the window
    before it for the trend, and the calls in flight now.  ``servers``: only theirs
    (a restricted caller's; its total for ``group_by`` none), without ``server``."""
    store, recorder = _call_log(ctx)
    await recorder.flushed(within=2)
    now = time.time()
    window = since_minutes * 60
    by = None if group_by == "none" else group_by
    mine = servers is not None and server is None and by != "tool"  # tools: cut later
    asked = "server" if mine else by

    async def read(since: float, until: float | None = None) -> dict[str, LatencyStats]:
        groups = await store.stats(since=since, until=until, server=server, group_by=asked)
        if not mine:
            return groups
        kept = {key: agg for key, agg in groups.items() if servers and key in servers}
        if by is not None:
            return kept
        total = merged(kept.values())
        return {} if total is None else {"": total}

    current = await read(now - window)
    previous = await read(now - 2 * window, now - window)
    await _check_server(ctx, server, bool(current or previous),
                        lambda: _any_call(store, server))
    groups = []
    for key, agg in sorted(current.items()):
        before = previous.get(key)
        groups.append(GroupStats(
            key=key, count=agg.count, errors=agg.errors, cancelled=agg.cancelled,
            success_rate=agg.success_rate,
            min_ms=agg.min_ms, avg_ms=agg.avg_ms, max_ms=agg.max_ms, p50_ms=agg.p50_ms,
            p95_ms=agg.p95_ms, p99_ms=agg.p99_ms,
            previous_count=before.count if before else 0,
            previous_p50_ms=before.p50_ms if before else None,
        ))
    inflight = {name: sum(r.statistics().inflight for r in s.replicas)
                for name, s in ctx.manager.services.items()}
    return StatsReport(window_minutes=since_minutes, groups=groups, inflight=inflight,
                       recorder=recorder.stats())


async def health_history(ctx: AdminContext, *, server: str | None = None, limit: int = 50,
                         before_id: int | None = None) -> dict[str, Any]:
    """State and health transitions of servers and replicas."""
    await ctx.health_flushed(within=2)
    store = require_store(ctx, "health history")
    rows = await store.health_records(server=server, limit=limit, before_id=before_id)
    await _check_server(ctx, server, bool(rows) or before_id is not None,
                        lambda: store.health_records(server=server, limit=1))
    return {"records": [asdict(r) for r in rows], "next_before_id": _next_id(rows, limit)}


async def audit_log(ctx: AdminContext, *, limit: int = 50, before_id: int | None = None
                    ) -> dict[str, Any]:
    """Who changed what through the admin operations."""
    rows = await require_store(ctx, "the audit log").audit(limit=limit, before_id=before_id)
    return {"entries": [asdict(r) for r in rows], "next_before_id": _next_id(rows, limit)}


async def inspector_history(ctx: AdminContext, *, server: str | None = None, limit: int = 20,
                            before_id: int | None = None) -> HistoryPage:
    """Past inspector operations (of one server, or all)."""
    store = require_store(ctx, "inspector history")
    rows = await store.inspections(server=server, limit=limit, before_id=before_id)
    await _check_server(ctx, server, bool(rows) or before_id is not None,
                        lambda: store.inspections(server=server, limit=1))
    return HistoryPage(entries=[asdict(r) for r in rows], next_before_id=_next_id(rows, limit))


async def inspector_clear(ctx: AdminContext, actor: Actor, server: str | None = None
                          ) -> dict[str, int]:
    """Delete the inspector history (of one server, or all); audited."""
    store = require_store(ctx, "inspector history")
    # Once cleared, audited whatever the caller does.
    with finishing(ctx, actor, "inspector_clear", server):
        removed = await store.clear_inspections(server)
        await _check_server(ctx, server or None, removed > 0, lambda: store.inspections(
            server=server, limit=1))
        await ctx.audit(actor, "inspector_clear", server, None, f"{removed} entries removed")
    return {"removed": removed}
