"""Keys other hosts write in their ``mcpServers`` entries, met under ``servers:``.

A Claude Desktop entry moved under ``servers:`` as it was (or given to
``gateway_add_server``) brings keys that are not ours.  The typo guess for them misled:
``disabled`` was "did you mean 'enabled'?", and ``enabled: true`` is the opposite of
what was meant; ``type`` listed every field.  Each is said with what to write instead.
(In an ``mcpServers`` file they are read as the host reads them: ``loader.py``.)
"""

from __future__ import annotations

_BOOKKEEPING = "another host's bookkeeping, which the gateway does not use: remove it"

HOST_KEYS: dict[str, str] = {
    "disabled": "Claude Desktop's key; here it is 'enabled', with the opposite value: "
                "'disabled: true' is 'enabled: false'",
    "type": "Claude Desktop's key; here it is 'transport' (http or sse, for a server with "
            "a url; a stdio server needs none: 'command' makes it one)",
    "timeout": "another host's key; here a call's limit is 'timeouts: {call: SECONDS}' "
               "(seconds)",
    "envFile": "another host's key; put the file's variables in 'env' (as ${VAR} for "
               "secrets)",
    "autoApprove": _BOOKKEEPING,
    "alwaysAllow": _BOOKKEEPING,
}
