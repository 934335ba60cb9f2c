"""``mcp-gateway check``: connect to every upstream once and report, as a table or JSON.

It checks what ``serve`` with the same ``--config`` and ``--db`` runs: the file's
servers merged with the store's runtime registrations (``reports.merged_servers``, as
``mcp-gateway servers`` lists them), each row saying where it comes from.  With
``--no-db`` (``db`` None), as ``serve --no-db``, the file's servers alone: the store is
not opened.  A server whose entry is invalid (``serve`` does not start it) is a row in
status ``invalid`` with the loader's message, and fails the check as a failed connect does.
A server that is the gateway serving this config and store on this machine, or a
gateway that aggregates it, fails as ``serve`` refuses it ("this server is this gateway
itself ..."): the probes share one ``Lineage`` standing for that gateway
(``upstream/loops.served_here``).

A row's ``status`` is one word, the same in the table and in ``--json``: ``ok`` (it
connected and listed), ``failed`` (it did not: ``error`` says why), ``invalid`` (its
entry), ``disabled`` (``enabled: false``: not connected), ``signed_out`` (``auth: {type:
oauth}`` and no usable sign-in in the store: ``error`` says how to sign in; it fails the
check too).  Its counts are what hosts
see of the server (its rules applied, no task-only tool on a handshake-era session:
``admin.status.exposed_counts``, as ``gateway_list_servers`` counts); the tools it lists
that hosts do not see are ``tools_not_exposed`` (by why), and a line under the table;
so are its curation rules that did nothing (``curation_problems``: a rename or override
of a tool it does not have, an include or exclude glob matching none, a typo, with the
closest name it has; as ``gateway_server_detail`` lists them and ``serve`` logs them:
``routing/build.BuildLog``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import anyio

from fast_mcp_gateway.admin.status import TASK_ONLY, exposed_counts
from fast_mcp_gateway.cli.reports import REMOVED_AT_RUNTIME, merged_servers
from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.config.settings import GatewaySettings, startup_limit
from fast_mcp_gateway.routing.curation import curate
from fast_mcp_gateway.telemetry.redaction import escape_controls, mask_text
from fast_mcp_gateway.upstream.loops import Lineage, served_here
from fast_mcp_gateway.upstream.model import needs_sign_in
from fast_mcp_gateway.upstream.replica import Upstream
from fast_mcp_gateway.upstream.sign_in_status import sign_in_status

_BOOK_OPEN: ContextVar[bool] = ContextVar("check_sign_ins_open", default=False)
_COLUMNS = ("server", "transport", "status", "tools", "resources", "templates", "prompts",
            "startup_s", "source", "error")


async def run_check(config: GatewayConfig, settings: GatewaySettings, as_json: bool,
                    db: str | None, merged: Any = None, allow_signed_out: bool = False) -> int:
    """Probe every enabled upstream ``serve`` would run with the store ``db`` (None: no
    store) concurrently; exit code 1 if any failed (``allow_signed_out``: a server
    only signed out is said, and does not fail the check)."""
    merged = merged or await merged_servers(config, db)
    runtime = merged.runtime
    if db is not None and merged is not None and any(
            s.auth for s in merged.servers.values()) and not _BOOK_OPEN.get():
        return await _with_sign_ins(db, settings, lambda: run_check(
            config, settings, as_json, db, merged, allow_signed_out))
    limiter = anyio.CapacityLimiter(startup_limit(settings.startup_concurrency))
    rows: dict[str, dict[str, object]] = {}

    async def probe(upstream: Upstream, source: str) -> None:
        row: dict[str, object] = {"server": upstream.label, "transport": upstream.config.kind,
                                  "source": source}
        if not upstream.config.enabled:
            row.update(status="disabled")
            rows[upstream.label] = row
            return
        async with limiter:
            started = anyio.current_time()
            try:
                await upstream.probe()
            except Exception as exc:  # noqa: BLE001 - reported in the row
                row.update(status="signed_out" if needs_sign_in(exc) else "failed",
                           error=upstream.last_error)
            else:
                curated = curate(upstream.config, upstream.catalog)
                counts, why = exposed_counts(curated, upstream.is_modern)
                row.update(status="ok", tools=counts["tools"], resources=counts["resources"],
                           templates=counts["resource_templates"], prompts=counts["prompts"],
                           tools_not_exposed=why)
                if curated.problems:   # a typo'd rename or override: it did nothing
                    row["curation_problems"] = curated.problems
            row["startup_s"] = round(anyio.current_time() - started, 2)
        if (sign_in := sign_in_status(upstream.config, upstream.state)) is not None:
            row["sign_in"] = sign_in.model_dump()  # never a token
        rows[upstream.label] = row

    # The timeouts serve gives them (routing/manager.py): gateway.timeouts over the flags.
    timeouts = config.options.timeouts
    lineage = Lineage(alias=served_here(settings.config, db))  # serve's loop guard
    upstreams = [
        (Upstream(replica, connect_timeout=timeouts.connect or settings.connect_timeout,
                  call_timeout=timeouts.call or settings.call_timeout,
                  max_total=timeouts.max_total, replica=index, replicas=len(replicas),
                  default_protocol=config.options.protocol, lineage=lineage),
         "runtime" if server.name in runtime else "file")
        for server in merged.servers.values()
        for replicas in [server.replica_configs()]
        for index, (replica, _) in enumerate(replicas)
    ]
    async with anyio.create_task_group() as tg:
        for upstream, source in upstreams:
            tg.start_soon(probe, upstream, source)
    ordered = [rows[u.label] for u, _ in upstreams]
    servers = {u.label: u.config.name for u, _ in upstreams}  # a replica's row: its server
    ordered += [{"server": name, "transport": entry.transport, "status": "invalid",
                 "source": "file", "error": entry.error}
                for name, entry in config.invalid.items() if name not in merged.servers]
    failed = [r for r in ordered if r.get("status") in ("failed", "invalid", "signed_out")]
    allowed = [str(r["server"]) for r in failed if r.get("status") == "signed_out"] \
        if allow_signed_out else []
    failed = [r for r in failed if str(r["server"]) not in allowed]
    # The file's servers removed at runtime (a tombstone in the store): not run, no row.
    removed = [name for name, source in merged.sources.items()
               if source == REMOVED_AT_RUNTIME and name in config.servers]
    origin = config.source + (f" + {len(runtime)} registered at runtime in {mask_text(db)}"
                              if runtime and db is not None else
                              ", no store (--no-db)" if db is None else "")
    if as_json:
        print(json.dumps({"config": config.source,
                          "store": None if db is None else mask_text(db), "servers": ordered,
                          "problems": [mask_text(p) for p in merged.problems],
                          "removed_at_runtime": removed, "ok": not failed,
                          "signed_out_allowed": allowed}, indent=2))
    else:
        print(_table(ordered))
        for problem in merged.problems:
            print(f"ignored registration: {mask_text(problem)}")
        for name in removed:
            print(f"{name}: not checked: its entry in {config.source} was removed at runtime "
                  f"(gateway_remove_server; kept in {mask_text(db or 'the store')}), so serve "
                  "does not run it; add it again (gateway_add_server, REST POST "
                  "/api/v1/servers or the dashboard) to run it, or delete the entry")
        for row in ordered:
            if isinstance(why := row.get("tools_not_exposed"), dict) and why:
                print(_not_exposed(str(row["server"]), why))
            if isinstance(problems := row.get("curation_problems"), list):
                print(f"{row['server']}: {len(problems)} rule{'s' if len(problems) > 1 else ''}"
                      f" did nothing: {'; '.join(problems)}")
        print(f"\n{_summary(ordered, servers)} ({origin})")
    if allowed:
        first = servers.get(allowed[0], allowed[0])
        print(f"signed out, allowed by --allow-signed-out: {', '.join(allowed)} (not "
              f"connected until signed in: 'mcp-gateway login {first}', the "
              "gateway_sign_in tool or the dashboard)", file=sys.stderr)
    if not ordered:
        print("no servers configured: add one under 'servers:' in the config (README: "
              "'servers.yaml'), or with 'gateway_add_server' while serving",
              file=sys.stderr)
    return 1 if failed else 0


def _summary(rows: list[dict[str, object]], servers: dict[str, str]) -> str:
    """``2/3 servers ok, 1 disabled``: servers, not rows (a server of replicas has a row
    per replica, ``notes#0``), one counted ok when every replica is."""
    status: dict[str, set[object]] = {}
    for row in rows:
        status.setdefault(servers.get(str(row["server"]), str(row["server"])),
                          set()).add(row.get("status"))
    disabled = sum(1 for seen in status.values() if seen == {"disabled"})
    probed = len(status) - disabled
    ok = sum(1 for seen in status.values() if seen <= {"ok", "disabled"} and "ok" in seen)
    replicas = len(rows) - len(status)
    return (f"{ok}/{probed} servers ok" + (f", {disabled} disabled" if disabled else "")
            + (f", {len(rows)} replicas in all" if replicas else ""))


def _not_exposed(server: str, why: dict[str, int]) -> str:
    """The line saying which of ``server``'s tools hosts do not see, and why."""
    parts = [f"{n} {'runs' if n == 1 else 'run'} only as a task (its session is "
             "handshake-era, which has no tasks; 'protocol: 2026-07-28' relays them if the "
             "server speaks it)" if rule == TASK_ONLY else
             f"{n} held by pinning until approved" if rule == "pinning" else
             f"{n} hidden by its '{rule}' rule" for rule, n in why.items()]
    total = sum(why.values())
    return (f"{server}: {total} tool{'s' if total > 1 else ''} not exposed to hosts: "
            + "; ".join(parts))


def _table(rows: list[dict[str, object]]) -> str:
    # An upstream's error (its stderr quoted) shows its escape sequences, not runs them.
    cells = [[escape_controls(str(r.get(c, "") if r.get(c) is not None else ""))
              for c in _COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(_COLUMNS)]
    widths[-1] = len(_COLUMNS[-1])  # the error column is free-form, last
    lines = ["  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


async def _with_sign_ins(db: str, settings: GatewaySettings,
                         check: Callable[[], Awaitable[int]]) -> int:
    """``check`` with the store's sign-ins readable (servers with ``auth: {type: oauth}``
    connect with the stored sign-in, as ``serve`` would)."""
    from fast_mcp_gateway.store import open_store
    from fast_mcp_gateway.upstream.oauth_grant import BOOK, CredentialBook

    store = await open_store(db)
    keys = [key.get_secret_value() for key in settings.credential_keys]
    token, opened = BOOK.set(CredentialBook(keys, db, lambda: store)), _BOOK_OPEN.set(True)
    try:
        return await check()
    finally:
        BOOK.reset(token)
        _BOOK_OPEN.reset(opened)
        await store.close()
