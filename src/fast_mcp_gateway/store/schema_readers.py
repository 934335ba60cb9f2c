"""Which gateways may use a store a newer gateway migrated: rolling upgrades.

Gateways sharing a store are upgraded one at a time.  The first new one migrates the
store; until this existed every older one then refused it ("newer than this gateway
understands"), so one that crashed or was restarted mid-upgrade stayed down until it
was upgraded too.  A migration that only adds (a nullable column, a table, an index)
leaves a store that the gateways before it still use correctly: their queries name their
columns, and extra tables and columns are left alone.  Such a migration says so in its
backend's ``READABLE_FROM`` (version -> the oldest schema version whose gateways may use
the store at that version), and the backend records the claim in
``gateway_schema_readers`` as it applies the migration.  A gateway that finds its store
at a version newer than its own uses it when the store's claim covers its version (with
a warning: finish the upgrade), and refuses it, by name, when not.  Gateways built before
this file refuse any newer version.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

TABLE = "gateway_schema_readers"
CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY,"
          " readable_from INTEGER NOT NULL)")


def refusal(where: str, version: int, readable_from: int | None, understood: int) -> str | None:
    """Why this gateway (which understands schema ``understood``) may not use the store
    ``where`` at schema ``version`` (``readable_from``: the store's recorded claim, None
    without one); None when it may."""
    if version <= understood:
        return None
    if readable_from is not None and readable_from <= understood:
        logger.warning("%s: schema version %d is newer than this gateway's (%d); the "
                       "gateway that migrated it marked it usable from version %d, so "
                       "this one goes on -- upgrade it to finish the rolling upgrade",
                       where, version, understood, readable_from)
        return None
    since = ("" if readable_from is None
             else f" (gateways from schema {readable_from} on may use it)")
    return (f"{where}: schema version {version} is newer than this gateway understands "
            f"({understood}){since}; upgrade the gateway")
