"""Answering a stdio host's opening request while the server stack is still importing.

A stdio host starts the gateway and sends its opening request at once: ``initialize``
(the handshake era) or ``server/discover`` (2026-07-28).  A bare FastMCP server answers
once FastMCP is imported; the gateway imports FastMCP *and* its own stack, while the
upstreams it spawned first import theirs on the same cores.  Yet the answer depends on
nothing the import makes: the capabilities are the gateway's fixed set, the server
info its name and version, and the instructions the naming head alone (over stdio no
upstream session exists before the answer, so no upstream's instructions are in it:
``instructions.py``).  So ``serve`` starts ``EarlyAnswer`` before the import: a thread
that reads the host's first line from fd 0 and, when it is one of those two requests
in a shape the SDK is certain to accept, writes the answer to fd 1 at once.

Nothing is consumed: every byte the thread read is handed to the stdio front
(``finish``), which serves the same lines to the SDK as if they had just arrived, so
the session's state (the era, the host's capabilities and info) is the SDK's own.
The SDK's answer to the replayed request is not sent again (``AnswerFirst``): it is
compared with the one sent, and a difference is logged as a warning (``differences``),
so a future SDK that answers otherwise is noticed, not silently contradicted.  A request
the thread is not certain about (another method, a version the gateway does not
negotiate as stated here, capabilities of an unexpected shape) is left to the SDK, as
before.  Imports only the standard library (and ``config/json_text``, a stdlib-only
leaf): the CLI uses it before anything heavy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import stat
import threading
from dataclasses import dataclass
from typing import Any

from fast_mcp_gateway.config.json_text import finite_float, nesting, no_constant
from fast_mcp_gateway.upstream.loops import GATEWAYS_KEY, new_identity

logger = logging.getLogger(__name__)

# The SDK's protocol registry (``mcp_types.version``), which costs pydantic to import;
# tests/test_early_answer.py checks these against it.
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[-1]
MODERN_VERSIONS = ("2026-07-28",)
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"

# What the gateway's FastMCP server advertises (its handlers: front/host_requests.py;
# the extensions: FastMCP's bundled ones, at 2026-07-28 only).
HANDSHAKE_CAPABILITIES: dict[str, Any] = {
    "logging": {}, "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "tools": {"listChanged": True}, "completions": {}}
MODERN_CAPABILITIES: dict[str, Any] = {
    **HANDSHAKE_CAPABILITIES,
    "extensions": {"io.modelcontextprotocol/ui": {}, "io.modelcontextprotocol/tasks": {}}}

FIRST_LINE_LIMIT = 1 << 20
"""Bytes read at most while looking for the first line: an opening request is far
smaller; past this the thread stops and the stdio front reads on."""


def instructions_head(separator: str) -> str:
    """How the gateway's names are made: the start of its ``instructions``."""
    return (f"This server is a gateway in front of several MCP servers. Their tools and "
            f"prompts are named '<namespace>{separator}<name>'; their resources carry the "
            f"namespace after the URI scheme.")


def is_pipe_or_socket(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def one_socket(a: int, b: int) -> bool:
    """Both fds are one socket (``socat EXEC:``, inetd): a write pipe transport watches
    its socket for the peer closing, and the host's requests look like that (asyncio
    closed stdout, uvloop stopped answering); the threaded streams serve it."""
    try:
        first, second = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (stat.S_ISSOCK(first.st_mode)
            and (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino))


def can_read_early() -> bool:
    """Whether this system has what the early reader waits with (``poll``: not Windows)."""
    return hasattr(select, "poll")


def served_threadless(fd_in: int = 0, fd_out: int = 1) -> bool:
    """Whether the stdio front serves these fds itself (``stdio.stdio_streams``): both
    pipes or sockets, and not one socket.  Only then is the host's first line read
    early (the SDK's threaded streams read a terminal themselves)."""
    return is_pipe_or_socket(fd_in) and is_pipe_or_socket(fd_out) \
        and not one_socket(fd_in, fd_out)


# -- which requests are answered, and how ------------------------------------------------

# The client capabilities the SDK models (its schemas of both eras), member by member:
# ``FLAG`` a boolean, ``OBJECT`` any object, a dict an object of these.  A flag where
# an object is modelled, or the reverse, is refused (invalid params); a member it does
# not model is ignored.  Each may be null.
FLAG, OBJECT = "flag", "object"
_CAPABILITY_SHAPES: dict[str, Any] = {
    "roots": {"listChanged": FLAG},
    "sampling": {"context": OBJECT, "tools": OBJECT},
    "elicitation": {"form": OBJECT, "url": OBJECT},
    "tasks": {"list": OBJECT, "cancel": OBJECT, "requests": {
        "sampling": {"createMessage": OBJECT}, "elicitation": {"create": OBJECT}}},
}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _fits(value: Any, shape: Any) -> bool:
    if value is None:
        return True
    if shape == FLAG:
        return isinstance(value, bool)
    if not isinstance(value, dict):
        return False
    if shape == OBJECT:
        return True
    # The SDK reads the camelCase names; a snake_case one is held to the same shape
    # too, in case a version of it reads names as well.
    return all(_fits(value[key], inner) for name, inner in shape.items()
               for key in {name, _snake(name)} if key in value)


def _certain_capabilities(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    for key, item in value.items():
        if item is None:
            continue
        if key in ("experimental", "extensions"):  # identifier -> settings (any)
            if not isinstance(item, dict) or not all(isinstance(v, dict)
                                                     for v in item.values()):
                return False
        elif key in _CAPABILITY_SHAPES and not _fits(item, _CAPABILITY_SHAPES[key]):
            return False
    return True  # other keys: not modelled, ignored by the SDK


_INFO_TEXTS = ("title", "description", "websiteUrl")


def _certain_info(value: Any) -> bool:
    """A ``clientInfo`` the SDK's ``Implementation`` takes as it is."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) \
            or not isinstance(value.get("version"), str):
        return False
    if value.get("icons") not in (None, []):
        return False
    return all(value.get(key) is None or isinstance(value[key], str) for key in _INFO_TEXTS)


def _usable_id(message: dict[str, Any]) -> bool:
    request_id = message.get("id")
    return isinstance(request_id, str | int) and not isinstance(request_id, bool)


def _token_ok(meta: dict[str, Any], key: str) -> bool:
    # Present means a string or an integer: the SDK refuses null as well.
    token = meta.get(key)
    return key not in meta or (isinstance(token, str | int) and not isinstance(token, bool))


def _meta_ok(params: dict[str, Any]) -> bool:
    meta = params.get("_meta")
    if meta is None:
        return True
    return isinstance(meta, dict) and _token_ok(meta, "progressToken") \
        and _token_ok(meta, "progress_token")


LOG_LEVEL_KEY = "io.modelcontextprotocol/logLevel"
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert",
              "emergency")
"""The values the 2026-07-28 envelope's ``logLevel`` may take (``LoggingLevel``)."""

REQUEST_MEMBERS = frozenset({"jsonrpc", "id", "method", "params"})
"""A request's members: a line with ``result`` or ``error`` as well is read by the
SDK as a response, and never answered."""


def opening_result(message: Any, *, name: str, version: str, separator: str,
                   identity: str = "") -> dict[str, Any] | None:
    """The result the gateway answers ``message`` with when it is an opening request
    the SDK certainly accepts (``initialize``, or ``server/discover`` at a 2026-07-28
    version), else None (the SDK answers it, as it answers every other request).
    ``identity``: the gateway's (``upstream/loops.py``), told in ``_meta``: none of its
    upstreams is connected yet, so it names no other gateway."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" \
            or not _usable_id(message) or not set(message) <= REQUEST_MEMBERS:
        return None
    params = message.get("params")
    if not isinstance(params, dict) or not _meta_ok(params):
        return None
    info = {"name": name, "version": version}
    instructions = instructions_head(separator)
    method = message.get("method")
    if method == "initialize":
        requested = params.get("protocolVersion")
        if not isinstance(requested, str) \
                or not _certain_capabilities(params.get("capabilities")) \
                or not _certain_info(params.get("clientInfo")):
            return None
        return {"_meta": {GATEWAYS_KEY: [identity]},
                "protocolVersion": requested if requested in HANDSHAKE_VERSIONS
                else LATEST_HANDSHAKE,
                "capabilities": HANDSHAKE_CAPABILITIES, "serverInfo": info,
                "instructions": instructions}
    if method == "server/discover":
        meta = params.get("_meta")
        if set(params) != {"_meta"} or not isinstance(meta, dict) \
                or meta.get(VERSION_KEY) not in MODERN_VERSIONS \
                or meta.get(LOG_LEVEL_KEY) not in (None, *LOG_LEVELS) \
                or not _certain_capabilities(meta.get(CLIENT_CAPABILITIES_KEY)) \
                or (meta.get(CLIENT_INFO_KEY) is not None
                    and not _certain_info(meta[CLIENT_INFO_KEY])):
            return None
        return {"_meta": {GATEWAYS_KEY: [identity], SERVER_INFO_KEY: info},
                "ttlMs": 0, "cacheScope": "private",
                "supportedVersions": list(MODERN_VERSIONS),
                "capabilities": MODERN_CAPABILITIES, "instructions": instructions,
                "resultType": "complete"}
    return None


def valid_unicode(value: Any) -> bool:
    """Whether ``value``'s strings are valid Unicode: Python's JSON parser reads lone
    UTF-16 surrogates (an escape from \\ud800 to \\udfff not in a pair), the SDK's
    refuses them (``stdio.screen`` too)."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


MAX_NESTING = 64
"""Arrays and objects nested deeper than this are not answered early: Python's parser
reads ~1000 levels, the SDK's stops at 200 and refuses the line (a parse error)."""


def parse_line(line: bytes) -> Any:
    """``line`` as JSON, or None when it is not JSON text the SDK's parser reads alike."""
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=no_constant,
                             parse_float=finite_float)
    except (ValueError, RecursionError):
        return None
    # Cheap bounds first: nesting needs as many brackets, a lone surrogate an escape.
    if line.count(b"[") + line.count(b"{") > MAX_NESTING \
            and nesting(message, MAX_NESTING) > MAX_NESTING:
        return None
    return message if b"\\u" not in line or valid_unicode(message) else None


OPENING_RESULT_KEYS = frozenset({"protocolVersion", "supportedVersions"})
"""What an ``initialize`` or ``server/discover`` result holds and no other result does:
the SDK's reply to the replayed request is told from another with the id reused."""


def differences(sent: dict[str, Any], sdk: dict[str, Any]) -> list[str]:
    """The members of the SDK's answer to the replayed opening request that differ
    from the answer sent early (empty: the same).  Instructions may have grown by
    then (an upstream connected meanwhile): only a different start counts; so may the
    gateways named in ``_meta`` (an upstream gateway connected): only a different first
    one (this gateway's identity) counts."""
    if "result" not in sdk:
        data = (sdk.get("error") or {}).get("data")
        if isinstance(data, dict) and GATEWAYS_KEY in data:
            return []  # a loop found since: the host's gateway refuses it (loops.py)
        return ["the SDK answered with an error: " + json.dumps(sdk.get("error"))[:200]]
    found = []
    early, late = sent["result"], sdk["result"]
    for key in sorted(set(early) | set(late)):
        if key == "instructions" and isinstance(late.get(key), str) \
                and late[key].startswith(early.get(key, "")):
            continue
        if key == "_meta" and _same_meta(early.get(key), late.get(key)):
            continue
        if early.get(key) != late.get(key):
            found.append(key)
    return found


def _same_meta(early: Any, late: Any) -> bool:
    if not isinstance(early, dict) or not isinstance(late, dict):
        return False
    sent, now = early.get(GATEWAYS_KEY), late.get(GATEWAYS_KEY)
    if not isinstance(sent, list) or not isinstance(now, list) or now[:len(sent)] != sent:
        return False
    return {k: v for k, v in early.items() if k != GATEWAYS_KEY} \
        == {k: v for k, v in late.items() if k != GATEWAYS_KEY}


# -- the thread --------------------------------------------------------------------------

@dataclass(frozen=True)
class Handover:
    """What the early reader leaves to the stdio front: every byte it read from the
    host (``preread``, to be read again), and the answer it sent, if any."""

    preread: bytes = b""
    answered: dict[str, Any] | None = None


class EarlyAnswer:
    """Reads the host's first line on a thread and answers it if it can (module doc).

    ``start()`` before the import; ``finish()`` once the stdio front is about to read
    the host's stdin itself (it stops the thread and returns the ``Handover``);
    ``close()`` on any way out (idempotent).
    """

    def __init__(self, *, name: str, version: str, separator: str,
                 identity: str | None = None, fd_in: int = 0, fd_out: int = 1) -> None:
        self._name, self._version, self._separator = name, version, separator
        # The gateway's (upstream/loops.py), made before it is: the gateway takes it over.
        self.identity = identity or new_identity()
        self._in, self._out = fd_in, fd_out
        self._buffer = bytearray()
        self._answered: dict[str, Any] | None = None
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="early-answer", daemon=True)
        self._handover: Handover | None = None

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> Handover:
        """Stop reading (at once, whatever the host sent) and hand over."""
        if self._handover is None:
            self._stop()
            self._handover = Handover(bytes(self._buffer), self._answered)
            self._buffer.clear()
        return self._handover

    def close(self) -> None:
        if self._handover is None:
            self._stop()
            self._handover = Handover()

    def _stop(self) -> None:
        if self._thread.is_alive():
            os.write(self._wake_write, b"x")
            self._thread.join()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        try:
            line = self._first_line()
            if line is not None:
                self._answer(line)
        except Exception:  # never the gateway's end: the SDK answers the line instead
            logger.debug("early answer: not answered", exc_info=True)

    def _first_line(self) -> bytes | None:
        """The first non-blank line (without its ending), or None: the host closed its
        end, the front took over, or no line within ``FIRST_LINE_LIMIT``.  Each byte is
        looked at once: a host trickling blank lines a byte at a time had every line
        read so far split again at each byte (30,000 of them: 48 s of CPU, taken from
        the import it runs beside)."""
        poller = select.poll()
        poller.register(self._in, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        buffer = self._buffer
        start = scanned = 0  # where the line being read begins; what holds no line end
        while True:
            end = _line_end(buffer, max(start, scanned))
            while end >= 0:
                if buffer[start:end].strip():
                    return bytes(buffer[start:end])
                start = end + 1  # a blank line (the \n of a \r\n ends an empty one)
                end = _line_end(buffer, start)
            scanned = len(buffer)
            if scanned > FIRST_LINE_LIMIT:
                return None
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_read in ready:
                return None
            try:
                chunk = self._read_chunk()
            except BlockingIOError:  # the host's pipe is non-blocking: poll again
                continue
            if not chunk:
                return None
            buffer += chunk

    def _read_chunk(self) -> bytes:
        return os.read(self._in, 1 << 16)

    def _answer(self, line: bytes) -> None:
        message = parse_line(line.removeprefix(b"\xef\xbb\xbf"))
        result = opening_result(message, name=self._name, version=self._version,
                                separator=self._separator, identity=self.identity)
        if result is None:
            return
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        data = json.dumps(reply, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        _write_all(self._out, data)
        self._answered = reply
        logger.debug("answered %s before the server stack was loaded", message["method"])


def _line_end(buffer: bytearray, start: int) -> int:
    """Where the first line ending at or after ``start`` is, or -1: ``\n``, ``\r`` or
    ``\r\n`` end a line, as the stdio front splits them (``LineReader``)."""
    newline = buffer.find(b"\n", start)
    ret = buffer.find(b"\r", start, len(buffer) if newline < 0 else newline)
    return ret if ret >= 0 else newline


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # the host made its pipe non-blocking
            select.select([], [fd], [])
            continue
        view = view[written:]
