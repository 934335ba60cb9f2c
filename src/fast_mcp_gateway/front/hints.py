"""2026-07-28 freshness hints (``ttlMs`` / ``cacheScope``) of the aggregate lists.

A list the gateway answers is the union of its upstreams' lists, so it may be kept no
longer than the shortest-lived of them: ``ttlMs`` is the minimum over the upstreams
that contribute to it (exposed, visible to the caller, inside the active profile).
An upstream that gave no hint (a legacy server, or one that does not hint) counts as
``0`` (stale now, the SDK's default), and so does a list no upstream contributes to.

``cacheScope`` is ``public`` only when every contributing upstream said ``public``
and the list does not depend on the caller: no ``auth`` (tokens may differ in
scopes and servers), no profile in force, no server limit on the principal.
Otherwise ``private``.

Both paths use ``list_hint``: the full path through the handler wrapper
``hint_lists`` installs on the SDK server, the express lane through
``listing.wire_result``.  A hint set on the result wins over the SDK server's
static ``cache_hints`` (``apply_cache_hint`` keeps fields the handler set); the
per-revision surface drops both fields on legacy wires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mcp_types as types
from fastmcp import FastMCP
from mcp.server.caching import CacheHint

from fast_mcp_gateway._compat import low_level_server
from fast_mcp_gateway.upstream.model import UpstreamState

if TYPE_CHECKING:
    from fast_mcp_gateway.front.provider import GatewayProvider

HINTED_LISTS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")
_CONTRIBUTING = (UpstreamState.READY, UpstreamState.STARTING, UpstreamState.RECONNECTING,
                 UpstreamState.SIGNED_OUT)
_ITEMS = {"tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
          "resources/templates/list": "templates"}


def list_hint(provider: GatewayProvider, method: str) -> CacheHint:
    """The hint of ``method``'s list as the current caller sees it (see module doc)."""
    servers = provider.caller_servers()
    active = provider.active_profile()
    ttl: int | None = None
    public = True
    for name, service in provider.manager.services.items():
        if service.state not in _CONTRIBUTING or (servers is not None and name not in servers):
            continue
        catalog = service.catalog
        if not getattr(catalog, _ITEMS[method]):
            continue   # lists nothing here: its hint does not bound the aggregate
        given = catalog.hints.get(method)
        upstream_ttl, scope = given if given is not None else (0, "private")
        ttl = upstream_ttl if ttl is None else min(ttl, upstream_ttl)
        public = public and scope == "public"
    principal = provider.pipeline.resolve_principal()
    caller_dependent = (active is not None or principal.servers is not None
                        or provider.manager.config.options.auth is not None)
    if ttl is None:   # nothing listed: no freshness promised
        return CacheHint(ttl_ms=0, scope="private")
    return CacheHint(ttl_ms=ttl,
                     scope="public" if public and not caller_dependent else "private")


def apply_list_hint(provider: GatewayProvider, method: str, result: Any) -> Any:
    """``result`` with the aggregate's hint set explicitly (non-list results as is)."""
    if method not in _ITEMS or not isinstance(result, types.CacheableResult):
        return result
    hint = list_hint(provider, method)
    return result.model_copy(update={"ttl_ms": hint.ttl_ms, "cache_scope": hint.scope})


def hint_lists(server: FastMCP[Any], provider: GatewayProvider) -> None:
    """Wrap the SDK server's four list handlers so their results carry the aggregate's
    hint (the full path; call after FastMCP registered its handlers)."""
    low = low_level_server(server)
    for method in HINTED_LISTS:
        entry = low.get_request_handler(method)
        if entry is None:
            continue

        def wrap(handler: Any, method: str = method) -> Any:
            async def hinted(ctx: Any, params: Any) -> Any:
                return apply_list_hint(provider, method, await handler(ctx, params))
            return hinted

        low.add_request_handler(method, entry.params_type, wrap(entry.handler))
