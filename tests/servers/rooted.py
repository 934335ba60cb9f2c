"""A hand-written stdio server (handshake era, no SDK) that narrows itself to its client's
roots the way @modelcontextprotocol/server-filesystem does.

Once initialized, if its client declared ``roots``, it asks ``roots/list`` (outside any
call, at once); it asks again on ``notifications/roots/list_changed``.  A non-empty
answer replaces its allowed directories (the command-line ones at start); an empty one
keeps them.  Each answer it gets is appended as a JSON line to the file named by
``ROOTED_LOG`` (so a test can wait until it was answered, on a condition).

Tool ``allowed``: the allowed directories now.  Tool ``listed(count)``: the roots of the
``count``-th answer, answered once there are that many (parked until then).  Tool
``roots``: asks ``roots/list`` within the call and answers with them (neither logged nor
allowed: only the asks outside calls narrow it).
"""

from __future__ import annotations

import json
import os
import sys

allowed: list[str] = sys.argv[1:]
listings: list[list[str]] = []
parked: list[tuple[object, int]] = []  # (request id, count) of listed calls waiting
asked = 0
within: dict[str, object] = {}  # id of a roots/list asked within a call -> the call's id
client_roots = False

TOOLS = [
    {"name": "allowed", "inputSchema": {"type": "object"}},
    {"name": "roots", "inputSchema": {"type": "object"}},
    {"name": "listed", "inputSchema": {"type": "object",
                                       "properties": {"count": {"type": "integer"}},
                                       "required": ["count"]}},
]


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def text(request_id: object, value: str) -> None:
    send({"jsonrpc": "2.0", "id": request_id,
          "result": {"content": [{"type": "text", "text": value}]}})


def ask_roots() -> None:
    global asked
    asked += 1
    send({"jsonrpc": "2.0", "id": f"roots-{asked}", "method": "roots/list"})


def got_roots(roots: list[dict]) -> None:
    global allowed
    uris = [str(root.get("uri")) for root in roots]
    listings.append(uris)
    if uris:
        allowed = uris
    with open(os.environ["ROOTED_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(uris) + "\n")
    answer_parked()


def answer_parked() -> None:
    for request_id, count in [p for p in parked if p[1] <= len(listings)]:
        parked.remove((request_id, count))
        text(request_id, json.dumps(listings[count - 1]))


def main() -> None:
    global client_roots
    for raw in sys.stdin:
        message = json.loads(raw)
        method, request_id = message.get("method"), message.get("id")
        params = message.get("params") or {}
        if method is None:  # an answer to one of our roots/list requests
            roots = (message.get("result") or {}).get("roots") or []
            call = within.pop(str(request_id), None)
            if call is not None:
                text(call, json.dumps([str(root.get("uri")) for root in roots]))
            else:
                got_roots(roots)
        elif method == "notifications/initialized":
            if client_roots:
                ask_roots()
        elif method == "notifications/roots/list_changed":
            ask_roots()
        elif request_id is None:
            continue
        elif method == "initialize":
            client_roots = "roots" in (params.get("capabilities") or {})
            send({"jsonrpc": "2.0", "id": request_id, "result": {
                "protocolVersion": params["protocolVersion"], "capabilities": {"tools": {}},
                "serverInfo": {"name": "rooted", "version": "1"}}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}})
        elif method == "tools/call" and params.get("name") == "allowed":
            text(request_id, json.dumps(allowed))
        elif method == "tools/call" and params.get("name") == "roots":
            key = f"within-{len(within)}-{request_id}"
            within[key] = request_id
            send({"jsonrpc": "2.0", "id": key, "method": "roots/list"})
        elif method == "tools/call" and params.get("name") == "listed":
            parked.append((request_id, int((params.get("arguments") or {})["count"])))
            answer_parked()
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        else:
            send({"jsonrpc": "2.0", "id": request_id,
                  "error": {"code": -32601, "message": "Method not found"}})


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    main()
