"""Call arguments as the gateway shows, stores and logs them: masked.

``redact_arguments`` is what goes into a record (and the audit): values under
credential-like keys, and any known secret value or well-known token format inside a
string -- or inside a key: a token a host sends as an argument's *name* (``{"mgw_...":
1}``, a JWT as a key) -- become ``***``; the arguments sent upstream are never changed.
``mask_argument_values`` masks a call's error text with what its arguments hold
(upstreams echo their input); ``credential_values`` and ``names_credentials`` find
credentials in arguments and in a tool's schema.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS
from fast_mcp_gateway.telemetry.redaction import (
    MASK,
    MIN_SECRET_LENGTH,
    mask_secrets,
    mask_text,
    written_forms,
)

# "auth" in a key (auth_token, oauth, authorization), but not in "author" or "authority":
# a book's author is no credential, and masking it hid it in records and logs.
_AUTH = r"auth(?!or(?!iz))"


@functools.lru_cache(maxsize=8)
def credential_key(keys: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a (lower-cased) key contains one of ``keys``: one compiled alternation
    (a generator over the keys per argument cost ~1 us a key); results are remembered
    per key name (argument names repeat call after call; at most 4,096 kept, and only
    names of up to 128 characters: the caller chooses them, and a long one kept would
    hold its memory from call to call)."""
    pattern = re.compile("|".join(_AUTH if k.lower() == "auth" else re.escape(k.lower())
                                  for k in keys)) if keys else None
    seen: dict[str, bool] = {}

    def matches(key: str) -> bool:
        found = seen.get(key)
        if found is None:
            found = pattern is not None and pattern.search(key.lower()) is not None
            if len(key) <= 128:
                if len(seen) >= 4096:
                    seen.clear()
                seen[key] = found
        return found

    return matches


def redact_arguments(arguments: Any, keys: Iterable[str] = DEFAULT_REDACT_KEYS,
                     secret_values: frozenset[str] = frozenset()) -> Any:
    """A copy of ``arguments`` with the values under credential-like keys masked, and
    known secrets and well-known token formats masked in every string, keys included
    (a token sent as an argument's name: ``{"mgw_...": 1}`` was recorded whole)."""
    credential = credential_key(keys if isinstance(keys, tuple) else tuple(keys))

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if not _holds_secret_key(value, secret_values):   # the common case, at once
                return {k: MASK if (key := str(k)) and credential(key) else walk(v)
                        for k, v in value.items()}
            out: dict[Any, Any] = {}
            apart: dict[str, int] = {}
            for k, v in value.items():
                key = str(k)
                out[_shown_key(k, secret_values, value, out, apart)] = \
                    MASK if key and credential(key) else walk(v)
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return mask_text(value, secret_values)
        return value

    return walk(arguments)


def _holds_secret_key(value: dict[Any, Any], secret_values: frozenset[str]) -> bool:
    """Whether a key of ``value`` may be masked: its keys masked as one text (one
    ``mask_text`` per object, not per key: ~0.7 us each)."""
    names = "\0".join(k for k in value if isinstance(k, str) and len(k) >= MIN_SECRET_LENGTH)
    return bool(names) and mask_text(names, secret_values) != names


def _shown_key(key: Any, secret_values: frozenset[str], given: Any = (),
               taken: Any = (), apart: dict[str, int] | None = None) -> Any:
    """``key`` as a record shows it: masked (``mask_text``), told apart from a key
    already ``taken`` or ``given`` as written (the object's own keys: a literal
    ``mgw_***`` after a token's took its place and the record lost the token's entry)
    when masking made them alike (two tokens: ``mgw_*** (2)``).  ``apart`` remembers
    the last number each masked form was given: counting up from 1 for each key cost
    the square of their number (8,000 token keys, 432 kB of arguments: 5.3 s)."""
    if not isinstance(key, str) or len(key) < MIN_SECRET_LENGTH:
        return key
    shown = mask_text(key, secret_values)
    if shown is key or shown == key:
        return key
    kept, n = shown, 1 if apart is None else apart.get(shown, 1)
    if n > 1:
        shown = f"{kept} ({n})"
    while shown in taken or shown in given:
        n += 1
        shown = f"{kept} ({n})"
    if apart is not None:
        apart[kept] = n
    return shown


def secret_keys(arguments: Any, secret_values: frozenset[str] = frozenset()) -> set[str]:
    """The keys of ``arguments`` (at any depth) that are secrets themselves (a token
    as an argument's name), each as written, as ``repr`` and as JSON write it."""
    found: set[str] = set()

    def visit(key: Any, item: Any) -> bool:
        if isinstance(key, str) and _shown_key(key, secret_values) != key:
            found.update((key, repr(key)[1:-1], json.dumps(key)[1:-1]))
        return True

    _each_entry(arguments, visit)
    return found


def _each_entry(value: Any, visit: Callable[[Any, Any], bool]) -> None:
    """``visit(key, item)`` for each entry of every dict in ``value`` (lists walked
    through), at any depth; an entry's item is walked when ``visit`` says so."""
    if isinstance(value, dict):
        for key, item in value.items():
            if visit(key, item):
                _each_entry(item, visit)
    elif isinstance(value, list):
        for item in value:
            _each_entry(item, visit)


def mask_argument_values(text: str, arguments: Any,
                         keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> str:
    """``text`` with every value under one of ``arguments``' credential-like keys, and
    every key that is a secret itself (``secret_keys``), masked, as written, as Python's
    ``repr`` writes it and as JSON does (one shorter than ``WHOLE_WORD_BELOW`` only as a
    word of its own; a flag spelled as a string, ``_LITERALS``, not at all).

    For a call's error text, which ``redact_arguments`` never sees: upstreams echo their
    input in errors (pydantic's ``input_value={'password': '...'}``, a tool's own
    ``f"bad password {password}"``).  Called on the error path only.
    """
    found = credential_values(arguments, keys) | secret_keys(arguments)
    if not (found and text):
        return text
    # pydantic shortens a long input_value to its first and last characters around
    # "...": no whole value to find, so the clause goes, and the cut ends elsewhere.
    text = _INPUT_VALUE.sub("input_value=***, input_type=", text)
    pieces = _cut_ends(text, found)
    if pieces is None:
        return CUT_LEFT_OUT
    short = {v for v in found if len(v) < WHOLE_WORD_BELOW}
    text = mask_secrets(text, (found - short) | pieces)
    for value in sorted(short, key=len, reverse=True):
        if len(value) >= MIN_SECRET_LENGTH and value in text:
            text = re.sub(rf"(?<![^\W_]){re.escape(value)}(?![^\W_])", MASK, text)
    return text


def mask_echo(text: str, arguments: Any, keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> str:
    """An upstream's ``isError`` text as its host gets it: ``mask_text``, then the call's
    own credential-like argument values (``mask_argument_values`` under ``keys``: the
    gateway's ``redact_keys``, as its record masks them).  A tool that echoes its input
    (``f"bad options {options!r}"``) showed a password nested in an object to the host
    and, through it, to the model's transcript; one under a key the operator added
    (``ssn``) was masked in the record and echoed to the host whole (secrets26)."""
    return mask_argument_values(mask_text(text), arguments, keys)


def credential_values(arguments: Any, keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> set[str]:
    """The values under ``arguments``' credential-like keys (at any depth), each as
    written, as Python's ``repr`` writes it and as JSON does (``written_forms``): what
    an echo shows."""
    credential = credential_key(keys if isinstance(keys, tuple) else tuple(keys))
    found: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)
        elif isinstance(value, str) and value.lower() not in _LITERALS:
            found.update(written_forms(value))
        elif isinstance(value, int | float) and not isinstance(value, bool) \
                and len(str(value)) >= 6:  # not a count under "max_tokens" everywhere
            found.add(str(value))

    def visit(key: Any, item: Any) -> bool:
        if credential(str(key)):
            collect(item)
            return False
        return True

    _each_entry(arguments, visit)
    return found


def names_credentials(schema: Any, keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> bool:
    """Whether a JSON schema declares a property with a credential-like name anywhere
    (nested objects, array items, ``$defs``...)."""
    credential = credential_key(keys if isinstance(keys, tuple) else tuple(keys))

    def walk(node: Any, depth: int = 0) -> bool:
        if depth > 32:  # a schema is the upstream's: no recursion without end
            return False
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict) and any(credential(str(k)) for k in properties):
                return True
            return any(walk(v, depth + 1) for v in node.values())
        if isinstance(node, list):
            return any(walk(v, depth + 1) for v in node)
        return False

    return walk(schema)


WHOLE_WORD_BELOW = 6
"""A credential argument value shorter than this is masked in an error text only where
it stands as a word of its own: ``{"auth_method": "none"}`` made "nonexistent" read
"***xistent" in what the host was shown (review24); a longer one wherever it is."""

# A flag or an empty value spelled as a string ({"use_auth": "true"}) is no secret, as
# True is not: masked, it hid every "true" of the error text (review24).
_LITERALS = frozenset({"true", "false", "null", "none"})

_INPUT_VALUE = re.compile(r"input_value=.*?, input_type=")


CUT_WORK = 16_000_000
"""How much ``_cut_ends`` may do (~0.2 s): 64 for each "..." and 64 more for each value
tried at it (~1 us of Python each), and 1 for 16 characters scanned or compared (in
C).  The host chooses how many values and marks there are (400 token keys and a value
of 400 "..." echoed cost 1.25 s, 4,000 of each ~2 minutes, on the event loop); past it
the error text is left out (``CUT_LEFT_OUT``), never shown with a cut value unmasked."""

CUT_LEFT_OUT = ("(the error text is left out: it cuts short more of the call's secret "
                "values than the gateway masks in time)")


def _cut_ends(text: str, values: set[str]) -> set[str] | None:
    """The parts of ``values`` (16+ characters) that ``text`` shows cut short: a prefix
    of 8+ characters right before a "..." and a suffix right after one; None past
    ``CUT_WORK``.  Each is found from its value's first (last) 8 characters with
    ``str.find`` (``rfind``), the longest first: trying each length in turn cost the
    square of a value's length at each mark (a 2.4 kB password of "..."s: 0.47 s)."""
    pieces: set[str] = set()
    long = [v for v in values if len(v) >= 16]
    marks = text.count("...") + text.count("\u2026") if long else 0  # as finditer's
    spent, scan = 0, len(text) // 8
    if scan < 64 * marks:  # cheaper than trying a value at each mark
        # A value whose first and last 8 characters the text never shows has no cut
        # end in it: tried at every mark, ~200 kB of "..." and 3 such values cost 0.8 s.
        shown = []
        for value in long:
            spent += scan
            if spent > CUT_WORK:
                return None
            if value[:8] in text or value[-8:] in text:
                shown.append(value)
        long = shown
    for mark in re.finditer(r"\.\.\.|\u2026", text) if long else ():
        start, end = mark.start(), mark.end()
        spent += 64  # the mark itself: uncounted, it cost as much as a value tried
        for value in long:
            n, work = _head_cut(text, start, value)
            m, more = _tail_cut(text, end, value)
            spent += 64 + (work + more) // 16   # a character scanned in C: ~1 ns
            if spent > CUT_WORK:
                return None
            pieces.update(p for p in (value[:n] if n else "", value[-m:] if m else "") if p)
    return pieces


def _head_cut(text: str, start: int, value: str) -> tuple[int, int]:
    """(the longest n in [8, len(value)) with ``value[:n]`` right before ``start``, or 0;
    the characters looked at)."""
    head, lo = value[:8], max(0, start - len(value) + 1)
    work, at = start - lo, text.find(value[:8], lo, start)
    while at != -1:
        n = start - at
        work += n + start - at
        if text.startswith(value[:n], at):
            return n, work
        at = text.find(head, at + 1, start)
    return 0, work


def _tail_cut(text: str, end: int, value: str) -> tuple[int, int]:
    """(the longest n in [8, len(value)) with ``value[-n:]`` right after ``end``, or 0;
    the characters looked at)."""
    tail, hi = value[-8:], min(len(text), end + len(value) - 1)
    work, at = hi - end, text.rfind(tail, end, hi)
    while at != -1:
        n = at + 8 - end
        work += n + at - end
        if text.startswith(value[-n:], end):
            return n, work
        at = text.rfind(tail, end, at + 7)
    return 0, work
