"""``mcp-gateway logs`` and ``mcp-gateway stats``: read the store (safe while it runs)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime

import anyio

from fast_mcp_gateway.config.auth import warn_unknown_servers
from fast_mcp_gateway.config.registrations import TOMBSTONE, merge, registered
from fast_mcp_gateway.config.schema import GatewayConfig, ServerConfig
from fast_mcp_gateway.config.settings import default_db_path
from fast_mcp_gateway.store import (
    Invocation,
    Registration,
    StorageError,
    Store,
    is_url,
    open_store,
)
from fast_mcp_gateway.store.stats import TASK_END
from fast_mcp_gateway.telemetry.redaction import escape_controls, mask_text

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
REMOVED_AT_RUNTIME = "file, removed at runtime"  # a source: a TOMBSTONE over the file's entry


def parse_since(text: str | None) -> float | None:
    """'10m' -> unix time ten minutes ago."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not match:
        raise StorageError(f"--since {text!r}: use a number and s, m, h or d (e.g. 10m)")
    return time.time() - float(match.group(1)) * _UNITS[match.group(2)]


def _db_path(args: argparse.Namespace) -> str:
    """The store to read: a file path or a URL (kept as text: Path collapses "//")."""
    return str(args.db or os.environ.get("MCP_GATEWAY_DB") or default_db_path())


async def _missing(path: str) -> bool:
    """A store file that does not exist (a URL names a database: never "missing")."""
    return not is_url(path) and not await anyio.Path(path).exists()


def stdout_closed() -> int:
    """The reader of stdout left (``| head -1``): stop quietly, as Unix tools do.

    Python's recipe: point stdout at devnull, so that the flush at exit cannot fail
    again and print "Exception ignored"; exit 1 as Python does on EPIPE.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


async def run_report(args: argparse.Namespace) -> int:
    """``mcp-gateway logs`` / ``stats``; exit 2 on a store error, 1 if stdout closed."""
    try:
        return await _run_report(args)
    except BrokenPipeError:
        return stdout_closed()


async def _run_report(args: argparse.Namespace) -> int:
    try:  # a typo in the command line is said first, before what the store says
        since = parse_since(args.since)
    except StorageError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 2
    path = _db_path(args)
    if await _missing(path):
        print(f"mcp-gateway: no store at {path} (has the gateway run with call logging?)",
              file=sys.stderr)
        return 2
    try:
        store = await open_store(path)
        try:
            if args.command == "logs":
                await _logs(store, args, since)
            else:
                await _stats(store, args, since)
        finally:
            await store.close()
    except StorageError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 2
    return 0


_LOG_COLUMNS = ("time", "status", "ms", "server", "exposed", "replica", "retries", "error")
# On a store several gateways share, which of them served each call (after "ms").
_SHARED_LOG_COLUMNS = (*_LOG_COLUMNS[:3], "instance", *_LOG_COLUMNS[3:])


async def _logs(store: Store, args: argparse.Namespace, since: float | None) -> None:
    # Followed in the order records are written (a call's when it ends, a task's end when
    # it is seen), not by start: a long call ending after a later short one, or a task's
    # end, carries an earlier start and was never shown.  The position is taken before
    # the first page is read, so nothing written meanwhile is missed (nor shown twice).
    _, position = await store.invocations_written(None)
    rows, _ = await store.invocations(since=since, server=args.server, tool=args.tool,
                                      status=args.status, instance=args.instance,
                                      limit=args.limit)
    rows.reverse()  # oldest first, like a log
    shared = store.shared
    # Kept while following: the rows stay aligned.
    widths = [len(c) for c in (_SHARED_LOG_COLUMNS if shared else _LOG_COLUMNS)]
    _print_rows(rows, args.json, header=True, widths=widths, instance=shared)
    if not rows:
        await _say_unknown_names(store, args)
    shown = {r.id for r in rows}
    down = False
    if args.follow:
        # The store going away is said here, once per outage: asyncpg's pool would print
        # a traceback at each of its own reconnect attempts.
        logging.getLogger("asyncpg.pool").setLevel(logging.CRITICAL)
    while args.follow:
        await anyio.sleep(1.0)
        try:
            batch, position = await store.invocations_written(
                position, server=args.server, tool=args.tool, status=args.status,
                instance=args.instance)
        except StorageError as exc:  # a database restart: keep following, say so once
            if not down:
                print(f"mcp-gateway: {exc}; still following, trying again every second",
                      file=sys.stderr, flush=True)
            down = True
            continue
        if down:
            print("mcp-gateway: the store is reachable again; following", file=sys.stderr,
                  flush=True)
            down = False
        new = [r for r in batch if r.id not in shown]
        shown.difference_update(r.id for r in batch)  # a first-page record comes once more
        if new:
            _print_rows(new, args.json, header=False, widths=widths, instance=shared)


_RECENT = 1000  # records an unknown --instance is looked for in


async def _say_unknown_names(store: Store, args: argparse.Namespace) -> None:
    """Nothing matched: a ``--server`` (or ``--tool``) no record ever had is named, with
    the ones the store has (a typo printed an empty table, nothing more); an
    ``--instance`` the newest records do not name, with the ones they do."""
    for flag, value, group in (("--server", args.server, "server"),
                               ("--tool", getattr(args, "tool", None), "tool")):
        if value is None:
            continue
        known = sorted(k for k in await store.stats(group_by=group) if k)
        if value not in known:
            print(f"mcp-gateway: no call of {group} {value!r} is recorded ({flag}); "
                  f"{group}s with calls: {', '.join(known[:20]) or 'none yet'}"
                  f"{', ...' if len(known) > 20 else ''}", file=sys.stderr)
    if (instance := getattr(args, "instance", None)) is not None:
        recent, _ = await store.invocations(limit=_RECENT)
        named = sorted({r.instance_id for r in recent if r.instance_id})
        if instance not in named:
            print(f"mcp-gateway: none of the latest {len(recent)} calls was served by "
                  f"gateway {instance!r} (--instance); gateways in them: "
                  f"{', '.join(named[:20]) or 'none named'}"
                  f"{', ...' if len(named) > 20 else ''}", file=sys.stderr)


def _print_rows(rows: list[Invocation], as_json: bool, *, header: bool,
                widths: list[int] | None = None, instance: bool = False) -> None:
    if as_json:
        for r in rows:
            row = asdict(r)
            # Records are masked when built; this also covers ones an older version stored.
            for key in ("error", "arguments"):
                if isinstance(row.get(key), str):
                    row[key] = mask_text(row[key])
            print(json.dumps(row), flush=True)
        return
    cells = [[datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M:%S"),
              # A task's end has its call's tool, start and trace: marked, not a twin.
              r.status, f"{r.duration_ms:.1f}", r.server or "-",
              f"{r.exposed} (task)" if r.kind == TASK_END else r.exposed,
              r.replica or "", str(r.retries), mask_text(r.error or "")[:80]] for r in rows]
    if instance:
        for cell, r in zip(cells, rows, strict=True):
            cell.insert(3, r.instance_id or "")
    print(_table(_SHARED_LOG_COLUMNS if instance else _LOG_COLUMNS, cells, header=header,
                 widths=widths), flush=True)


async def _stats(store: Store, args: argparse.Namespace, since: float | None) -> None:
    groups = await store.stats(since=since, server=args.server, group_by=args.by)
    if not groups:
        await _say_unknown_names(store, args)
    if args.json:
        print(json.dumps({k or "all": v.as_dict() for k, v in sorted(groups.items())}, indent=2))
        return
    columns = (args.by or "scope", "calls", "errors", "success", "min", "avg", "p50", "p95",
               "p99", "max")

    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    cells = [[key or "all", str(a.count), str(a.errors),
              "" if a.success_rate is None else f"{100 * a.success_rate:.1f}%",
              ms(a.min_ms), ms(a.avg_ms), ms(a.p50_ms), ms(a.p95_ms), ms(a.p99_ms),
              ms(a.max_ms)] for key, a in sorted(groups.items())]
    print(_table(columns, cells, header=True) if cells else "no calls recorded in that window")
    print("(latencies in ms; percentiles from 25 % wide histogram buckets)")


def _table(columns: tuple[str, ...], rows: list[list[str]], *, header: bool,
           widths: list[int] | None = None) -> str:
    """``rows`` under ``columns``, each as wide as its widest cell; ``widths`` (one per
    column) are the least widths, updated in place (``logs --follow`` prints its table in
    pieces: a later piece keeps the columns of the earlier ones, widening only for a
    longer cell)."""
    # One record, one line: a multi-line upstream error must not break the table, nor
    # an escape sequence in it act on the terminal.
    rows = [[escape_controls(" ⏎ ".join(part.strip() for part in c.splitlines()))
             for c in r] for r in rows]
    least = widths if widths is not None else [0] * len(columns)
    least[:] = [max([least[i], len(c), *(len(r[i]) for r in rows)])
                for i, c in enumerate(columns)]
    widths = least
    lines = []
    if header:
        lines += ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
                  "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


@dataclass(frozen=True)
class Merged:
    """What a gateway on ``store`` with this config runs: ``servers`` (the file merged
    with the store's runtime registrations), each name's ``source``, and ``problems``
    (registrations that do not validate here, skipped)."""

    servers: dict[str, ServerConfig]
    sources: dict[str, str]
    problems: list[str]
    store: str | None

    @property
    def runtime(self) -> list[str]:
        """The servers that run from a runtime registration (not from the file)."""
        return [n for n in self.servers if self.sources.get(n, "").startswith("runtime")]


async def merged_servers(config: GatewayConfig, path: str | None) -> Merged:
    """The file's servers merged with the registrations in the store at ``path`` (none
    when the file does not exist: it is not created; nor when ``path`` is None, the
    ``--no-db`` case) -- what ``serve`` would run."""
    registrations: list[Registration] = []
    if path is not None and not await _missing(path):
        store = await open_store(path)
        try:
            registrations = await store.servers()
        finally:
            await store.close()
    servers, problems = merge(dict(config.servers), registrations, config.options.env_allow)
    if config.tokens_checked_later:  # the CLI's load said nothing of tokens' servers
        warn_unknown_servers(config.options.auth, config.servers, registered(registrations))
    by_name = {r.name: r for r in registrations}
    sources: dict[str, str] = {}
    for name in sorted(set(config.servers) | set(by_name)):
        reg = by_name.get(name)
        if reg is not None and reg.config == TOMBSTONE:
            sources[name] = REMOVED_AT_RUNTIME
        elif reg is not None and reg.config is not None:
            sources[name] = "runtime" + (" (overrides the file)" if name in config.servers
                                         else "")
        elif reg is not None:
            sources[name] = "file (enabled flag set at runtime)"
        else:
            sources[name] = "file"
    return Merged(servers, sources, problems, path)


def _cell(column: str, value: object) -> str:
    """One value of ``mcp-gateway servers``' table as text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)[:70] if column == "target" else str(value)


async def run_servers(config: GatewayConfig, args: argparse.Namespace) -> int:
    """``mcp-gateway servers``: what the gateway would run, and where each entry comes from."""
    try:
        return await _run_servers(config, args)
    except BrokenPipeError:
        return stdout_closed()


async def _run_servers(config: GatewayConfig, args: argparse.Namespace) -> int:
    path = None if args.no_db else _db_path(args)
    merged = await merged_servers(config, path)
    servers, problems = merged.servers, merged.problems
    rows = []
    for name, source in merged.sources.items():
        server = servers.get(name)
        target = "" if server is None else (
            f"{server.command} {' '.join(server.args)}".strip() if server.command
            else server.url or f"{len(server.instances)} instances")
        # Typed and whole for --json (true, 2, the full target); the table says yes/no
        # and cuts the target to its width.
        rows.append({"server": name, "source": source,
                     "transport": server.kind if server else None,
                     "enabled": None if server is None else server.enabled,
                     "replicas": None if server is None else len(server.replica_configs()),
                     "target": mask_text(target, server.secrets if server else ())})
    if args.json:
        print(json.dumps({"config": config.source,
                          "store": None if path is None else mask_text(path), "servers": rows,
                          "problems": [mask_text(p) for p in problems],
                          "invalid": {n: e.error for n, e in config.invalid.items()}},
                         indent=2))
    else:
        columns = ("server", "source", "transport", "enabled", "replicas", "target")
        print(_table(columns, [[_cell(c, r[c]) for c in columns] for r in rows],
                     header=True))
        for problem in problems:
            print(f"ignored registration: {mask_text(problem)}")
        for entry in config.invalid.values():  # serve leaves them out (state 'invalid')
            print(f"invalid entry, not started: {entry.error}")
    return 0
