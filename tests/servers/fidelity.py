"""A hand-written stdio MCP server (handshake era, no SDK) for relay-fidelity tests.

It writes exactly the bytes a test needs to compare against, and exercises what a
relay tends to get wrong:

* tools without ``title`` or annotations (``plain``), with them (``titled``), and one
  that runs only as a task (``task_only``: ``execution.taskSupport: required``);
* ``link``: a ``resource_link`` and an embedded resource to a resource no list names
  (``count`` links more, an ``embed`` of that many characters: for size limits);
* ``needs_url``: the JSON-RPC error -32042 (URL elicitation required) with ``data``;
* prompts without ``arguments`` (``bare``) and with a link in a message (``linked``);
* a listed resource without ``mimeType``; ``resources/read`` echoes the URI it got;
* ``instructions``.

``--no-resources``: it declares no ``resources`` capability and answers no resource
request (as server-filesystem, whose results embed ``file://`` resources all the same).

``LISTS`` below is what it answers to each list; tests import it to compare.
"""

from __future__ import annotations

import json
import sys

INSTRUCTIONS = "Fidelity fixture.\nCall link to get a link to file:///srv/readme.txt."
README = "file:///srv/readme.txt"
URL_ERROR = {
    "code": -32042,
    "message": "This request requires more information.",
    "data": {"elicitations": [{"mode": "url", "elicitationId": "e-1",
                               "url": "https://example.com/connect?state=abc",
                               "message": "Authorize access to your files."}]},
}

LISTS: dict[str, dict] = {
    "tools/list": {"tools": [
        {"name": "plain", "inputSchema": {"type": "object"}},
        {"name": "titled", "title": "A Titled Tool", "description": "Has everything.",
         "inputSchema": {"type": "object", "properties": {
             "x": {"type": "integer"},
             "rate": {"type": "number", "minimum": 0.00001, "maximum": 1e20,
                      "description": "é ✓ \u2028 漢字"}},
                         "required": ["x"]},
         "outputSchema": {"type": "object", "properties": {"y": {"type": "integer"}}},
         "annotations": {"readOnlyHint": True}, "_meta": {"team": "fidelity"}},
        {"name": "link", "description": "Links to a resource.",
         "inputSchema": {"type": "object"}},
        {"name": "needs_url", "inputSchema": {"type": "object"}},
        {"name": "task_only", "inputSchema": {"type": "object"},
         "execution": {"taskSupport": "required"}},
    ]},
    "prompts/list": {"prompts": [
        {"name": "bare"},
        {"name": "linked", "description": "A message with a link.",
         "arguments": [{"name": "topic", "required": True}]},
    ]},
    "resources/list": {"resources": [{"uri": "file:///srv/listed.txt", "name": "listed"}]},
    "resources/templates/list": {"resourceTemplates": []},
}


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def result(request_id: object, value: dict) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


def error(request_id: object, value: dict) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "error": value})


def link_blocks() -> list[dict]:
    return [
        {"type": "text", "text": "see the readme"},
        {"type": "resource_link", "uri": README, "name": "readme", "mimeType": "text/plain"},
        {"type": "resource", "resource": {"uri": README, "mimeType": "text/plain",
                                          "text": "embedded readme"}},
    ]


def call(request_id: object, name: str, args: dict) -> None:
    if name == "plain":
        result(request_id, {"content": [{"type": "text", "text": "plain"}]})
    elif name == "titled":
        result(request_id, {"content": [{"type": "text", "text": "{\"y\":1}"}],
                            "structuredContent": {"y": 1}})
    elif name == "link":  # {"count": n}: n links more, {"embed": n}: embedded n chars
        more = [{"type": "resource_link", "uri": f"file:///srv/{i}.txt", "name": str(i)}
                for i in range(int(args.get("count", 0)))]
        if args.get("embed"):
            more.append({"type": "resource", "resource": {
                "uri": README, "mimeType": "text/plain", "text": "e" * int(args["embed"])}})
        result(request_id, {"content": link_blocks() + more})
    elif name == "needs_url":
        error(request_id, URL_ERROR)
    elif name == "task_only":
        result(request_id, {"content": [{"type": "text", "text": "ran without a task"}]})
    else:
        error(request_id, {"code": -32602, "message": f"unknown tool {name}"})


def main() -> None:
    serves_resources = "--no-resources" not in sys.argv[1:]
    capabilities = {"tools": {}, "prompts": {}, **({"resources": {}} if serves_resources else {})}
    for raw in sys.stdin:
        message = json.loads(raw)
        method, request_id = message.get("method"), message.get("id")
        params = message.get("params") or {}
        if request_id is None:
            continue  # notifications
        if method == "initialize":
            result(request_id, {
                "protocolVersion": params["protocolVersion"],
                "capabilities": capabilities,
                "serverInfo": {"name": "fidelity", "version": "1"},
                "instructions": INSTRUCTIONS,
            })
        elif method == "ping":
            result(request_id, {})
        elif method.startswith("resources/") and not serves_resources:
            error(request_id, {"code": -32601, "message": "Method not found"})
        elif method in LISTS:
            result(request_id, LISTS[method])
        elif method == "tools/call":
            call(request_id, params.get("name", ""), params.get("arguments") or {})
        elif method == "resources/read":
            uri = params["uri"]
            result(request_id, {"contents": [{"uri": uri, "mimeType": "text/plain",
                                              "text": f"content of {uri}"}]})
        elif method == "prompts/get":
            if params.get("name") == "bare":
                result(request_id, {"messages": [
                    {"role": "user", "content": {"type": "text", "text": "bare prompt"}}]})
            else:
                result(request_id, {"description": "linked", "messages": [
                    {"role": "user", "content": block} for block in link_blocks()]})
        else:
            error(request_id, {"code": -32601, "message": "Method not found"})


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    main()
