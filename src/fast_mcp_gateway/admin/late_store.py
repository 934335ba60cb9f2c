"""Opening the store a gateway started without, once it can be reached.

``serve`` with its database away starts anyway (``store/deferred.py``): the upstreams
of the config file are served, and the control plane holds a ``DeferredStore`` whose
every operation answers ``StoreUnavailable``, as during an outage.  ``connect_later``
is the background task that opens it (retrying with backoff; migrating it), then does
what a start with the store does -- the learned eras, the exposed names (those given
meanwhile claimed now), the route rules, the runtime registrations (converged into the
running servers), the pins -- writes what was held for it, and runs the store's
background tasks (change feed, health history, leases, name and era writers) for the
rest of the gateway's life.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.abc

from fast_mcp_gateway.store import Store
from fast_mcp_gateway.store.deferred import DeferredStore
from fast_mcp_gateway.store.outage import StoreOutage
from fast_mcp_gateway.store.retry import while_unavailable
from fast_mcp_gateway.telemetry.recorder import Recorder


class Plane(Protocol):
    """What ``connect_later`` needs of the control plane (``ControlPlane``)."""

    outage: StoreOutage
    recorder: Recorder | None
    store_lost: bool

    async def attach(self, store: Store, recorder: Recorder, *, late: bool = False
                     ) -> bool: ...

    def store_tasks(self) -> list[Callable[..., Any]]: ...


async def connect_later(control: Plane, store: DeferredStore, *,
                        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                        ) -> None:
    """Open ``store`` once it answers and attach it to ``control`` (module docstring);
    then run the store's tasks until cancelled.  A failure that is not the store being
    unreachable (its schema is newer than this gateway's...) ends it, and so the
    gateway, to be restarted."""
    task_status.started()
    opened = await store.connect(before_wait=lambda error, _: control.outage.lost(error))
    recorder = control.recorder
    assert recorder is not None  # held with the store (``attach``)

    async def attach() -> None:  # a coroutine function: tenacity awaits it
        await control.attach(opened, recorder, late=True)

    await while_unavailable(attach, first=0.5, most=5.0,
                            before_wait=lambda error, _: control.outage.lost(error))
    store.take_over()  # what captured the held store (the pin worker) uses the opened one
    recorder.store = opened
    control.store_lost = False
    control.outage.back("opened and migrated it; its runtime registrations and route rules "
                        "apply now; writing the held call records")
    async with anyio.create_task_group() as group:
        for task in control.store_tasks():
            await group.start(task)
