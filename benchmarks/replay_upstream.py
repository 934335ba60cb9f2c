"""A light stdio MCP server that answers with one recorded server's real ``tools/list``.

    python benchmarks/replay_upstream.py benchmarks/data/real_catalog.json github

The tools are exactly what the real server listed (``collect_catalog.py`` recorded
them); a ``tools/call`` answers the arguments back as text.  No dependencies, so that
thirty of them start in a moment on two cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def answer(request: dict[str, Any], server: dict[str, Any]) -> dict[str, Any] | None:
    method, rid = request.get("method"), request.get("id")
    if rid is None:
        return None  # a notification
    params = request.get("params") or {}
    result: Any
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-11-25"),
                  "capabilities": {"tools": {}},
                  "serverInfo": server.get("serverInfo") or {"name": server["name"],
                                                             "version": "replay"}}
    elif method == "tools/list":
        result = {"tools": server["tools"]}
    elif method == "tools/call":
        text = json.dumps(params.get("arguments") or {})
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid,
                "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def main() -> None:
    data, name = Path(sys.argv[1]), sys.argv[2]
    server = next(s for s in json.loads(data.read_text())["servers"] if s["name"] == name)
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = answer(json.loads(line), server)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
