"""The last line for log records: ``SecretLogFilter`` masks what a handler writes.

Texts are masked where they are made (``redaction.mask_text``); a log call's own
arguments are not, and libraries log structures as they are: FastMCP's DEBUG line
"Handler called: call_tool %s with %s" writes each call's arguments.  A logged
structure (dict, list or tuple, at any depth) has the values under the gateway's
``redact_keys`` masked, as a call record has (``arguments.credential_key``: the same
keys and the same match), and a command line's credential arguments; then the whole
message goes through ``mask_text``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS
from fast_mcp_gateway.telemetry.arguments import credential_key
from fast_mcp_gateway.telemetry.redaction import (
    MASK,
    credential_args,
    escape_controls,
    mask_secrets,
    mask_text,
)


class SecretLogFilter(logging.Filter):
    """Masks known secrets and URL credentials in every record a handler emits (its
    message, arguments and traceback), and escapes the control characters of its message
    (``escape_controls``: a tool name or an error an upstream chose reaches this log).
    ``keys``: the credential-like argument keys (the ``redact_keys`` setting).
    Install it on the *handler*: records below the level are never formatted, so quiet
    traffic costs nothing."""

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> None:
        super().__init__()
        self.keys = tuple(keys)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, dict | list | tuple) for a in args):
            record.args = tuple(masked_structure(a, self.keys) for a in args)
        elif isinstance(args, dict):
            record.args = masked_structure(args, self.keys)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format is logging's to report, not ours
            return True
        masked = escape_controls(mask_text(message))
        if masked is not message and masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def masked_structure(value: Any, keys: Iterable[str] = DEFAULT_REDACT_KEYS,
                     depth: int = 0) -> Any:
    """A log call's dict, list or tuple argument with the values under ``keys`` (matched
    as a call record matches them: ``credential_key``) and a command line's credential
    arguments masked, at any depth.  It masked under the config's ``CREDENTIAL_KEY``
    before, which is no call record's: ``key`` and ``session_id`` were masked in the
    log and shown in the record, a key the operator added (``ssn``) the other way
    round; and a tuple was not walked (secrets26)."""
    credential = credential_key(keys if isinstance(keys, tuple) else tuple(keys))
    return _masked(value, credential, depth)


def _masked(value: Any, credential: Callable[[str], bool], depth: int) -> Any:
    """``value`` itself when nothing in it is masked: a rebuilt one lost its type, and a
    log line read ``(3, 11, 7, 'final', 0)`` for ``sys.version_info`` (a named tuple),
    ``{'a': 2}`` for a ``Counter`` (review27)."""
    if depth > 64:  # the host chose the nesting
        return MASK
    if isinstance(value, dict):
        masked = {k: MASK if v not in (None, "") and credential(str(k))
                  else _masked(v, credential, depth + 1) for k, v in value.items()}
        return value if all(masked[k] is v for k, v in value.items()) else masked
    if isinstance(value, list | tuple):
        words = [v for v in value if isinstance(v, str)]
        found = credential_args(words) if words else []
        items = [mask_secrets(v, found) if isinstance(v, str) and found
                 else _masked(v, credential, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def install_log_filter(logger: logging.Logger | None = None,
                       keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> SecretLogFilter:
    """Add a ``SecretLogFilter`` masking under ``keys`` to every handler of ``logger``
    (default: the root); one already there masks under ``keys`` from now on."""
    target = logger or logging.getLogger()
    log_filter = SecretLogFilter(keys)
    for handler in target.handlers:
        present = [f for f in handler.filters if isinstance(f, SecretLogFilter)]
        for kept in present:
            kept.keys = log_filter.keys
        if not present:
            handler.addFilter(log_filter)
    return log_filter


class OneLineErrors(logging.Filter):
    """Folds a record's traceback into one line: ``message (ExceptionType: text)``.  For
    a library logger whose failures the gateway already reports in its own words (asyncpg's
    pool retries a lost database with a traceback each time, every 1 to 60 s)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True
