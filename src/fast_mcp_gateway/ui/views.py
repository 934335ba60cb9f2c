"""What the pages show, read from the gateway's snapshots and the store (never upstreams).

Server cards come from ``admin.servers.list_servers`` (replica statistics snapshots),
request counts and latency percentiles from ``admin.history.stats`` (the store's
per-minute aggregates), trends from the same store query over consecutive buckets.
A gateway serving without a store shows the snapshots and says that statistics are off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fast_mcp_gateway.admin import history, servers
from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.admin.models import GroupStats, ServerStatus

TRENDS = {"hour": (60.0, 12), "day": (1440.0, 24)}  # window minutes, buckets


@dataclass
class Card:
    status: ServerStatus
    stats: GroupStats | None
    inflight: int
    trend: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.status.name


@dataclass
class Trend:
    """Per-bucket totals, oldest first."""

    window: str
    bucket_minutes: float
    counts: list[int]
    errors: list[int]
    p50: list[float | None]
    p95: list[float | None]

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass
class Overview:
    cards: list[Card]
    totals: dict[str, Any]
    trend: Trend | None
    recorder: dict[str, int] | None


async def trend(ctx: AdminContext, window: str, server: str | None = None,
                visible: set[str] | None = None) -> Trend | None:
    """``window`` ("hour" or "day") cut into buckets, from the store's aggregates;
    ``visible`` limits the totals to those servers (a restricted viewer)."""
    if ctx.store is None:
        return None
    minutes, buckets = TRENDS.get(window, TRENDS["hour"])
    size = minutes * 60 / buckets
    now = time.time()
    counts, errors, p50, p95 = [], [], [], []
    for i in range(buckets):
        since = now - (buckets - i) * size
        group_by = "server" if visible is not None and server is None else None
        got = await ctx.store.stats(since=since, until=since + size, server=server,
                                    group_by=group_by)
        rows = [agg for key, agg in got.items() if visible is None or key in visible]
        counts.append(sum(r.count for r in rows))
        errors.append(sum(r.errors for r in rows))
        # Percentiles do not add up across groups: one group (or the total) only.
        p50.append(rows[0].p50_ms if len(rows) == 1 else None)
        p95.append(rows[0].p95_ms if len(rows) == 1 else None)
    return Trend(window, minutes / buckets, counts, errors, p50, p95)


async def overview(ctx: AdminContext, visible: set[str] | None, window: str = "hour"
                   ) -> Overview:
    """Cards for the servers in ``visible`` (``None``: all), totals and the trend."""
    listed = [s for s in servers.list_servers(ctx).servers
              if visible is None or s.name in visible]
    by_server: dict[str, GroupStats] = {}
    inflight: dict[str, int] = {}
    recorder = None
    if ctx.store is not None:
        report = await history.stats(ctx, group_by="server",
                                     since_minutes=TRENDS.get(window, TRENDS["hour"])[0])
        by_server = {g.key: g for g in report.groups}
        inflight = report.inflight
        recorder = report.recorder
    cards = [Card(s, by_server.get(s.name), inflight.get(s.name, 0)) for s in listed]
    mine = [by_server[c.name] for c in cards if c.name in by_server]
    count = sum(g.count for g in mine)
    errors = sum(g.errors for g in mine)
    totals = {
        "servers": len(cards), "ready": sum(c.status.state == "ready" for c in cards),
        "healthy": sum(c.status.health == "HEALTHY" for c in cards),
        "requests": count, "errors": errors,
        "success_rate": None if not count else (count - errors) / count,
        "inflight": sum(c.inflight for c in cards),
    }
    whole = await trend(ctx, window, visible=visible)
    return Overview(cards, totals, whole, recorder)


def sparkline(values: list[int] | list[float | None], width: int = 120, height: int = 28
              ) -> str:
    """SVG polyline points for ``values`` (``None`` gaps drawn as 0), scaled to fit."""
    nums = [float(v or 0) for v in values]
    if not nums:
        return ""
    top = max(nums) or 1.0
    step = width / max(1, len(nums) - 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}"
                    for i, v in enumerate(nums))


def bars(values: list[int] | list[float | None], width: int = 600, height: int = 120
         ) -> list[dict[str, float]]:
    """Bar rectangles for a chart of ``values`` (x, y, w, h), scaled to fit."""
    nums = [float(v or 0) for v in values]
    if not nums:
        return []
    top = max(nums) or 1.0
    w = width / len(nums)
    return [{"x": i * w + 1, "w": max(1.0, w - 2), "h": (v / top) * (height - 4),
             "y": height - (v / top) * (height - 4), "v": v} for i, v in enumerate(nums)]


def components(ctx: AdminContext, server: str) -> dict[str, list[dict[str, Any]]]:
    """The server's tools, resources, templates and prompts as hosts see them now
    (the catalog view: no upstream round trip)."""
    view = ctx.manager.view
    tables: dict[str, dict[str, Any]] = {"tools": view.tools, "resources": view.resources,
                                         "templates": view.templates, "prompts": view.prompts}
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, table in tables.items():
        out[kind] = [{"exposed": exposed, "original": origin.original,
                      "definition": item.model_dump(mode="json", by_alias=True,
                                                    exclude_none=True)}
                     for exposed, (origin, item) in table.items() if origin.server == server]
    return out
