"""``mcp-gateway check``: connect to every upstream once and report, as a table or JSON."""

from __future__ import annotations

import json
import sys

import anyio

from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.config.settings import GatewaySettings, startup_limit
from fast_mcp_gateway.upstream.replica import Upstream

_COLUMNS = ("server", "transport", "status", "tools", "resources", "templates", "prompts",
            "startup_s", "error")


async def run_check(config: GatewayConfig, settings: GatewaySettings, as_json: bool) -> int:
    """Probe every enabled upstream concurrently; exit code 1 if any failed."""
    limiter = anyio.CapacityLimiter(startup_limit(settings.startup_concurrency))
    rows: dict[str, dict[str, object]] = {}

    async def probe(upstream: Upstream) -> None:
        row: dict[str, object] = {"server": upstream.label, "transport": upstream.config.kind}
        if not upstream.config.enabled:
            row.update(status="disabled")
            rows[upstream.label] = row
            return
        async with limiter:
            started = anyio.current_time()
            try:
                await upstream.probe()
            except Exception:  # noqa: BLE001 - reported in the row
                row.update(status="FAILED", error=upstream.last_error)
            else:
                counts = upstream.catalog.counts()
                row.update(status="ok", tools=counts["tools"], resources=counts["resources"],
                           templates=counts["resource_templates"], prompts=counts["prompts"])
            row["startup_s"] = round(anyio.current_time() - started, 2)
        rows[upstream.label] = row

    upstreams = [
        Upstream(replica, connect_timeout=settings.connect_timeout,
                 call_timeout=settings.call_timeout, replica=index, replicas=len(replicas),
                 default_protocol=config.options.protocol)
        for server in config.servers.values()
        for replicas in [server.replica_configs()]
        for index, (replica, _) in enumerate(replicas)
    ]
    async with anyio.create_task_group() as tg:
        for upstream in upstreams:
            tg.start_soon(probe, upstream)
    ordered = [rows[u.label] for u in upstreams]
    failed = [r for r in ordered if r.get("status") == "FAILED"]
    if as_json:
        print(json.dumps({"config": config.source, "servers": ordered, "ok": not failed},
                         indent=2))
    else:
        print(_table(ordered))
        print(f"\n{len(ordered) - len(failed)}/{len(ordered)} servers ok ({config.source})")
    if not ordered:
        print("no servers configured", file=sys.stderr)
    return 1 if failed else 0


def _table(rows: list[dict[str, object]]) -> str:
    cells = [[str(r.get(c, "") if r.get(c) is not None else "") for c in _COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(_COLUMNS)]
    widths[-1] = len(_COLUMNS[-1])  # the error column is free-form, last
    lines = ["  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
