"""A Claude-Desktop ``mcpServers`` entry read into our shape (``loader.py``).

Its keys are the host's (``command``, ``args``, ``env``, ``cwd``, ``url``, ``type``,
``headers``); keys other hosts write (``autoApprove``, ``timeout``...) are ignored, and
a setting of ours (``auth``, ``instances``, ``tls``...) is refused with how to use it:
an ``mcpServers`` file is the host's, and is read as the host reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fast_mcp_gateway.config.checks import claude_key_problem, short
from fast_mcp_gateway.config.interpolation import from_claude_text

CLAUDE_KEYS = {"command", "args", "env", "cwd", "url", "type", "transport", "headers"}
# Keys other hosts write into mcpServers entries; they mean nothing to the gateway.
CLAUDE_IGNORED = {"autoApprove", "alwaysAllow", "timeout", "description", "envFile",
                  "disabled"}
CLAUDE_TYPES = {"stdio": "stdio", "sse": "sse", "http": "http", "streamable-http": "http",
                "streamableHttp": "http", "streamable_http": "http"}


def from_claude(name: str, raw: dict[str, Any], source: str,
                fail: Callable[[str, str | None, str], None]) -> dict[str, Any] | None:
    """Server ``name``'s ``mcpServers`` entry in our shape; None after a problem (each
    told to ``fail(server, field, message)``)."""
    unknown = [key for key in raw if key not in CLAUDE_KEYS | CLAUDE_IGNORED]
    for key in unknown:
        fail(name, key, claude_key_problem(key, sorted(CLAUDE_KEYS)))
    entry = {k: from_claude_text(v, k) for k, v in raw.items()
             if k in CLAUDE_KEYS - {"type", "transport"}}
    kind = raw.get("type", raw.get("transport"))
    if kind is not None:
        mapped = CLAUDE_TYPES.get(kind) if isinstance(kind, str) else None
        if mapped is None:
            fail(name, "type", f"unknown transport type {short(kind)}; use stdio, "
                               "http (or streamable-http) or sse")
            return None
        entry["transport"] = mapped
    disabled = raw.get("disabled", False)
    # A string is refused rather than guessed: "false" would read as true in JavaScript.
    if not isinstance(disabled, bool):
        fail(name, "disabled", f"must be true or false without quotes, not {short(disabled)}")
        return None
    if disabled:
        entry["enabled"] = False
    if isinstance(raw.get("description"), str):
        entry["description"] = raw["description"]
    if "envFile" in raw:  # ignored like the other hosts' keys, but the server needs it
        logging.getLogger("fast_mcp_gateway.config.loader").warning(
            "%s: server %r: 'envFile' is not read (a VS Code / Cursor key): the server "
            "starts without the variables of that file; put them in 'env' (as ${VAR} to "
            "take each from the gateway's environment)", source, name)
    return None if unknown else entry
