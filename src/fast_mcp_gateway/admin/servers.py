"""Admin operations on servers and replicas: status, lifecycle, registrations.

Mutating operations wait, bounded by the connect timeout, for the change to take effect
and return the resulting status, so a caller sees the outcome, not a promise.  Runtime
registrations follow ``config/registrations.py``: validated like ``servers.yaml``
(errors name the field), persisted, audited, and live at once (only the servers that
changed restart; the catalog change reaches hosts as ``list_changed``).  From its store
write on an operation ends, applied and audited, whatever its caller does
(``context.finishing``); one that acts first is audited even if its caller stops
waiting for the outcome (with the state then).

Errors are the gateway's own: ``NotFound`` / ``Conflict`` (both ``AdminError``),
``ConfigError`` (invalid settings), ``UpstreamError`` (no such replica).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection
from typing import Any, Literal

import anyio

from fast_mcp_gateway.admin.context import Actor, AdminContext, finishing, require_store
from fast_mcp_gateway.admin.invalid import (
    flag_invalid,
    invalid_detail,
    not_started,
    service_of,
    with_invalid,
)
from fast_mcp_gateway.admin.listing import health as health
from fast_mcp_gateway.admin.listing import list_servers as list_servers
from fast_mcp_gateway.admin.masked import unmasked
from fast_mcp_gateway.admin.models import (
    ChangeReport,
    Curation,
    ExposedName,
    HiddenComponent,
    ReplicaStatus,
    ServerDetail,
    ServerStatus,
)
from fast_mcp_gateway.admin.registering import (
    check_new_name,
    check_no_new_command,
    check_not_nested,
)
from fast_mcp_gateway.admin.shown import shown_to
from fast_mcp_gateway.admin.status import replica_status, status_of
from fast_mcp_gateway.config.loader import parse_import
from fast_mcp_gateway.config.registrations import (
    TOMBSTONE,
    check_namespace,
    export_servers,
    not_carried,
    parse_server,
)
from fast_mcp_gateway.config.schema import (
    ServerConfig,
)
from fast_mcp_gateway.errors import ConfigError, Conflict, NotFound
from fast_mcp_gateway.routing.lifecycle import longest_request
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.routing.view import CatalogView
from fast_mcp_gateway.store import StorageError, Store
from fast_mcp_gateway.upstream.loops import not_added
from fast_mcp_gateway.upstream.replica import UpstreamState
from fast_mcp_gateway.upstream.sign_in import forget_removed


def server_detail(ctx: AdminContext, name: str, stderr_lines: int = 50,
                  replica: int | None = None,
                  may_use: Callable[[str], bool] = lambda _name: True,
                  servers: frozenset[str] | None = None) -> ServerDetail:
    """One server in depth: capabilities, instructions, exposed names, stderr tail, config
    (secrets redacted); ``replica`` chooses whose session and stderr (default: the
    first ready one).  A rename's reason names another server only if ``may_use`` (the
    caller's servers) admits it; the exposed names are those a caller limited to
    ``servers`` (None: every server) is listed (``shown.py``)."""
    if (invalid := invalid_detail(ctx, name)) is not None:
        return invalid
    service = ctx.manager.get(name)
    upstream = service.primary() if replica is None else service.replica(replica)
    view = ctx.manager.view
    renames = {(r.server, r.original): r.reason_for(may_use) for r in view.renames}
    curated = view.curation.get(upstream.name)
    for kind, original, new in curated.renamed if curated else []:
        renames.setdefault((upstream.name, original), f"renamed to '{new}' by its "
                                                      f"'{kind}s.rename' rule")
    shown, rule_for = shown_to(ctx, servers), ctx.routes.rule_for
    exposed = [
        ExposedName(kind=kind, exposed=exp, original=origin.original,
                    renamed_because=renames.get((origin.server, origin.original)),
                    routed_to=rule.target if kind == "tool" and (rule := rule_for(exp))
                    and rule.target != origin.server else None)
        for kind, table in (("tool", view.tools), ("prompt", view.prompts),
                            ("resource", view.resources), ("resource_template", view.templates))
        for exp, (origin, item) in table.items()
        if origin.server == upstream.name and shown(kind, exp, origin, item)
    ]
    base = with_invalid(ctx, [status_of(service, view)])[0].model_dump()
    return ServerDetail(
        **base,
        server_info=upstream.server_info.model_dump(mode="json", exclude_none=True)
        if upstream.server_info else None,
        capabilities=upstream.capabilities.model_dump(mode="json", exclude_none=True)
        if upstream.capabilities else None,
        instructions=upstream.instructions,
        stderr_tail=upstream.stderr.tail(stderr_lines),
        exposed=exposed,
        config=service.config.redacted(),
        curation=_curation(view, upstream.name, exposed).model_copy(update={"pinning": [
            {"kind": f.kind, "name": f.name, "state": f.state, "held": f.held,
             "markers": list(f.markers), "summary": f.summary()}
            for f in ctx.manager.pins.open_findings(upstream.name)]}),
    )


def _curation(view: CatalogView, server: str, exposed: list[ExposedName]) -> Curation:
    curated = view.curation.get(server)
    if curated is None:
        return Curation()
    renamed = {(kind, original) for kind, original, _ in curated.renamed}
    return Curation(
        hidden=[HiddenComponent(kind=h.kind, original=h.original, rule=h.rule)
                for h in curated.hidden],
        renamed=[e for e in exposed if (e.kind, e.original) in renamed],
        overridden={tool: list(fields) for tool, fields in curated.overridden},
        problems=list(curated.problems),
    )


# -- lifecycle ----------------------------------------------------------------------


async def _settle(service: Service, *, since_attempts: int | None) -> ServerStatus:
    """The status once the service made a new attempt per replica (or is disabled)."""

    def done() -> bool:
        if since_attempts is None:
            return service.state is UpstreamState.DISABLED
        return service.attempts >= since_attempts + len(service.replicas)

    await service.wait_until(done, within=service.longest_attempt)
    return status_of(service)


async def reconnect_server(ctx: AdminContext, actor: Actor, name: str) -> ServerStatus:
    """Drop every session of the server and connect again (clears a 'failed' state)."""
    service = service_of(ctx, name)
    before = service.attempts
    service.reconnect()
    try:
        return await _settle(service, since_attempts=before)
    finally:  # done, so audited: also when its caller stops waiting for the outcome
        await _audit_done(ctx, actor, "reconnect_server", name, str(service.state))


async def _audit_done(ctx: AdminContext, actor: Actor, action: str, target: str,
                      result: str | None, arguments: Any = None) -> None:
    """Audit what was done, with the state it reached (a caller cancelled while it
    waited for the outcome: the state then); the cancellation lands after."""
    with finishing(ctx, actor, action, target, arguments):
        await ctx.audit(actor, action, target, arguments, result)


async def enable_server(ctx: AdminContext, actor: Actor, name: str) -> ServerStatus:
    """Connect a disabled server and expose it again; persisted across restarts (one not
    running for its invalid entry: recorded, applied once it is corrected)."""
    if (flagged := await flag_invalid(ctx, actor, name, True)) is not None:
        return flagged
    service = service_of(ctx, name)
    # Saved first: a store that is down fails the operation before anything changes
    # (and a retry after such a failure still saves, even if the server is running).
    # Once saved, it is applied whatever the caller does (``finishing``).
    with finishing(ctx, actor, "enable_server", name):
        await _persist_enabled(ctx, name, True)
        before = service.attempts
        # Still audited when nothing moves: the request was made (and persisted).
        if moves := service.state is UpstreamState.DISABLED:
            service.set_enabled(True)
    try:
        return await _settle(service, since_attempts=before) if moves else status_of(service)
    finally:
        await _audit_done(ctx, actor, "enable_server", name, str(service.state))


async def disable_server(ctx: AdminContext, actor: Actor, name: str) -> ServerStatus:
    """Stop a server and hide its components until enabled; persisted across restarts
    (one not running for its invalid entry: recorded, it stays stopped once corrected)."""
    if (flagged := await flag_invalid(ctx, actor, name, False)) is not None:
        return flagged
    service = service_of(ctx, name)
    with finishing(ctx, actor, "disable_server", name):  # saved first, then applied
        await _persist_enabled(ctx, name, False)
        service.set_enabled(False)
    try:
        return await _settle(service, since_attempts=None)
    finally:
        await _audit_done(ctx, actor, "disable_server", name, str(service.state))


async def _persist_enabled(ctx: AdminContext, name: str, enabled: bool) -> None:
    """Make an enable/disable survive restarts (a registration carrying the flag)."""
    if ctx.store is not None:
        await ctx.store.set_server_enabled(name, enabled)


async def reset_breaker(ctx: AdminContext, actor: Actor, name: str,
                        replica: int | None = None) -> ServerStatus:
    """Close the circuit breaker of one replica (or all)."""
    service = service_of(ctx, name)
    targets = service.replicas if replica is None else [service.replica(replica)]
    for upstream in targets:
        upstream.reset_breaker()
    await _audit_done(ctx, actor, "reset_breaker", name, None, {"replica": replica})
    return status_of(service, ctx.manager.view)


async def restart_replica(ctx: AdminContext, actor: Actor, name: str,
                          replica: int) -> ReplicaStatus:
    """Restart one replica (its process for stdio) and wait for its new attempt."""
    service = service_of(ctx, name)
    upstream = service.replica(replica)
    before = upstream.attempts
    upstream.reconnect()
    try:
        await upstream.wait_until(lambda: upstream.attempts > before,
                                  within=upstream.longest_attempt)
    finally:
        await _audit_done(ctx, actor, "restart_replica", upstream.label, str(upstream.state))
    return replica_status(service, upstream)


async def drain_replica(ctx: AdminContext, actor: Actor, name: str, replica: int,
                        drain: bool = True) -> ReplicaStatus:
    """Take a replica out of the balancing pool (waiting for its calls in flight, at
    most as long as one may still take: ``lifecycle.longest_request``, as a call that
    reports progress outlives its call timeout), or put it back with ``drain=False``."""
    service = service_of(ctx, name)
    upstream = service.replica(replica)
    try:
        if drain:
            service.draining.add(replica)
            await upstream.wait_until(lambda: upstream.statistics().inflight == 0,
                                      within=longest_request(upstream))
        else:
            service.draining.discard(replica)
    finally:
        await _audit_done(ctx, actor, "drain_replica", upstream.label, None, {"drain": drain})
    return replica_status(service, upstream)


# -- registrations ------------------------------------------------------------------


def _running_configs(ctx: AdminContext) -> dict[str, ServerConfig]:
    return {name: service.config for name, service in ctx.manager.services.items()}


# (add, update) as each surface names them, for error texts.
_REMOVE = {"mcp": "gateway_remove_server", "rest": "DELETE /api/v1/servers/{name}"}
_REGISTER = {"mcp": ("gateway_add_server", "gateway_update_server"),
             "rest": ("POST /api/v1/servers", "PUT /api/v1/servers/{name}")}


_REGISTERING: weakref.WeakKeyDictionary[Any, anyio.Lock] = weakref.WeakKeyDictionary()
"""One registration at a time per gateway: two adds of one name at once both found it
free and both answered 201, the second silently replacing the first.  Between gateways
sharing a store, the store's insert-if-absent (``add_server``) decides instead."""


def registering(ctx: AdminContext) -> anyio.Lock:
    """``ctx``'s registration lock: held too by what must see no server added meanwhile
    (``pins.forget_pins``)."""
    return _REGISTERING.setdefault(ctx, anyio.Lock())


async def _register(ctx: AdminContext, actor: Actor, name: str, raw: dict[str, Any], *,
                    must_exist: bool | None, imported: bool = False) -> ChangeReport:
    async with registering(ctx):
        return await _register_now(ctx, actor, name, raw, must_exist, imported)


async def registered_elsewhere(store: Store, name: str) -> bool:
    """Whether the store holds a registration of ``name`` this gateway does not run yet
    (another gateway's, not yet applied here; a SQLite file shared by two gateways
    tells neither of the other's)."""
    return any(row.name == name and row.config not in (None, TOMBSTONE)
               for row in await store.servers())


async def _register_now(ctx: AdminContext, actor: Actor, name: str, raw: dict[str, Any],
                        must_exist: bool | None, imported: bool) -> ChangeReport:
    store = require_store(ctx, "servers added or changed at runtime")
    running = name in ctx.manager.services
    exists = running or (must_exist is not False and await registered_elsewhere(store, name))
    add, update = _REGISTER[actor.surface]
    conflict = f"server '{name}' already exists; use {update.format(name=name)}"
    if must_exist is True and not exists:
        raise not_started(ctx, name, f", or register settings in its stead: {add}") \
            or NotFound(f"no server named '{name}'; use {add}")
    if must_exist is False and exists:
        raise Conflict(conflict)
    source = (update.format(name=name) if exists else add) + (
        " body 'config'" if actor.surface == "rest" else "")
    if not exists:
        check_new_name(name, add, imported=imported)
    if raw.get("name") == name:  # as the server's detail shows its config: sent back
        raw = {k: v for k, v in raw.items() if k != "name"}
    raw = await unmasked(ctx, name, raw, source)  # the *** gateway_server_detail showed
    parsed = parse_server(name, raw, source, ctx.options.env_allow)
    check_not_nested(ctx, parsed, source)
    check_no_new_command(ctx, actor, parsed)
    check_namespace(parsed, _running_configs(ctx), source, actor.servers)
    prior = None if exists else next((r for r in await store.servers() if r.name == name), None)
    # From the store write on, it ends applied and audited (or taken back), even if its
    # caller is cancelled meanwhile (``finishing``).
    with finishing(ctx, actor, "update_server" if exists else "add_server", name, raw):
        if exists:
            await store.put_server(name, raw, parsed.enabled)
        elif not await store.add_server(name, raw, parsed.enabled):
            raise Conflict(conflict)  # another gateway on this store registered it just now
        before = ctx.manager.services.get(name)
        same = before is not None and before.runs_as(parsed)  # left running as it is
        service = await ctx.manager.replace_server(parsed)
        failure = None if exists else _start_failure(service)
        if failure is not None:
            # An add is kept only if its server starts: taken back as it was (a tombstone
            # of a removed file server stays one), the answer says why and how to keep it.
            try:
                if prior is None:
                    await store.delete_server(name)
                else:
                    await store.put_server(name, prior.config, prior.enabled)
            except StorageError as exc:
                # Stored and running (its attempts go on), as every gateway on the
                # store will run it: kept, audited, and the caller told how to undo it.
                await ctx.audit(actor, "add_server", name, raw,
                                f"added, not taken back: {failure}; {exc}")
                remove = _REMOVE[actor.surface].format(name=name)
                raise ConfigError.single(source, name, None, (
                    f"did not start ({failure}) and could not be taken back, so it stays "
                    f"added: {exc}; once the store answers, remove it ({remove}) or fix "
                    f"its settings ({update.format(name=name)})")) from exc
            await ctx.manager.remove_server(name)
            looped = not_added(failure)  # itself, or a gateway aggregating it: not again
            await ctx.audit(actor, "add_server", name, raw, f"not added: {looped or failure}")
            raise ConfigError.single(source, name, None, f"not added: {looped}" if looped else (
                f"did not start, so it was not added: {failure}; fix its settings and add "
                "it again (or add it with 'enabled: false': kept, stopped until enabled)"))
        await ctx.audit(actor, "update_server" if exists else "add_server", name, raw)
    report = (ChangeReport(added=[name]) if not running else ChangeReport(unchanged=[name])
              if same else ChangeReport(updated=[name]) if service is before
              else ChangeReport(restarted=[name]))
    return with_outcome(ctx, report)


def with_outcome(ctx: AdminContext, report: ChangeReport) -> ChangeReport:
    """``report`` naming the servers it added or restarted whose first connect attempt
    failed, and why: a registration whose command is not found answers so, not with a
    bare success (one still starting, given more time, is not named)."""
    for name in (*report.added, *report.restarted):
        service = ctx.manager.services.get(name)
        if service is None or service.state in (UpstreamState.READY, UpstreamState.DISABLED,
                                                 UpstreamState.STARTING):
            continue
        status = status_of(service)
        report.connect_failed[name] = (f"{status.state}: {status.last_error}" if status.last_error
                                  else status.state)
    return report


def _start_failure(service: Service) -> str | None:
    """Why a server just added did not start: every replica's first attempt ended without
    a session.  None while one is ready, the server is disabled, or a first attempt is
    still going on (a slow start the connect window was extended for), or it waits for
    a person's sign-in (``signed_out``: ``gateway_sign_in`` needs it added)."""
    if service.state in (UpstreamState.READY, UpstreamState.DISABLED,
                         UpstreamState.SIGNED_OUT) or any(
            r.attempts == 0 for r in service.replicas):
        return None
    return status_of(service).last_error or "it did not connect"


async def add_server(ctx: AdminContext, actor: Actor, name: str,
                     config: dict[str, Any]) -> ChangeReport:
    """Register a new server (settings as in servers.yaml); it starts now and after
    every restart."""
    return await _register(ctx, actor, name, config, must_exist=False)


async def update_server(ctx: AdminContext, actor: Actor, name: str,
                        config: dict[str, Any]) -> ChangeReport:
    """Replace a running server's settings (overriding servers.yaml): it restarts now,
    or takes them as it runs when only ``IN_PLACE`` settings changed (``Service.
    reconfigure``: the report says ``updated``); settings it runs with already change
    nothing (``unchanged``; ``gateway_reconnect_server`` restarts a server)."""
    return await _register(ctx, actor, name, config, must_exist=True)


async def remove_server(ctx: AdminContext, actor: Actor, name: str) -> ChangeReport:
    """Stop a server and forget it; a servers.yaml entry stays removed until re-added.
    A stored registration this gateway does not run (it did not validate here: logged
    as ignored at start) is forgotten too."""
    store = require_store(ctx, "servers removed at runtime")
    if name not in ctx.manager.services:
        if not await registered_elsewhere(store, name):
            raise not_started(ctx, name) or NotFound(f"no server named '{name}'")
        with finishing(ctx, actor, "remove_server", name):
            await store.delete_server(name)
            await ctx.audit(actor, "remove_server", name)
        return ChangeReport(removed=[name])
    # Once written, stopped and audited whatever the caller does.
    with finishing(ctx, actor, "remove_server", name):
        if name in ctx.file_servers:
            await store.put_server(name, TOMBSTONE, False)
        else:
            await store.delete_server(name)
        await ctx.manager.remove_server(name)
        await store.delete_credentials(name)  # its sign-in (auth: oauth) goes with it,
        forget_removed(ctx.manager, name)  # and its token in memory: added back, signed out
        await ctx.audit(actor, "remove_server", name)
    kept = sum(key[0] == name for key in ctx.manager.pins.pins)
    return ChangeReport(removed=[name], pins_kept={name: kept} if kept else {})


def export(ctx: AdminContext, fmt: Literal["yaml", "claude"] = "yaml",
           only: Collection[str] | None = None) -> str:
    """The running servers as servers.yaml or Claude-Desktop JSON, secrets as ***;
    ``only`` these (an admin token restricted to some servers exports its own)."""
    return export_servers(_exported(ctx, only), fmt)


def not_exported(ctx: AdminContext, only: Collection[str] | None = None
                 ) -> dict[str, list[str]]:
    """The keys of each server ``export(ctx, "claude", only)`` does not carry."""
    return not_carried(_exported(ctx, only))


def _exported(ctx: AdminContext, only: Collection[str] | None) -> dict[str, ServerConfig]:
    return {name: config for name, config in _running_configs(ctx).items()
            if only is None or name in only}


async def import_servers(ctx: AdminContext, actor: Actor, content: str,
                         replace_existing: bool = False) -> ChangeReport:
    """Register every server of a config text (ours or Claude Desktop's); running names
    are left unchanged unless ``replace_existing``.  Checked whole before anything is
    stored; once begun it finishes, a cancel landing after it (``finishing``)."""
    imported = parse_import(content, env_allow=ctx.options.env_allow)
    # All or nothing: every namespace is checked against what would run afterwards
    # before the first server is saved or started.
    after = dict(_running_configs(ctx))
    entries: dict[str, dict[str, Any]] = {}  # as they will be stored, shown *** kept
    for name, server in imported.config.servers.items():
        if name in ctx.manager.services and not replace_existing:
            continue
        if name not in ctx.manager.services:
            check_new_name(name, "gateway_import_servers", imported=True)
        entries[name] = await unmasked(ctx, name, imported.entries[name],
                                       "gateway_import_servers")
        check_not_nested(ctx, server, "gateway_import_servers")
        check_namespace(server, {n: c for n, c in after.items() if n != name},
                        "gateway_import_servers")
        after[name] = server
    report = ChangeReport()
    failed: list[str] = []
    # Once validated, the import finishes whatever its caller does (``finishing``), as
    # each add or update in it does from its store write: cut by a cancel, the servers
    # done so far stayed imported, the rest not, and the caller was answered nothing.
    with finishing(ctx, actor, "import_servers", None):
        for name in imported.config.servers:
            if name not in entries:
                report.unchanged.append(name)
                continue
            # Stored as written (ours, or converted from Claude's), ${VAR} unexpanded.
            try:
                outcome = await _register(ctx, actor, name, entries[name], imported=True,
                                          must_exist=None if replace_existing else False)
            except Conflict:  # registered by another gateway on this store meanwhile
                report.unchanged.append(name)
                continue
            except ConfigError as exc:  # validated above: its server did not start
                failed.append(str(exc))
                continue
            report.added += outcome.added
            report.restarted += outcome.restarted
            report.updated += outcome.updated
            report.unchanged += outcome.unchanged
            report.connect_failed |= outcome.connect_failed
    report.error = "; ".join(failed) or None
    return report


async def reload_config(ctx: AdminContext, actor: Actor) -> ChangeReport:
    """Re-read servers.yaml now; an invalid file is rejected with its errors (in the
    report) and the running config is kept."""
    return with_outcome(ctx, await ctx.reload_config(actor))
