"""What a reload of ``gateway.*`` options tells hosts about their lists.

A changed ``gateway.admin`` changes which ``gateway_*`` tools are listed and found (the
lists rebuilt, the lane's too); a token kept with other ``scopes`` or ``servers``, or
another ``jwt`` section, changes what its hosts may list (``config.auth.reach_changed``).
Either is told to hosts as any catalog change is (``list_changed``): a host that keeps
its lists went on offering tools its token could no longer call, and never learnt of
those it was given (``tests/test_reload_token_lists.py``).  What changed in
``gateway.auth`` is logged by token name (``config.auth.auth_changes``): the reload's
own line counts servers only.

New route rules (added, changed or deleted: ``routes_applied``) change which tools a
credential limited to some servers may call, and so its tool list
(``GatewayProvider.routed_away``): hosts are told ``tools/list_changed`` when the gateway
has such a credential.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fast_mcp_gateway.config.auth import auth_changes, reach_changed

if TYPE_CHECKING:
    from fast_mcp_gateway.config.schema import GatewayOptions
    from fast_mcp_gateway.front.hub import FrontHub
    from fast_mcp_gateway.front.provider import GatewayProvider
    from fast_mcp_gateway.routing.rules import RouteTable

logger = logging.getLogger(__name__)


def options_reloaded(hub: FrontHub, provider: GatewayProvider, old: GatewayOptions,
                     new: GatewayOptions) -> None:
    """The ``ControlPlane.on_options`` hook: listen streams and the subscription mover
    look at their callers again (``FrontHub.reloaded``), and hosts are told the lists
    the reload changed; a changed ``gateway.auth`` is logged, by token name."""
    if (changes := auth_changes(old.auth, new.auth)) is not None:
        logger.info("gateway.auth reloaded: %s", changes)
    hub.reloaded()
    if old.admin != new.admin:
        provider.invalidate()
    if reach_changed(old.auth, new.auth):
        hub.changed({"tools", "resources", "prompts"})
    elif old.admin != new.admin:
        hub.changed({"tools"})


def routes_applied(hub: FrontHub, provider: GatewayProvider, table: RouteTable) -> None:
    """Put ``table`` in the call path (the store's rules, after a change or at start);
    hosts are told ``tools/list_changed`` if the rules differ and a token (or JWT claim)
    limits some caller's servers: only such a caller's list depends on them."""
    pipeline = provider.pipeline
    before, pipeline.routes = pipeline.routes, table
    auth = provider.manager.config.options.auth
    if before.routes != table.routes and auth is not None and (
            any(t.servers is not None for t in auth.tokens)
            or (auth.jwt is not None and auth.jwt.servers_claim is not None)):
        hub.changed({"tools"})
