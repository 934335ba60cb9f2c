"""The gateway's identity in its opening answers (``upstream/loops.py``).

``OpeningAnswers`` puts ``GATEWAYS_KEY`` -- this gateway's identity, then those of the
gateways it aggregates -- in the ``_meta`` of every ``initialize`` and ``server/discover``
answer, so a gateway reaching this one, by whatever address, finds out whether that is
itself or a gateway behind it.  Only the two opening answers carry it: no call and no
list costs anything for it (it is ``CallerInstructions`` as well: each middleware is a
layer every request of the full path passes through), and relayed results stay as
their upstream sent them.

The host's opening request may name its own gateways (another gateway opening a
session to this one: ``tell_gateways``): one this gateway aggregates, or is, is
refused with a JSON-RPC error (-32600) whose ``data`` names this gateway's, which that
gateway reads as an answer naming it; any other is noted (``Lineage.opened_by``).  A
ping naming them (a gateway's handshake-era health probe) is answered with this
gateway's.  A host that names none gets what it got before, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mcp_types as types
from fastmcp.server.middleware import CallNext, MiddlewareContext
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway._compat import low_level_server
from fast_mcp_gateway.front.instructions import CallerInstructions
from fast_mcp_gateway.upstream.loops import GATEWAYS_KEY, gateways_in, new_identity, served_here

if TYPE_CHECKING:
    from fastmcp import FastMCP
    from mcp.server.context import ServerRequestContext

    from fast_mcp_gateway.config.settings import GatewaySettings
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
        self.lineage, self._early = manager.lineage, early
        if early is not None:
            self.lineage.id = early.identity

    def install(self, server: FastMCP[Any], settings: GatewaySettings) -> OpeningAnswers:
        """Answer the pings naming gateways (module doc); without an early answer, the
        identity ends with ``served_here`` for this config and store (``check`` knows
        it), as the early answer's does."""
        if self._early is None:
            self.lineage.id = new_identity(served_here(settings.config, settings.store))
        low_level_server(server).add_request_handler("ping", types.RequestParams,
                                                     self._on_ping)
        return self

    async def _on_ping(self, ctx: ServerRequestContext[Any],
                       params: types.RequestParams) -> types.EmptyResult:
        if params.meta and gateways_in(params.meta):
            return types.EmptyResult(_meta={GATEWAYS_KEY: self.lineage.told()})
        return types.EmptyResult()  # as the SDK answers a ping

    def _meta(self, meta: Any) -> dict[str, Any]:
        return {**(meta if isinstance(meta, dict) else {}), GATEWAYS_KEY: self.lineage.told()}

    def _refuse_loop(self, context: MiddlewareContext[Any]) -> None:
        """Refuse an opening request from a gateway this one aggregates (module doc)."""
        meta = getattr(getattr(context.message, "params", None), "meta", None)
        if meta and (text := self.lineage.opened_by(meta)) is not None:
            raise MCPError(types.INVALID_REQUEST, text, {GATEWAYS_KEY: self.lineage.told()})

    async def on_initialize(self, context: MiddlewareContext[Any],
                            call_next: CallNext[Any, Any]) -> Any:
        self._refuse_loop(context)
        result = await super().on_initialize(context, call_next)
        if result is not None:
            result.meta = self._meta(result.meta)
        return result

    async def on_discover(self, context: MiddlewareContext[Any],
                          call_next: CallNext[Any, Any]) -> Any:
        self._refuse_loop(context)
        result = await super().on_discover(context, call_next)
        if isinstance(result, dict):
            return {**result, "_meta": self._meta(result.get("_meta"))}
        result.meta = self._meta(result.meta)
        return result
