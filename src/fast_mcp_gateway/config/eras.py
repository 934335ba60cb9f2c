"""Whether a server's own ``protocol`` is one its transport can speak (``checks``).

SSE (``transport: sse``, or a URL ending in ``/sse``) carries only the handshake era
(``upstream/http_transports.py``: ``legacy_only``).  A ``protocol: 2026-07-28`` on such
an entry was accepted and its sessions opened in the handshake era all the same, the
reason only in ``protocol_reason``: the entry is refused instead, at load, reload and
registration alike.  Only the entry's own setting is: ``gateway.protocol`` is a default
for the servers that do not set one, and an SSE server under it keeps the handshake era.
"""

from __future__ import annotations

from fast_mcp_gateway.config.schema import ServerConfig

MODERN = "2026-07-28"


def era_problem(server: ServerConfig) -> tuple[str, str] | None:
    """``("protocol", message)`` when the entry asks for 2026-07-28 and a replica of it
    is reached over SSE, else None."""
    if server.protocol != MODERN:
        return None
    for i, (replica, _) in enumerate(server.replica_configs()):
        if replica.kind != "sse":
            continue
        how = ("'transport: sse'" if replica.transport == "sse"
               else "a URL ending in /sse (read as SSE)")
        which = f"instances[{i}] has" if server.instances else "it has"
        return ("protocol", f"'{MODERN}' cannot apply: {which} {how}, and SSE speaks only "
                            "the handshake era; remove 'protocol' (its sessions open in the "
                            "handshake era), or reach the server over streamable HTTP "
                            "('transport: http' with its streamable HTTP URL, e.g. .../mcp)")
    return None
