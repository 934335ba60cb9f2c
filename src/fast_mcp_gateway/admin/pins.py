"""Pinned definitions: what changed, approving it, and keeping the store in step.

``pin_status`` and ``approve_changes`` are admin operations (the ``gateway_pin_status``
and ``gateway_approve_changes`` tools, ``GET /api/v1/pins`` and
``POST /api/v1/pins/approve`` adapt them).  ``approve_stored`` is the CLI's approval,
made on the store alone (``mcp-gateway pins approve``): a running gateway picks it up
through ``follow_pins``, which re-reads the pins of servers with open findings.

``follow_pins`` is the gateway's pin worker: it writes first-use pins and pending
definitions (``routing/pinning.py`` queues them during the catalog build), audits
each new finding once, and releases what was approved elsewhere.  A store that is
down keeps the writes queued (retried); the calls are never affected.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import anyio
from pydantic import BaseModel, Field

from fast_mcp_gateway.admin.context import Actor, AdminContext
from fast_mcp_gateway.errors import AdminError, NotFound
from fast_mcp_gateway.routing.pinning import Finding, PinBook, diff
from fast_mcp_gateway.store.base import PinRecord, PinStore, StorageError

logger = logging.getLogger(__name__)

PINNING_ACTOR = Actor("pinning")
RECHECK_SECONDS = 2.0
"""How often the pins of servers with open findings are re-read from the store."""


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
    findings: list[PinFinding]
    pinned: dict[str, int] = Field(description="server -> approved definitions")
    modes: dict[str, str] = Field(description="server -> off | warn | enforce")


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


def pin_status(ctx: AdminContext, server: str | None = None) -> PinReport:
    """Open findings (changed, new, flagged definitions, with diffs) and pin counts."""
    if server is not None:
        ctx.manager.get(server)
    book = _book(ctx)
    pinned: dict[str, int] = {}
    for (name, _, _) in book.pins:
        if server is None or name == server:
            pinned[name] = pinned.get(name, 0) + 1
    modes: dict[str, str] = {name: s.config.pinning or ctx.options.pinning
             for name, s in ctx.manager.services.items() if server is None or name == server}
    return PinReport(findings=[finding_model(f) for f in book.open_findings(server)],
                     pinned=dict(sorted(pinned.items())), modes=modes)


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
    done = book.approve(server, names, actor.id)
    if ctx.store is not None and done:
        records = [book.pins[f.key] for f in done]
        try:
            await _persist_approval(ctx.store, server, records)
        except StorageError:
            book.requeue(records)          # the pin worker writes them when the store is back
            raise
        finally:
            book.saved(f.key for f in done)
    ctx.manager.refresh_catalog()
    approved = [finding_model(f) for f in done]
    await ctx.audit(actor, "approve_changes", server,
                    {"names": [f"{f.kind}:{f.name}" for f in done]},
                    f"{len(done)} approved")
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


async def approve_stored(store: PinStore, server: str, names: Sequence[str] | None,
                         actor: str) -> list[PinRecord]:
    """Approve pending definitions in the store (the CLI's approval); a running gateway
    releases them within ``RECHECK_SECONDS``.  Returns the new approved pins."""
    pending = [p for p, _ in await pending_in_store(store, server)]
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


async def load_pins(ctx: AdminContext) -> None:
    """Load the store's pins into the running book (at start, before upstreams are
    listed, so a definition changed while the gateway was down is caught at once);
    first-use pins the store lacks are queued for writing."""
    book, store = _book(ctx), ctx.store
    if store is None:
        return
    book.persistent = True
    try:
        stored = await store.pins()
    except StorageError as exc:
        logger.warning("pinning: could not read the pins (%s); first-use pins are kept in "
                       "memory until the store answers", exc)
        return
    book.load(stored)
    known = {(r.server, r.kind, r.name) for r in stored if r.status == "approved"}
    book.requeue([r for k, r in book.pins.items() if k not in known])
    ctx.manager.refresh_catalog()


async def follow_pins(ctx: AdminContext, *, task_status: anyio.abc.TaskStatus[None]
                      = anyio.TASK_STATUS_IGNORED) -> None:
    """The pin worker (runs while the gateway has a store; see the module doc)."""
    book = _book(ctx)
    store = ctx.store
    task_status.started()
    if store is None:
        return
    book.persistent = True
    delay = 0.2
    try:
        while True:
            await book.wait_writes(RECHECK_SECONDS)
            writes, events = book.take_writes()
            stale = book.take_stale()
            try:
                if writes:
                    await store.put_pins(writes)
                for server, kind, name in stale:
                    await store.delete_pins(server, [(kind, name, "pending")])
                for f in events:
                    await ctx.audit(PINNING_ACTOR, f"pin_{f.state}", f.server,
                                    {"kind": f.kind, "name": f.name, "held": f.held,
                                     "markers": list(f.markers)}, f.summary())
                    book.audited += 1
                if book.findings:
                    # A local approval while the store was read makes what was read stale
                    # (it would put the old pin back); the next round reads it again.
                    generation, servers = book.generation, list(book.findings)
                    rows = [r for s in servers for r in await store.pins(s)]
                    if book.generation == generation and book.load(rows, servers):
                        ctx.manager.refresh_catalog()     # approved elsewhere: release it
                delay = 0.2
                book.written.notify()
            except StorageError as exc:
                book.requeue(writes)
                logger.warning("pinning: store unavailable (%s); retrying", exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
    finally:
        book.persistent = False
