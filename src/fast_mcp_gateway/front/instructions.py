"""The gateway's ``instructions``: one text from the exposed servers' own.

A host shows a server's ``instructions`` to its model; the gateway's tell how its
names are made, then give each exposed server's own under its namespace, within a
size limit.  Apart from the provider (``provider.py``), which serves them, as they
depend only on the servers' state and the naming options.
"""

from __future__ import annotations

from collections.abc import Sequence

from fast_mcp_gateway.front.early import instructions_head
from fast_mcp_gateway.routing.manager import UpstreamManager
from fast_mcp_gateway.upstream.model import UpstreamState

_EXPOSED = (UpstreamState.READY, UpstreamState.STARTING, UpstreamState.RECONNECTING)

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


def gateway_instructions(manager: UpstreamManager) -> str:
    """The gateway's ``instructions``, composed from each exposed server's own
    (a server that gave none adds nothing); see ``compose_instructions``."""
    parts: list[tuple[str, str]] = []
    for service in manager.services.values():
        if service.state not in _EXPOSED:
            continue
        text = next((r.instructions for r in service.replicas if r.instructions), None)
        if text and text.strip():
            parts.append((service.config.effective_namespace, text))
    return compose_instructions(parts, manager.config.options.separator)
