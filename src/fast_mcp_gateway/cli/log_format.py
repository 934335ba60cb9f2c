"""``--log-format json`` (``MCP_GATEWAY_LOG_FORMAT=json``): one JSON object per line on
stderr, for a log shipper (journald, Loki, Elasticsearch) to parse without a pattern.

Every field the text line has, and what it folds into its text: ``time`` (UTC, ISO 8601,
milliseconds), ``level``, ``logger``, ``message``, ``pid``, ``instance`` (the gateway's
``--instance-id``: several gateways shipping to one place), and ``exception`` /
``stack`` when the record has them.  The handler's ``SecretLogFilter`` runs before this
formats (a handler filters, then formats), so the message and the traceback are the
masked ones; a traceback formatted here is formatted by the filter first.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from fast_mcp_gateway.config.settings import DEFAULT_REDACT_KEYS
from fast_mcp_gateway.telemetry.log_filter import OneLineErrors, install_log_filter


class JsonLines(logging.Formatter):
    """A record as one line of JSON (see the module docstring)."""

    def __init__(self, instance: str | None = None) -> None:
        super().__init__()
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name,
            "message": record.getMessage(), "pid": record.process}
        if self.instance is not None:
            entry["instance"] = self.instance
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def say(text: str, *, as_json: bool, level: str = "INFO", instance: str | None = None) -> str:
    """A line the CLI writes to stderr itself (its banner, a refusal to start), in the
    log's format: a shipper reading JSON gets JSON for these too."""
    if not as_json:
        return f"mcp-gateway: {text}"
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    entry = {"time": at, "level": level, "logger": "mcp-gateway", "message": text,
             "pid": os.getpid()}
    if instance is not None:
        entry["instance"] = instance
    return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, form: str = "text", instance: str | None = None,
                      keys: Iterable[str] = DEFAULT_REDACT_KEYS) -> None:
    """The CLI's logging: one handler on stderr (text or JSON lines), every record
    masked (under ``keys``, the records' ``redact_keys``), the libraries' per-request
    chatter kept out unless debugging."""
    logging.basicConfig(
        stream=sys.stderr, level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if form == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLines(instance))
    # Every record (httpx's: request URLs) passes the masking, under the records' keys.
    install_log_filter(keys=keys)
    # aiosqlite logs every statement with its parameters at DEBUG: half of a debug log,
    # and each call record's arguments and error (the store's business) in the log.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # FastMCP's per-request chatter is traffic, not state; keep it out unless debugging.
    if level != "DEBUG":
        logging.getLogger("fastmcp").setLevel(logging.WARNING)
        logging.getLogger("mcp").setLevel(logging.WARNING)
        # The SDK's HTTP client logs every request at INFO ("HTTP Request: POST ..."):
        # per_client and ${caller.*} sessions made a line per call.
        for name in ("httpx2", "httpx", "httpcore2", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("asyncpg.pool").addFilter(OneLineErrors())  # the store says why
