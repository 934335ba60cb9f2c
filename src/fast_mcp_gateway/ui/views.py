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
from fast_mcp_gateway.admin.shown import shown_to
from fast_mcp_gateway.config.alerts import DEFAULT_OP as DEFAULT_OP
from fast_mcp_gateway.store import StorageError
from fast_mcp_gateway.store.stats import LatencyStats, merged

TRENDS = {"hour": (60.0, 12), "day": (1440.0, 24)}  # window minutes, buckets


@dataclass
class Card:
    status: ServerStatus
    stats: GroupStats | None
    inflight: int
    trend: list[int] = field(default_factory=list)
    p95: list[float | None] = field(default_factory=list)

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
    store_problem: str | None = None  # the store is unreachable: no counts, no trend


async def trends(ctx: AdminContext, window: str, visible: set[str] | None = None
                 ) -> tuple[Trend | None, dict[str, Trend]]:
    """``window`` ("hour" or "day") cut into buckets, from the store's aggregates: the
    total over ``visible`` servers (``None``: all) and one trend per server, from one
    grouped query per bucket."""
    if ctx.store is None:
        return None, {}
    minutes, buckets = TRENDS.get(window, TRENDS["hour"])
    size = minutes * 60 / buckets
    now = time.time()
    per_bucket: list[dict[str, LatencyStats]] = []
    for i in range(buckets):
        since = now - (buckets - i) * size
        got = await ctx.store.stats(since=since, until=since + size, group_by="server")
        per_bucket.append({k: v for k, v in got.items() if visible is None or k in visible})
    names = sorted({k for got in per_bucket for k in got})
    per_server = {n: _trend(window, minutes / buckets, [got.get(n) for got in per_bucket])
                  for n in names}
    whole = _trend(window, minutes / buckets, [merged(list(got.values()))
                                               for got in per_bucket])
    return whole, per_server


def _trend(window: str, bucket_minutes: float, rows: list[LatencyStats | None]) -> Trend:
    return Trend(window, bucket_minutes, [r.count if r else 0 for r in rows],
                 [r.errors if r else 0 for r in rows], [r.p50_ms if r else None for r in rows],
                 [r.p95_ms if r else None for r in rows])


async def trend(ctx: AdminContext, window: str, server: str | None = None) -> Trend | None:
    """One server's trend (``None``: the whole gateway's), as ``trends``."""
    whole, per_server = await trends(ctx, window, None if server is None else {server})
    if server is None or whole is None:
        return whole
    return per_server.get(server) or _trend(window, whole.bucket_minutes,
                                            [None] * len(whole.counts))


async def overview(ctx: AdminContext, visible: set[str] | None, window: str = "hour"
                   ) -> Overview:
    """Cards for the servers in ``visible`` (``None``: all), totals and the trend."""
    listed = [s for s in servers.list_servers(ctx).servers
              if visible is None or s.name in visible]
    by_server: dict[str, GroupStats] = {}
    inflight: dict[str, int] = {}
    recorder = None
    whole: Trend | None = None
    per_server: dict[str, Trend] = {}
    problem = None
    try:  # an unreachable store costs the counts and the trend, not the servers' cards
        if ctx.store is not None:
            report = await history.stats(ctx, group_by="server",
                                         since_minutes=TRENDS.get(window, TRENDS["hour"])[0])
            by_server = {g.key: g for g in report.groups}
            inflight = report.inflight
            recorder = report.recorder
        whole, per_server = await trends(ctx, window, visible)
    except StorageError as exc:
        problem = str(exc)
    cards = []
    for s in listed:
        server_trend = per_server.get(s.name)
        cards.append(Card(s, by_server.get(s.name), inflight.get(s.name, 0),
                          server_trend.counts if server_trend else [],
                          server_trend.p95 if server_trend else []))
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
    return Overview(cards, totals, whole, recorder, problem)


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


def alert_value(value: float | str | None, metric: str) -> str:
    """An alert's value or threshold as a person reads it."""
    if value is None:
        return "\N{EN DASH}"
    if isinstance(value, str):
        return value
    if metric == "success_rate":
        return f"{value * 100:.1f}%"
    if metric == "p95_ms":
        return f"{value:g} ms"
    return f"{value:g}"


def spark_label(values: list[int] | list[float | None]) -> str:
    """The values as text for a chart's accessible name (a gap is an en dash)."""
    return ", ".join("\N{EN DASH}" if v is None else f"{v:g}" for v in values)


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


def components(ctx: AdminContext, server: str, servers: frozenset[str] | None = None
               ) -> dict[str, list[dict[str, Any]]]:
    """The server's tools, resources, templates and prompts as a caller limited to
    ``servers`` (None: every server) is listed them now (the catalog view: no upstream
    round trip; ``admin/shown.py``)."""
    view = ctx.manager.view
    shown = shown_to(ctx, servers)
    kinds = {"tools": "tool", "resources": "resource", "templates": "resource_template",
             "prompts": "prompt"}
    tables: dict[str, dict[str, Any]] = {"tools": view.tools, "resources": view.resources,
                                         "templates": view.templates, "prompts": view.prompts}
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, table in tables.items():
        out[kind] = [{"exposed": exposed, "original": origin.original,
                      "definition": item.model_dump(mode="json", by_alias=True,
                                                    exclude_none=True)}
                     for exposed, (origin, item) in table.items()
                     if origin.server == server and shown(kinds[kind], exposed, origin, item)]
    return out
