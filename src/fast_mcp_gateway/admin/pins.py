"""Pinned definitions: what changed, approving it, and keeping the store in step.

``pin_status``, ``approve_changes`` and ``forget_pins`` are admin operations (the
``gateway_pin_status``, ``gateway_approve_changes`` and ``gateway_forget_pins`` tools,
``GET /api/v1/pins``, ``POST /api/v1/pins/approve`` and ``DELETE /api/v1/pins/{name}``
adapt them).  ``approve_stored`` is the CLI's approval, made on the store alone
(``mcp-gateway pins approve``): a running gateway picks it up through ``follow_pins``,
which re-reads the pins of servers with open findings.  The CLI's ``pins forget``
is the store's ``forget_pins``: the rows and the audit entry in one transaction.

A removed server's pins are kept (docs/ARCHITECTURE.md, "Pinning"): added again, it is
checked against what was approved, not trusted anew.  The listings leave out the
findings of servers no longer configured and count what is kept of them
(``not_configured``); ``forget_pins`` drops it, audited, for a server not configured,
here nor in another running gateway's file (``configured_elsewhere``).

``load_pins`` and ``follow_pins``, the gateway's pin worker, are ``pin_worker.py``'s.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field

from fast_mcp_gateway.admin.context import Actor, AdminContext, finishing, require_store
from fast_mcp_gateway.config.checks import suggest
from fast_mcp_gateway.errors import AdminError, ConfigError, NotFound
from fast_mcp_gateway.routing.pinning import Finding, PinBook, diff
from fast_mcp_gateway.store.base import PinStore, StorageError, Store, StoreUnavailable
from fast_mcp_gateway.store.records import PinRecord, forgotten


class PinFinding(BaseModel):
    """A component whose definition is not the approved one, or whose text is flagged."""

    server: str
    kind: str
    name: str = Field(description="the upstream's own name or URI")
    state: str = Field(description="changed | new | flagged")
    held: bool = Field(description="hidden and refused until approved (pinning: enforce)")
    changed_fields: list[str] = Field(default_factory=list)
    markers: list[str] = Field(default_factory=list, description="injection markers found")
    summary: str
    diff: str = Field(description="unified diff, approved -> current definition")


class PinReport(BaseModel):
    findings: list[PinFinding] = Field(description="of the servers configured")
    pinned: dict[str, int] = Field(description="server -> approved definitions")
    modes: dict[str, str] = Field(description="server -> off | warn | enforce")
    not_configured: dict[str, int] = Field(default_factory=dict, description=(
        "server -> approved definitions kept of a server no longer configured (checked "
        "against if it is added again; its findings are not listed): gateway_forget_pins "
        "drops them"))


class ForgetReport(BaseModel):
    server: str
    approved: int = Field(description="approved definitions dropped")
    pending: int = Field(description="pending (changed, new, flagged) definitions dropped")


class ApprovalReport(BaseModel):
    server: str
    approved: list[PinFinding]
    remaining: list[PinFinding] = Field(description="findings of the server left open")


def finding_model(f: Finding) -> PinFinding:
    return PinFinding(server=f.server, kind=f.kind, name=f.name, state=f.state, held=f.held,
                      changed_fields=f.changed_fields if f.state == "changed" else [],
                      markers=list(f.markers), summary=f.summary(), diff=f.diff())


def _book(ctx: AdminContext) -> PinBook:
    return ctx.manager.pins


def configured(ctx: AdminContext, server: str) -> bool:
    """Whether ``server`` is one of the gateway's (running, disabled, or an invalid
    entry of the file or a registration)."""
    return (server in ctx.manager.services or server in ctx.file_servers
            or server in ctx.invalid_servers)


def pin_status(ctx: AdminContext, server: str | None = None) -> PinReport:
    """Open findings (changed, new, flagged definitions, with diffs) and pin counts of
    the servers configured; what is kept of others is counted in ``not_configured``."""
    if server is not None:
        ctx.manager.get(server)
    book = _book(ctx)
    pinned: dict[str, int] = {}
    kept: dict[str, int] = {}
    for (name, _, _) in book.pins:
        if server is None or name == server:
            counts = pinned if configured(ctx, name) else kept
            counts[name] = counts.get(name, 0) + 1
    modes: dict[str, str] = {name: s.config.pinning or ctx.options.pinning
             for name, s in ctx.manager.services.items() if server is None or name == server}
    return PinReport(findings=[finding_model(f) for f in book.open_findings(server)
                               if configured(ctx, f.server)],
                     pinned=dict(sorted(pinned.items())), modes=modes,
                     not_configured=dict(sorted(kept.items())))


async def forget_pins(ctx: AdminContext, actor: Actor, server: str) -> ForgetReport:
    """Drop every pinned and pending definition of ``server``, which must not be
    configured (``AdminError`` saying what to do then): added again, it is trusted on
    first use.  ``NotFound`` when nothing is kept of it.

    Configured means here or in the store: a registration another gateway on the store
    made and this one has not applied yet (a SQLite file tells none of them) is its
    server too, as ``mcp-gateway pins forget`` counts it; and no add of it runs while the
    store is read and its rows deleted (the registration lock), which the check before
    it missed, leaving a server just added again with nothing to be checked against."""
    from fast_mcp_gateway.admin.servers import registered_elsewhere, registering

    if configured(ctx, server):
        raise AdminError(refusal(server))
    store = require_store(ctx, "pinned definitions")
    async with registering(ctx):
        if configured(ctx, server) or await registered_elsewhere(store, server):
            raise AdminError(refusal(server))
        elsewhere = await configured_elsewhere(store, server, ctx.holder)
        if elsewhere is not None:
            raise AdminError(elsewhere)
        with finishing(ctx, actor, "forget_pins", server):
            approved, pending = await forget_stored(store, server)
            _book(ctx).forget(server)
            await ctx.audit(actor, "forget_pins", server, None,
                            forgotten(approved, pending))
    return ForgetReport(server=server, approved=approved, pending=pending)


def refusal(server: str) -> str:
    return (f"server '{server}' is configured: its pins are what its definitions are checked "
            "against, and forgetting them would trust whatever it lists next; approve its "
            "findings instead, or remove the server first")


async def configured_elsewhere(store: Store, server: str, holder: str | None,
                               mine: str | None = None) -> str | None:
    """Why ``server``'s pins may be another running gateway's (the refusal), or None.

    One name has one set of pins on a store, checked against by every gateway on it
    that configures the name: a server in another gateway's config file is that
    gateway's too, and forgetting its pins here had it trust its next list (at its next
    start).  Each other gateway running on the store now (its instance lease; ``holder``
    is this one, None for the CLI) says the servers its config file configures
    (``Lease.servers``), on any host: the name among them is refused, naming that
    gateway.  A lease that says none (a gateway from before they were said) names
    its config file, read instead: skipped when it is this one's
    (``mine``, else ``holder``'s) on this host (``instance_lease.local``), read when it
    is another file here, and a gateway whose file cannot be read here may configure
    it: one of another host or container (the same path there is another file), one
    naming no file (a gateway built in code: its source, "<config>", is every such
    gateway's, not a file), one whose file is gone or invalid."""
    from fast_mcp_gateway.admin.instance_lease import config_of, local, others

    mine = mine or (config_of(holder) if holder else None)
    for lease in await others(store, holder or ""):
        if lease.servers is not None:  # it says what its file configures: nothing to read
            if server in lease.servers:
                return said_elsewhere(server, lease.holder)
            continue
        source = config_of(lease.holder)
        here = local(lease.holder)
        named = source if source is not None and os.path.isabs(source) else None
        if here and named is not None and named == mine:
            continue
        if not here:
            why = "it runs on another host or container: its config file cannot be read here"
        elif named is None:
            why = "it names no config file to read here (a gateway built in code)"
        else:
            found = await anyio.to_thread.run_sync(_configures, named, server)
            if found is True:
                return (f"server '{server}' is configured in {named}, the config file of "
                        f"another gateway running on this store ({lease.holder}): its pins "
                        "are what that gateway checks its definitions against; remove it "
                        "there first")
            if found is False:
                continue
            # Not the error's text: it quotes the file (a key per line of a file such
            # as /etc/shadow, its hashes), and a store row chose the file.
            why = ("its config file cannot be read here to tell ("
                   + (f"{named}: not a file here" if found is None else
                      f"{named}: not a valid config; 'mcp-gateway check --config "
                      f"{named}' there says why") + ")")
        return (f"'{server}' may be a server of another gateway running on this store "
                f"({lease.holder}), whose pins it checks its definitions against: {why}; "
                "forget them once it is stopped (or from that gateway, if it can read the "
                "config file of every other gateway running on this store)")
    return None


def said_elsewhere(server: str, holder: str) -> str:
    """The refusal of a forget of ``server``, which the gateway ``holder`` configures."""
    from fast_mcp_gateway.admin.instance_lease import config_of, host_of

    return (f"server '{server}' is configured in {config_of(holder) or 'the config file'} "
            f"of another gateway running on this store, on host {host_of(holder)} "
            f"({holder}): its pins are what that gateway checks its definitions against; "
            "remove the server from that file there first (that gateway says so to the "
            "store when it reloads), or forget them once that gateway is stopped")


def _configures(source: str, server: str) -> bool | ConfigError | None:
    """Whether the config file ``source`` configures ``server`` (an invalid entry too);
    None: no such file here, or the error reading it.  A store row names it: opened
    without waiting (a FIFO's open waits for a writer) and read only if it is a file
    then (checked before the open, a FIFO swapped in between blocked the thread, and
    the forget holding the registration lock, for ever)."""
    from fast_mcp_gateway.config.document import MAX_CONFIG_BYTES, decode_config
    from fast_mcp_gateway.config.loader import parse_config_text

    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ConfigError.single(source, None, None, f"cannot read: {exc.strerror or exc}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        return ConfigError.single(source, None, None, f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)
    try:
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError.single(source, None, None, f"is larger than "
                                     f"{MAX_CONFIG_BYTES // (1024 * 1024)} MiB")
        config = parse_config_text(decode_config(data, source), source=source,
                                   partial=True, folder=Path(source).absolute().parent)
    except ConfigError as exc:
        return exc
    return server in config.servers or server in config.invalid


async def forget_stored(store: PinStore, server: str) -> tuple[int, int]:
    """Delete ``server``'s rows (``check_pinned``'s ``NotFound`` when it has none);
    returns how many approved and pending rows were deleted."""
    await check_pinned(store, server)
    approved = sum(r.status == "approved" for r in await store.pins(server))
    removed = await store.delete_pins(server)
    return min(approved, removed), max(0, removed - approved)


async def approve_changes(ctx: AdminContext, actor: Actor, server: str,
                          names: Sequence[str] | None = None) -> ApprovalReport:
    """Approve ``server``'s current definitions (all its findings, or those ``names``):
    they become its pins, held components are released and hosts told the list changed."""
    ctx.manager.get(server)
    book = _book(ctx)
    open_names = {f.name for f in book.open_findings(server)}
    if names is not None:
        unknown = sorted(set(names) - open_names)
        if unknown:
            raise NotFound(f"nothing to approve for {', '.join(map(repr, unknown))} on server "
                           f"'{server}'; open findings: {', '.join(sorted(open_names)) or 'none'}")
    done = book.approve(server, names, actor.id)  # approved here from now on
    approving = {"names": [f"{f.kind}:{f.name}" for f in done]}
    # And so released and audited whatever the caller does.
    with finishing(ctx, actor, "approve_changes", server, approving):
        if ctx.store is not None and done:
            records = [book.pins[f.key] for f in done]
            try:
                await _persist_approval(ctx.store, server, records)
            except StoreUnavailable:
                book.requeue(records)  # the pin worker writes them once the store is back
            except StorageError:
                book.requeue(records)
                raise
            finally:
                book.saved(f.key for f in done)
        ctx.manager.refresh_catalog()
        await ctx.audit(actor, "approve_changes", server, approving,
                        f"{len(done)} approved")
    approved = [finding_model(f) for f in done]
    return ApprovalReport(server=server, approved=approved,
                          remaining=[finding_model(f) for f in book.open_findings(server)])


async def _persist_approval(store: PinStore, server: str, rows: list[PinRecord]) -> None:
    await store.put_pins(rows)
    await store.delete_pins(server, [(r.kind, r.name, "pending") for r in rows])


async def pending_in_store(store: PinStore, server: str | None = None
                           ) -> list[tuple[PinRecord, PinRecord | None]]:
    """Pending definitions in the store with the approved one each replaces (if any)."""
    rows = await store.pins(server)
    approved = {(r.server, r.kind, r.name): r for r in rows if r.status == "approved"}
    return [(r, approved.get((r.server, r.kind, r.name)))
            for r in rows if r.status == "pending"]


def stored_diff(pending: PinRecord, approved: PinRecord | None) -> str:
    old = json.loads(approved.definition) if approved is not None else None
    return diff(old, json.loads(pending.definition))


async def check_pinned(store: PinStore, server: str) -> None:
    """Raise ``NotFound`` naming the store's servers when it holds no definition of
    ``server`` (a typo), rather than answer as for a known server with nothing pending."""
    if await store.pins(server):
        return
    known = sorted({r.server for r in await store.pins()})
    raise NotFound(f"the store has no definitions of a server '{server}'"
                   + (suggest(server, known) if known else "; it holds none yet")
                   + " (a server's definitions are pinned when a gateway with pinning "
                   "on first lists them)")


async def approve_stored(store: PinStore, server: str, names: Sequence[str] | None,
                         actor: str) -> list[PinRecord]:
    """Approve pending definitions in the store (the CLI's approval); a running gateway
    releases them within ``pin_worker.RECHECK_SECONDS``.  Returns the new approved pins."""
    pending = [p for p, _ in await pending_in_store(store, server)]
    if not pending:
        await check_pinned(store, server)
    if names is not None:
        unknown = sorted(set(names) - {p.name for p in pending})
        if unknown:
            raise NotFound(f"nothing pending for {', '.join(map(repr, unknown))} on server "
                           f"'{server}'; pending: "
                           f"{', '.join(sorted(p.name for p in pending)) or 'none'}")
        pending = [p for p in pending if p.name in set(names)]
    if not pending:
        raise AdminError(f"server '{server}' has no pending definitions to approve")
    rows = [PinRecord(server=p.server, kind=p.kind, name=p.name, digest=p.digest,
                      definition=p.definition, status="approved", actor=actor, at=p.at,
                      markers=p.markers) for p in pending]
    await _persist_approval(store, server, rows)
    return rows
