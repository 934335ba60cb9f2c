"""The pin worker: the running gateway's pins kept in step with the store.

``load_pins`` reads the store's pins at start; ``follow_pins`` writes first-use pins
and pending definitions (``routing/pinning.py`` queues them during the catalog build),
logs and audits the new findings -- at most one line and one row per server per
``pin_reports.REPORT_WINDOW`` --, and releases what was approved elsewhere (the CLI's
``mcp-gateway pins approve``, another instance).  A store that is down keeps the
writes queued (retried); the calls are never affected.  Apart from ``pins.py`` (the
admin operations and their models), which loads with the admin tools on first use.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from fast_mcp_gateway.admin.context import Actor, AdminContext
from fast_mcp_gateway.store.base import StorageError, StoreUnavailable

logger = logging.getLogger(__name__)

PINNING_ACTOR = Actor("pinning")
RECHECK_SECONDS = 2.0
"""How often the pins of servers with open findings are re-read from the store."""


async def load_pins(ctx: AdminContext) -> None:
    """Load the store's pins into the running book (at start, before upstreams are
    listed, so a definition changed while the gateway was down is caught at once);
    first-use pins the store lacks are queued for writing."""
    book, store = ctx.manager.pins, ctx.store
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
    """The pin worker (runs while the gateway serves; see the module doc).  Without a
    store it only reports the findings (the log)."""
    book = ctx.manager.pins
    store = ctx.store
    task_status.started()
    book.persistent = store is not None
    delay = 0.2
    try:
        while True:
            due = book.reports.next_due()
            await book.wait_writes(RECHECK_SECONDS if due is None
                                   else min(RECHECK_SECONDS, due))
            writes, events = book.take_writes()
            book.reports.add(events)
            reports = book.reports.due()
            for report in reports:
                report.log()
            stale = book.take_stale()
            if store is None:
                book.written.notify()
                continue
            try:
                if writes:
                    await store.put_pins(writes)
                for server, kind, name in stale:
                    await store.delete_pins(server, [(kind, name, "pending")])
                for report in reports:
                    await ctx.audit(PINNING_ACTOR, report.action, report.server,
                                    report.arguments(), report.summary())
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
                if not isinstance(exc, StoreUnavailable):  # an outage is said once, apart
                    logger.warning("pinning: could not write to the store (%s); retrying",
                                   exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
    finally:
        book.persistent = False
