"""The gateway's identity in its opening answers (``upstream/loops.py``).

``TellLineage`` puts ``GATEWAYS_KEY`` -- this gateway's identity, then those of the
gateways it aggregates -- in the ``_meta`` of every ``initialize`` and ``server/discover``
answer, so a gateway reaching this one, by whatever address, finds out whether that is
itself or a gateway behind it.  Only the two opening answers carry it: no call and no
list costs anything for it, and relayed results stay as their upstream sent them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

from fast_mcp_gateway.upstream.loops import GATEWAYS_KEY, Lineage

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from fast_mcp_gateway.front.early import EarlyAnswer


class TellLineage(Middleware):
    """Adds the gateways behind this one to the opening answers (module doc)."""

    def __init__(self, lineage: Lineage) -> None:
        self.lineage = lineage

    def _meta(self, meta: Any) -> dict[str, Any]:
        return {**(meta if isinstance(meta, dict) else {}), GATEWAYS_KEY: self.lineage.told()}

    async def on_initialize(self, context: MiddlewareContext[Any],
                            call_next: CallNext[Any, Any]) -> Any:
        result = await call_next(context)
        if result is not None:
            result.meta = self._meta(result.meta)
        return result

    async def on_discover(self, context: MiddlewareContext[Any],
                          call_next: CallNext[Any, Any]) -> Any:
        result = await call_next(context)
        if isinstance(result, dict):
            return {**result, "_meta": self._meta(result.get("_meta"))}
        result.meta = self._meta(result.meta)
        return result


def tell_lineage(server: FastMCP[Any], lineage: Lineage, early: EarlyAnswer | None) -> None:
    """Install ``TellLineage`` on ``server``; a stdio ``serve`` made the identity before
    the import, for its early answer (``front/early.py``): the gateway takes it over."""
    if early is not None:
        lineage.id = early.identity
    server.add_middleware(TellLineage(lineage))
