"""The gateway's identity in its opening answers (``upstream/loops.py``).

``OpeningAnswers`` puts ``GATEWAYS_KEY`` -- this gateway's identity, then those of the
gateways it aggregates -- in the ``_meta`` of every ``initialize`` and ``server/discover``
answer, so a gateway reaching this one, by whatever address, finds out whether that is
itself or a gateway behind it.  Only the two opening answers carry it: no call and no
list costs anything for it (it is ``CallerInstructions`` as well: each middleware is a
layer every request of the full path passes through), and relayed results stay as
their upstream sent them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastmcp.server.middleware import CallNext, MiddlewareContext

from fast_mcp_gateway.front.instructions import CallerInstructions
from fast_mcp_gateway.upstream.loops import GATEWAYS_KEY

if TYPE_CHECKING:
    from fast_mcp_gateway.front.early import EarlyAnswer
    from fast_mcp_gateway.routing.manager import UpstreamManager


class OpeningAnswers(CallerInstructions):
    """``CallerInstructions``, and the gateways behind this one (module doc).  A stdio
    ``serve`` made the identity before the import, for its early answer
    (``front/early.py``): the gateway takes it over."""

    def __init__(self, manager: UpstreamManager,
                 visible: Callable[[], frozenset[str] | None],
                 early: EarlyAnswer | None) -> None:
        super().__init__(manager, visible)
        self.lineage = manager.lineage
        if early is not None:
            self.lineage.id = early.identity

    def _meta(self, meta: Any) -> dict[str, Any]:
        return {**(meta if isinstance(meta, dict) else {}), GATEWAYS_KEY: self.lineage.told()}

    async def on_initialize(self, context: MiddlewareContext[Any],
                            call_next: CallNext[Any, Any]) -> Any:
        result = await super().on_initialize(context, call_next)
        if result is not None:
            result.meta = self._meta(result.meta)
        return result

    async def on_discover(self, context: MiddlewareContext[Any],
                          call_next: CallNext[Any, Any]) -> Any:
        result = await super().on_discover(context, call_next)
        if isinstance(result, dict):
            return {**result, "_meta": self._meta(result.get("_meta"))}
        result.meta = self._meta(result.meta)
        return result
