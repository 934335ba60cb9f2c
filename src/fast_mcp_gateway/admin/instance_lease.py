"""One gateway per ``--instance-id`` on a shared store: the ``instance:<id>`` lease.

Two gateways started with one ``--instance-id`` (a copied unit file) both lead alerts
(the ``alerts`` lease is held by instance id: each posts every webhook and history
row), and their call records, health history and audit rows cannot be told apart.  So
each gateway on a shared store holds the lease ``instance:<id>`` for its process (the
holder names its host and pid), renewed every ``RENEW_SECONDS`` for ``TTL_SECONDS`` and
released at a clean stop.  One that finds the lease held by another process says so
at WARNING, once, naming that process and the fix, and again when the id is its own
(the other stopped, or was a predecessor killed without a clean stop).  Store failures
are left to the change feed and the recorder to report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

import anyio
import anyio.abc

from fast_mcp_gateway.store import StorageError, Store

logger = logging.getLogger(__name__)

TTL_SECONDS = 30.0
RENEW_SECONDS = 10.0


async def keep_instance_id(store_of: Callable[[], Store | None], instance_id: str, *,
                           task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                           ) -> None:
    """Hold ``instance:<instance_id>`` until cancelled (see the module docstring)."""
    name = f"instance:{instance_id}"
    holder = f"host {socket.gethostname()} pid {os.getpid()} #{secrets.token_hex(3)}"
    clash = False
    task_status.started()
    try:
        while True:
            store = store_of()
            if store is not None and store.shared:
                try:
                    clash = await _hold(store, name, holder, instance_id, clash)
                except StorageError:
                    pass  # the store's outage is said by the change feed and the recorder
                except Exception:  # a check must not stop the gateway (background group)
                    logger.exception("checking --instance-id %s failed; trying again",
                                     instance_id)
            await anyio.sleep(RENEW_SECONDS)
    finally:
        store = store_of()
        if store is not None and store.shared:
            # A failure leaves it to run out by itself.
            with anyio.move_on_after(2, shield=True), contextlib.suppress(StorageError):
                await store.release_lease(name, holder)


async def _hold(store: Store, name: str, holder: str, instance_id: str, clash: bool) -> bool:
    """Take or renew the lease; whether another process holds it (said when it changes)."""
    if await store.hold_lease(name, holder, TTL_SECONDS):
        if clash:
            logger.warning("--instance-id %s is this gateway's alone again", instance_id)
        return False
    if not clash:
        other = await store.lease(name)
        who, until = (other.holder, other.expires_at) if other is not None else ("?", 0.0)
        logger.warning(
            "another gateway runs with --instance-id %s (%s, its claim renewed until %s): "
            "give every gateway its own --instance-id -- two with one id both lead alerts "
            "(every webhook and alert history row twice) and their call records, health "
            "history and audit rows cannot be told apart.  (A gateway with this id killed "
            "without a clean stop holds it until then.)", instance_id, who,
            time.strftime("%H:%M:%S", time.localtime(until)))
    return True
