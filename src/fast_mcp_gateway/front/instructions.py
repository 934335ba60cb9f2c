"""The gateway's ``instructions``: one text from the exposed servers' own.

A host shows a server's ``instructions`` to its model; the gateway's tell how its
names are made, then give each exposed server's own under its namespace, within a
size limit.  Apart from the provider (``provider.py``), which serves them, as they
depend only on the servers' state and the naming options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

from fast_mcp_gateway.front.early import instructions_head
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.upstream.model import UpstreamState

_EXPOSED = (UpstreamState.READY, UpstreamState.STARTING, UpstreamState.RECONNECTING,
            UpstreamState.SIGNED_OUT)

INSTRUCTIONS_LIMIT = 8192
"""Characters of composed ``instructions`` at most (each server gets an equal share of
what the header leaves; a longer text is cut with a note)."""


def compose_instructions(parts: Sequence[tuple[str, str]], separator: str,
                         limit: int = INSTRUCTIONS_LIMIT) -> str:
    """The gateway's ``instructions``: how names are made, then each server's own
    (``parts``: namespace, instructions) under its namespace, within ``limit``."""
    head = instructions_head(separator)
    if not parts:
        return head
    share = max(200, (limit - len(head)) // len(parts) - 40)
    sections = [head]
    for namespace, text in parts:
        text = text.strip()
        if len(text) > share:
            text = text[:share - 14].rstrip() + " [...truncated]"
        sections.append(f"## {namespace or '(no namespace)'}\n{text}")
    return "\n\n".join(sections)[:limit]


def gateway_instructions(manager: UpstreamManager,
                         may_use: Callable[[str], bool] | None = None) -> str:
    """The gateway's ``instructions``, composed from each exposed server's own
    (a server that gave none adds nothing; with ``may_use``, only the servers it
    admits); see ``compose_instructions``."""
    parts: list[tuple[str, str]] = []
    for service in manager.services.values():
        if service.state not in _EXPOSED or (may_use is not None
                                             and not may_use(service.name)):
            continue
        text = next((r.instructions for r in service.replicas if r.instructions), None)
        if text and text.strip():
            parts.append((service.config.effective_namespace, text))
    return compose_instructions(parts, manager.config.options.separator)


class CallerInstructions(Middleware):
    """A caller limited to some servers (a token's ``servers``, a profile's: ``visible()``
    as ``GatewayProvider.caller_servers`` says) is told those servers' instructions only,
    in its ``initialize`` or ``server/discover`` answer: the server's one text
    (``FastMCP.instructions``) names every exposed server.  Everyone else gets that text
    as it is."""

    def __init__(self, manager: UpstreamManager,
                 visible: Callable[[], frozenset[str] | None]) -> None:
        self.manager, self.visible = manager, visible

    def _restricted(self) -> str | None:
        servers = self.visible()
        if servers is None:
            return None
        return gateway_instructions(self.manager, servers.__contains__)

    async def on_initialize(self, context: MiddlewareContext[Any],
                            call_next: CallNext[Any, Any]) -> Any:
        result = await call_next(context)
        if result is not None and (text := self._restricted()) is not None:
            result.instructions = text
        return result

    async def on_discover(self, context: MiddlewareContext[Any],
                          call_next: CallNext[Any, Any]) -> Any:
        result = await call_next(context)
        if (text := self._restricted()) is None:
            return result
        if isinstance(result, dict):
            return {**result, "instructions": text}
        result.instructions = text
        return result
