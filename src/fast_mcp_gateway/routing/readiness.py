"""Which upstream servers are ready: what a library user waits for before listing.

In library mode the lifespan waits at most ``startup_wait`` seconds (default 2) for the
first connects, so a slow server is not in the first list.  ``wait_ready`` waits for
every replica's first attempt instead, bounded by the caller's own timeout, and says
how each server came out of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from fast_mcp_gateway.errors import AdminError
from fast_mcp_gateway.upstream.model import UpstreamState

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fast_mcp_gateway.config.schema import InvalidServer
    from fast_mcp_gateway.routing.manager import UpstreamManager


@dataclass(frozen=True)
class Readiness:
    """How each server stands once its first connect attempts are over.

    ``ready``: at least one replica connected.  ``failed``: server name -> the reason
    (its ``last_error``); the gateway keeps retrying it.  ``starting``: still on its
    first attempt when ``within`` ran out.  ``disabled``: disabled in the config.
    ``invalid``: server name -> the loader's message, for an entry of the file (a
    partial load: ``Gateway.from_file``) left out as invalid: not started until fixed.
    """

    ready: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)
    starting: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    invalid: dict[str, str] = field(default_factory=dict)

    @property
    def all_ready(self) -> bool:
        """Every enabled server (of the file's, every valid one) is ready."""
        return not self.failed and not self.starting and not self.invalid


async def wait_ready(manager: UpstreamManager, within: float | None = 30.0,
                     invalid: Mapping[str, InvalidServer] | None = None) -> Readiness:
    """Wait until every replica made its first connect attempt (connected, failed or
    skipped), at most ``within`` seconds (None: no bound), and report each server.

    Only while the gateway runs (inside ``async with Client(gateway.server)`` or while
    serving): raises ``AdminError`` otherwise, rather than wait for nothing.
    """
    if not manager.running:
        raise AdminError("wait_ready() needs a running gateway: call it inside "
                         "'async with Client(gateway.server)' or while it serves")
    with anyio.move_on_after(math.inf if within is None else within):
        for replica in manager.replicas:
            await replica.wait_first_attempt()
    ready: list[str] = []
    starting: list[str] = []
    disabled: list[str] = []
    failed: dict[str, str] = {}
    for name, service in manager.services.items():
        state = service.state
        if state is UpstreamState.READY:
            ready.append(name)
        elif state is UpstreamState.STARTING:
            starting.append(name)
        elif state is UpstreamState.DISABLED:
            disabled.append(name)
        else:
            errors = [r.last_error for r in service.replicas if r.last_error]
            failed[name] = errors[0] if errors else str(state)
    left_out = {name: server.error for name, server in (invalid or {}).items()
                if server.enabled and name not in manager.services}
    return Readiness(tuple(ready), failed, tuple(starting), tuple(disabled), left_out)
