"""How a replica's state change is told: one log line (a lost session or a give-up at
WARNING, the rest at INFO, with the last error when it is not ``ready``), the replica's
hooks (``holding.SupervisorHooks``: history, alerts, events), and a notify."""

from __future__ import annotations

import logging

from fast_mcp_gateway.upstream.holding import SupervisorHooks
from fast_mcp_gateway.upstream.model import UpstreamState

logger = logging.getLogger("fast_mcp_gateway.upstream.supervisor")


def tell_transition(label: str, previous: UpstreamState, state: UpstreamState,
                    last_error: str | None, hooks: SupervisorHooks) -> None:
    """Say that replica ``label`` went from ``previous`` to ``state``."""
    # A session lost (a crash: ready -> reconnecting) or given up on is a warning; a
    # replica is named as the balancer and gateway_health name it (rep#1).
    lost = previous is UpstreamState.READY and state is UpstreamState.RECONNECTING
    level = logging.WARNING if lost or state is UpstreamState.FAILED else logging.INFO
    logger.log(level, "upstream %s: %s -> %s%s", label, previous, state,
               f" ({last_error})" if last_error and state != "ready" else "")
    hooks.state_changed(str(state), f"{previous} -> {state}" + (
        f": {last_error}" if last_error and state is not UpstreamState.READY else ""))
    hooks.notify()
