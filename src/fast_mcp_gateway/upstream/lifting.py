"""Large string values of an upstream's answer, relayed to the host without decoding them.

A tool result of a few MiB (a file's text, a base64 image) is almost all one JSON string
literal.  Parsed, handed through the pipeline and encoded again, that literal costs the
gateway a decode and an encode (~4 ms per MiB here) and four or five copies of fresh
memory; the express lanes only need the rest of the message.  So, for the lanes' own
calls (``lifting`` set around ``tools/call``), an answer of ``LIFT_MIN`` bytes or more
has its long ``"text"``, ``"data"`` and ``"blob"`` values *lifted* before parsing:

* each is cut out of the bytes and replaced by a short token (``Lifted``, a ``str``
  whose text is the token, holding the literal as the upstream wrote it);
* the rest is parsed by ``json.loads`` as usual (so the envelope is still judged), and
  the pipeline sees an ordinary result whose long strings are tokens;
* ``splice`` puts the literals back in place of their tokens when the host's answer is
  encoded (``front/wire.py``), one copy into the output.

Only literals that are valid JSON as written are lifted: an answer with a raw control
character anywhere, a backslash escape JSON does not define, or bytes that are not
UTF-8, is parsed the usual way (and refused there, or its surrogates escaped).  Tokens
carry a random nonce per answer, so an upstream cannot name another call's literal; they
are registered weakly (a result dropped unsent frees its literals).  What must see the
real text (an error result's message for the record, a typed model, the result stage's
size limit) uses ``unlifted`` / ``text_of``, or is not given lifted results at all
(``JsonTool.lifts``).
"""

from __future__ import annotations

import contextvars
import json
import re
import secrets
import weakref
from typing import Any

LIFT_MIN = 256 * 1024
"""An answer this large (bytes) is looked at for literals to lift."""

LITERAL_MIN = 64 * 1024
"""A string literal this long (bytes, quotes included) is lifted."""

_KEYS = frozenset({b'"text"', b'"data"', b'"blob"'})
_MAX_STEPS = 512  # string literals looked at before the rest is left to json.loads
_MAX_HOPS = 64  # escaped quotes stepped over one at a time before all are blanked at once
_CONTROL = bytes(range(32))
_ESCAPES = (b"\\n", b'\\"', b"\\u", b"\\t", b"\\r", b"\\/", b"\\b", b"\\f")  # and \\
_BAD_U = re.compile(rb"\\u(?![0-9a-fA-F]{4})")
_PREFIX = "@gw-lifted-"
_TOKEN = re.compile(r'"@gw-lifted-([0-9a-f]{24}-[0-9]+)"')

lifting: contextvars.ContextVar[bool] = contextvars.ContextVar("lifting", default=False)
"""Set by the express lanes around a ``tools/call`` whose answer may be lifted."""

_LIVE: weakref.WeakValueDictionary[str, Lifted] = weakref.WeakValueDictionary()


class Lifted(str):
    """A lifted string value: reads as its token; ``raw`` is the JSON literal."""

    raw: memoryview

    def value(self) -> str:
        """The string the literal encodes (decoded now)."""
        return str(json.loads(bytes(self.raw)))


def lifted_loads(data: bytes, *, decoded: bool = False) -> Any:
    """``json.loads(data)``, with its long string values lifted (see the module doc);
    ``decoded``: ``data`` is known to be UTF-8 (the stdio tap decoded its line)."""
    if len(data) < LIFT_MIN:
        return json.loads(data)
    cuts, blank = _literals(data)
    if not cuts or len(data.translate(None, _CONTROL)) != len(data) \
            or not (decoded or _utf8(data)):
        return json.loads(data)
    if b"\\" in data and any(_invalid_escape(blank, start, end) for start, end in cuts):
        return json.loads(data)
    view = memoryview(data)
    nonce = secrets.token_hex(12)
    parts: list[bytes | memoryview] = []
    literals: dict[str, memoryview] = {}
    position = 0
    for number, (start, end) in enumerate(cuts):
        token = f"{_PREFIX}{nonce}-{number}"
        literals[token] = view[start:end]
        parts += [view[position:start], b'"%s"' % token.encode()]
        position = end
    parts.append(view[position:])
    try:
        message = json.loads(b"".join(parts))
    except ValueError:  # refused again, for a message that names the upstream's bytes
        return json.loads(data)
    return _adopt(message, literals)


def splice(text: str, end: bytes = b"") -> bytes:
    """``text`` (JSON) as UTF-8 with every live token's literal put back, then ``end``."""
    if _PREFIX not in text:
        return text.encode() + end if end else text.encode()
    parts: list[bytes | memoryview] = []
    position = 0
    for match in _TOKEN.finditer(text):
        lifted = _LIVE.get(_PREFIX + match.group(1))
        if lifted is None:
            continue  # an upstream's own text that looks like a token: left as it is
        parts += [text[position:match.start()].encode(), lifted.raw]
        position = match.end()
    parts += [text[position:].encode(), end]
    return b"".join(parts)


def unlifted(value: Any) -> Any:
    """``value`` with every lifted string decoded (a copy of each container where one
    was found); ``value`` itself at once while no lifted string is alive anywhere (the
    result stage asks for every result of a server with a size limit or a cache)."""
    return _decoded(value) if _LIVE else value


def _decoded(value: Any) -> Any:
    if isinstance(value, Lifted):
        return value.value()
    if isinstance(value, dict):
        copy: dict[Any, Any] | None = None
        for key, item in value.items():
            if isinstance(item, dict | list | Lifted) and (new := _decoded(item)) is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = new
        return value if copy is None else copy
    if isinstance(value, list):
        listed: list[Any] | None = None
        for index, item in enumerate(value):
            if isinstance(item, dict | list | Lifted) and (new := _decoded(item)) is not item:
                if listed is None:
                    listed = list(value)
                listed[index] = new
        return value if listed is None else listed
    return value


def text_of(value: Any) -> Any:
    """A string value as its text (a lifted one decoded); anything else as it is."""
    return value.value() if isinstance(value, Lifted) else value


def _literals(data: bytes) -> tuple[list[tuple[int, int]], bytes]:
    """``(start, end)`` of the long ``"text"``/``"data"``/``"blob"`` values in ``data``,
    quotes included, found by walking its string literals from the start (a quote
    outside a literal always opens one); and ``data``, or its ``_blanked`` copy once
    many escaped quotes were met (JSON as text: not a Python step per quote)."""
    cuts: list[tuple[int, int]] = []
    blank = data
    hops = 0
    key_start = key_end = -1
    position = 0
    for _ in range(_MAX_STEPS):
        start = blank.find(b'"', position)
        if start < 0:
            break
        end = blank.find(b'"', start + 1)
        while end > 0 and blank[end - 1] == 0x5C and _escaped(blank, end):
            hops += 1
            if hops == _MAX_HOPS:
                blank = _blanked(data)
            end = blank.find(b'"', end + 1)
        if end < 0:
            return [], data  # unterminated: json.loads says what is wrong
        end += 1
        if end - start >= LITERAL_MIN and blank[key_start:key_end] in _KEYS \
                and blank[key_end:start].strip() == b":":
            cuts.append((start, end))
        key_start, key_end, position = start, end, end
    return cuts, blank


def _blanked(data: bytes) -> bytes:
    """``data`` with each escaped backslash and escaped quote made two underscores: the
    same offsets, and every quote left opens or closes a literal (backslashes pair from
    the left of each run, as JSON reads them)."""
    return data.replace(b"\\\\", b"__").replace(b'\\"', b"__")


def _escaped(data: bytes, quote: int) -> bool:
    """Whether the quote at ``quote`` follows an odd run of backslashes."""
    run = 0
    while data[quote - 1 - run] == 0x5C:
        run += 1
    return run % 2 == 1


def _utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 (``json.loads`` also lets encoded surrogates through,
    which a literal spliced as it is would hand the host as they are)."""
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _invalid_escape(data: bytes, start: int, end: int) -> bool:
    """Whether the literal at ``data[start:end]`` holds an escape JSON does not define:
    with escaped backslashes blanked (``_blanked``), each backslash left starts an
    escape, so counting the ones JSON defines tells."""
    if data.find(b"\\\\", start, end) >= 0:
        # Blanked, not removed: "\\u", an escaped backslash and four hex digits is
        # no \u escape.
        data = data[start:end].replace(b"\\\\", b"__")
        start, end = 0, len(data)
    left = data.count(b"\\", start, end)
    for escape in _ESCAPES:
        if not left:
            return False
        found = data.count(escape, start, end)
        if found and escape == b"\\u" and _BAD_U.search(data, start, end) is not None:
            return True
        left -= found
    return left != 0


def _adopt(message: Any, literals: dict[str, memoryview]) -> Any:
    """``message`` with each token string replaced by its registered ``Lifted``."""
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            raw = literals.get(value)
            if raw is None:
                return value
            lifted = Lifted(value)
            lifted.raw = raw
            _LIVE[value] = lifted
            return lifted
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(item, int | float | bool) and item is not None:
                    value[key] = walk(item)
        elif isinstance(value, list):
            value[:] = [walk(item) for item in value]
        return value

    return walk(message)
