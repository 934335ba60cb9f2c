"""A hand-written stdio MCP server that breaks the protocol on demand.

It speaks the handshake era by hand (no SDK), so it can write exactly the bytes a
test needs: huge lines, lines without a newline, invalid UTF-8, junk, and -32601
answers to lists.  Flags (argv):

  --no-templates        declare ``resources`` but answer -32601 to resources/templates/list
  --no-resources        ... and to resources/list
  --no-prompts          declare ``prompts`` but answer -32601 to prompts/list
  --no-tools            declare ``tools`` but answer -32601 to tools/list
  --junk-at-start       write a junk line and an invalid UTF-8 line before anything else
  --bad-initialize      answer initialize with a response that is not valid UTF-8
  --exit-once=PATH      exit at once (status 1) when PATH does not exist, creating it:
                        the first start fails, the restart runs
  --twice               list each tool twice (the copy described "a copy")
  --endless-pages       every tools/list page names the same next cursor
  --bad-schema          list a tool without an inputSchema and one whose schema is a string
  --server-error        list ``server_error(code, message)`` too (a JSON-RPC error answer)
  --non-finite          list ``non_finite(where)`` too: an answer with bare ``NaN`` /
                        ``Infinity`` tokens (as Python's json.dumps writes them) in its
                        ``structuredContent``, ``_meta`` (``lifted``: beside a ~400 KiB
                        text), an embedded resource's ``_meta``, a progress or log
                        notification before it, or its error's ``data``

Tools: ``echo(text)``, ``big(size)`` (a result of about ``size`` bytes),
``flood(size)`` (``size`` bytes with no newline, then nothing), ``junk()`` and
``latin1()`` (a bad line on stdout, then a normal answer), ``bad_answer(pad, where)``
(its response is not valid UTF-8: in its text, after ``pad`` x's, or in its ``_meta``),
``pid()``, ``whoami()`` (the request id), ``block(path)`` (writes its pid to ``path``,
then sleeps for ever without reading stdin: it never sees EOF), ``weird_content()`` (a
content block of no MCP type), ``list_type()`` (a block whose type is a list),
``null_result()`` (``"result": null``: no JSON-RPC
response), ``told()`` (a progress, when the call has a token, and a log just
before its answer), ``nulls()`` (an answer whose ``structuredContent``, content items
and ``_meta`` hold the upstream's own nulls), ``wait_cancel(path)`` (no answer: writes
``path.started`` at once, and ``path`` holding the reason of the
``notifications/cancelled`` that names it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

FLAGS = set(sys.argv[1:])
OUT = sys.stdout.buffer


def write(data: bytes) -> None:
    OUT.write(data)
    OUT.flush()


def send(message: dict) -> None:
    write(json.dumps(message, separators=(",", ":")).encode() + b"\n")


def result(request_id: object, value: dict) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


def error(request_id: object, code: int, message: str) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


def text(value: str) -> dict:
    return {"content": [{"type": "text", "text": value}], "isError": False}


TOOLS = [
    {"name": name, "inputSchema": {"type": "object", "properties": props}}
    for name, props in [
        ("echo", {"text": {"type": "string"}}),
        ("big", {"size": {"type": "integer"}}),
        ("flood", {"size": {"type": "integer"}}),
        ("junk", {}),
        ("latin1", {}),
        ("bad_answer", {}),
        ("pid", {}),
        ("whoami", {}),
        ("block", {"path": {"type": "string"}}),
        ("weird_content", {}),
        ("list_type", {}),
        ("null_result", {}),
        ("told", {}),
        ("nulls", {}),
        ("wait_cancel", {"path": {"type": "string"}}),
    ]
]
for tool in TOOLS:
    if tool["name"] == "nulls":  # "a" must be there: a string or null
        tool["outputSchema"] = {"type": "object", "required": ["a"], "properties": {
            "a": {"type": ["string", "null"]}}}
if "--server-error" in FLAGS:
    TOOLS.append({"name": "server_error", "inputSchema": {"type": "object", "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"}}}})
if "--non-finite" in FLAGS:
    TOOLS.append({"name": "non_finite", "inputSchema": {"type": "object", "properties": {
        "where": {"type": "string"}}}})

NAN, INF = float("nan"), float("inf")


def non_finite(request_id: object, where: str, token: object) -> None:
    """An answer carrying NaN / Infinity at ``where`` (json.dumps writes them bare)."""
    answer = text("finite text")
    if where == "structured":
        answer["structuredContent"] = {"x": NAN, "y": INF, "z": [1, -INF]}
    elif where == "meta":
        answer["_meta"] = {"score": NAN, "range": [-INF, INF]}
    elif where == "resource":
        answer["content"].append({"type": "resource", "resource": {
            "uri": "raw://n", "text": "t", "_meta": {"n": -INF}}})
    elif where == "lifted":  # a long text the lane relays undecoded (upstream/lifting.py)
        answer = {**text("a \\ \"long\" text ✓ " * 20000), "_meta": {"n": NAN}}
    elif where == "progress" and token is not None:
        send({"jsonrpc": "2.0", "method": "notifications/progress",
              "params": {"progressToken": token, "progress": NAN, "total": INF}})
    elif where == "log":
        send({"jsonrpc": "2.0", "method": "notifications/message",
              "params": {"level": "error", "data": {"v": NAN}}})
    elif where == "error":
        send({"jsonrpc": "2.0", "id": request_id,
              "error": {"code": -32000, "message": "no", "data": {"v": INF}}})
        return
    result(request_id, answer)


def call(request_id: object, name: str, args: dict, token: object = None) -> None:
    if name == "echo":
        result(request_id, text(str(args.get("text", ""))))
    elif name == "big":
        result(request_id, text("x" * int(args["size"])))
    elif name == "flood":
        size, block = int(args["size"]), b"y" * 65536
        while size > 0:
            write(block[:size])
            size -= len(block)
    elif name == "junk":
        write(b"this is not json\n")
        result(request_id, text("after junk"))
    elif name == "latin1":
        write(b'{"jsonrpc":"2.0","method":"notifications/message","params":'
              b'{"level":"info","data":"caf\xe9"}}\n')
        result(request_id, text("after latin1"))
    elif name == "bad_answer":  # "caf\xe9" ends its text (after ``pad`` x's), or its _meta
        pad, meta = b"x" * int(args.get("pad", 0)), args.get("where") == "meta"
        write(b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode()
              + b',"result":{"content":[{"type":"text","text":"' + pad
              + (b'"}],"_meta":{"note":"caf\xe9"}}}\n' if meta else b'caf\xe9"}]}}\n'))
    elif name == "whoami":  # the request id: "gw-N" on the express lane
        result(request_id, text(str(request_id)))
    elif name == "weird_content":
        result(request_id, {"content": [{"type": "hologram", "beam": 1}]})
    elif name == "list_type":  # a type no set holds (a list): no MCP type either
        result(request_id, {"content": [{"type": ["resource_link"], "uri": "file:///x"}]})
    elif name == "null_result":
        send({"jsonrpc": "2.0", "id": request_id, "result": None})
    elif name == "told":  # both lines and the answer in one write: one chunk on stdout
        lines = [{"jsonrpc": "2.0", "method": "notifications/message",
                  "params": {"level": "warning", "logger": "raw", "data": "just before"}},
                 {"jsonrpc": "2.0", "id": request_id, "result": text("told")}]
        if token is not None:
            lines.insert(0, {"jsonrpc": "2.0", "method": "notifications/progress",
                             "params": {"progressToken": token, "progress": 1, "total": 1}})
        write(b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in lines))
    elif name == "nulls":
        result(request_id, {
            "content": [{"type": "text", "text": "n", "annotations": None, "_meta": None},
                        {"type": "resource_link", "uri": "raw://one", "name": "one",
                         "title": None, "description": None, "mimeType": None, "size": None},
                        {"type": "text", "text": "k", "_meta": {"k": None}},
                        {"type": "resource", "resource": {"uri": "raw://one", "text": "t",
                                                          "mimeType": None,
                                                          "_meta": {"q": None}}}],
            "structuredContent": {"a": None, "b": [None, 1], "c": {"d": None}},
            "_meta": {"m": None}, "isError": False})
    elif name == "pid":
        result(request_id, text(str(os.getpid())))
    elif name == "non_finite":
        non_finite(request_id, str(args.get("where")), token)
    elif name == "server_error":  # a JSON-RPC error answer of the code it is given
        error(request_id, int(args["code"]), str(args["message"]))
    elif name == "wait_cancel":
        WAITING[request_id] = args["path"]
        written(args["path"] + ".started", "")
    elif name == "block":
        Path(args["path"] + ".tmp").write_text(str(os.getpid()))
        os.replace(args["path"] + ".tmp", args["path"])  # whole, for a reader polling it
        while True:
            time.sleep(3600)
    else:
        error(request_id, -32602, f"unknown tool {name}")


WAITING: dict[object, str] = {}  # wait_cancel's calls: request id -> path


def written(path: str, content: str) -> None:
    Path(path + ".tmp").write_text(content)
    os.replace(path + ".tmp", path)  # whole, for a reader polling it


def main() -> None:
    for flag in FLAGS:
        if flag.startswith("--exit-once="):
            marker = Path(flag.split("=", 1)[1])
            if not marker.exists():
                marker.write_text("exited once")
                sys.exit(1)
    if "--junk-at-start" in FLAGS:
        write(b"starting up (not json)\n")
        write(b"\xff\xfe garbage\n")
    for raw in sys.stdin.buffer:
        message = json.loads(raw)
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:  # notifications
            params = message.get("params") or {}
            if method == "notifications/cancelled" and params.get("requestId") in WAITING:
                written(WAITING.pop(params["requestId"]), str(params.get("reason")))
            continue
        if method == "initialize":
            if "--bad-initialize" in FLAGS:
                write(b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode()
                      + b',"result":{"protocolVersion":"2025-06-18","capabilities":{},'
                      b'"serverInfo":{"name":"caf\xe9","version":"1"}}}\n')
                continue
            result(request_id, {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}, "resources": {}, "prompts": {}},
                "serverInfo": {"name": "raw", "version": "1"},
            })
        elif method == "ping":
            result(request_id, {})
        elif method == "tools/list":
            if "--no-tools" in FLAGS:
                error(request_id, -32601, "Method not found")
            elif "--twice" in FLAGS:
                result(request_id, {"tools": [*TOOLS, *({**t, "description": "a copy"}
                                                        for t in TOOLS)]})
            elif "--bad-schema" in FLAGS:
                result(request_id, {"tools": [*TOOLS, {"name": "bare"}, {
                    "name": "stringly", "inputSchema": {"type": "string"}}]})
            elif "--endless-pages" in FLAGS:
                result(request_id, {"tools": TOOLS, "nextCursor": "again"})
            else:
                result(request_id, {"tools": TOOLS})
        elif method == "resources/list":
            if "--no-resources" in FLAGS:
                error(request_id, -32601, "Method not found")
            else:
                result(request_id, {"resources": [{"uri": "raw://one", "name": "one"}]})
        elif method == "resources/templates/list":
            if "--no-templates" in FLAGS:
                error(request_id, -32601, "Method not found")
            else:
                result(request_id, {"resourceTemplates": []})
        elif method == "prompts/list":
            if "--no-prompts" in FLAGS:
                error(request_id, -32601, "Method not found")
            else:
                result(request_id, {"prompts": []})
        elif method == "tools/call":
            params = message.get("params") or {}
            call(request_id, params.get("name", ""), params.get("arguments") or {},
                 (params.get("_meta") or {}).get("progressToken"))
        else:
            error(request_id, -32601, "Method not found")


if __name__ == "__main__":
    import quick_exit  # noqa: F401 - exits without the final GC pass (see there)
    main()
