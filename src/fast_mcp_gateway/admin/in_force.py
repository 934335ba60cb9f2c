"""The route and alert rules in force, listed while the store cannot be read.

Route rules and alert rules live in the store, and the gateway holds those in force in
memory: the route table of the call path (``AdminContext.routes``, as ``load_routes``
last read it, each rule with its ``created_at``) and the alert engine's rules
(servers.yaml's, overridden by the stored ones as last read).  During an outage (a
PostgreSQL stopped, a SQLite file that cannot be read) the lists answered 503 -- REST,
the admin tools, the dashboard's Routes and Alerts pages -- although what calls are
routed by and what alerts are evaluated from was at hand, and is what an operator needs
to see then.  Now a list that cannot read the store answers from memory, its
``store_unreachable`` saying so (``unreachable``): the rules in force in this gateway,
not necessarily the stored set (another gateway on the same PostgreSQL may change it
meanwhile; a gateway started without its store has read none of it yet).

Changes are refused as before, their first step being a store read or write: 503
``store_unavailable``, worded by ``unchanged`` (nothing was changed, the rules in force
stay, and when to try again).  A store gone just after a change was written (before the
re-read of the rules) no longer answers 503 for a change made, unaudited, not in force
here (an add made again was a second rule): the change is put in force from what was
written (``routes_in_force``; the alert engine's ``hold``), audited, and answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.routing.rules import Route, RouteTable
from fast_mcp_gateway.store import StorageError, Store
from fast_mcp_gateway.store.deferred import DeferredStore

HIDDEN = "its own error is shown to an admin token without a 'servers' list"


def unreachable(ctx: AdminContext, exc: StorageError, what: str, *, shown: bool) -> str:
    """What a list of ``what`` ("route rules") read from memory says: the store's error
    (``shown``: to a caller that sees the whole gateway's, else that it is hidden), and
    that these are the rules in force here, not necessarily the stored set."""
    reason = str(exc) if shown else HIDDEN
    if isinstance(ctx.store, DeferredStore):  # started without it: none read yet
        return (f"the store cannot be read ({reason}): these are the {what} in force in "
                "this gateway, which has not read the store since it started (servers.yaml's "
                "only; the stored ones apply once it answers)")
    return (f"the store cannot be read ({reason}): these are the {what} in force in this "
            "gateway, as it last read them, not necessarily the stored set; changes are "
            "refused until the store answers")


@contextmanager
def unchanged(what: str) -> Iterator[None]:
    """A change of ``what`` ("the route rule") that meets an unreadable store: its error,
    of the same class (REST's 503 ``store_unavailable``), saying nothing was changed."""
    try:
        yield
    except StorageError as exc:
        raise type(exc)(f"{what} was not changed: the store cannot be used now ({exc}); the "
                        "rules in force stay as listed; make the change again once the "
                        "store answers") from exc


async def routes_in_force(store: Store, current: Callable[[], RouteTable],
                          written: Route | int | None = None) -> RouteTable:
    """The stored route rules.  ``written``: this gateway's change just written (the rule
    written, or the id deleted); a store that cannot be read now leaves the table in
    force (``current()``, read when the read failed) with that change made (the next
    read replaces it), rather than raise after the change.  Read then, not before the
    read: another change's read that answered meanwhile (with this rule and its own)
    stays in force; the table read before lost that change for good (review16)."""
    try:
        rows = await store.routes()
    except StorageError:
        if written is None:
            raise
        gone = written if isinstance(written, int) else written.id
        return RouteTable([r for r in current().routes if r.id != gone]
                          + ([] if isinstance(written, int) else [written]))
    return RouteTable(Route(r.id, r.pattern, r.match, r.target, r.priority, r.created_at)
                      for r in rows)
