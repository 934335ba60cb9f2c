"""Which event loop ``serve`` runs on: uvloop when it is installed, else asyncio's own.

A stdio gateway's own work per express-lane call is mostly event-loop turns (about
eight per call: reading the host's line, writing to the upstream's pipe, reading its
answer, writing the host's), so the loop's cost per turn is the largest part of the
gateway's CPU per call; uvloop's turns are cheaper.  Only ``serve`` chooses: the other
commands run briefly, and library mode runs on whatever loop its caller started.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass, field
from typing import Any

from fast_mcp_gateway.errors import ConfigError

CHOICES = ("auto", "asyncio", "uvloop")
SOURCE = "event loop (--event-loop / MCP_GATEWAY_EVENT_LOOP)"
HOW_TO_INSTALL = ("install it with 'pip install uvloop' (Linux and macOS only), or choose "
                  "--event-loop asyncio / MCP_GATEWAY_EVENT_LOOP=asyncio")


@dataclass(frozen=True)
class LoopChoice:
    """The loop ``serve`` runs on: its name for the log, and ``anyio.run``'s options."""

    name: str
    backend_options: dict[str, Any] = field(default_factory=dict)


def _uvloop_version() -> str | None:
    """uvloop's version when it can run here, else ``None``."""
    if sys.platform == "win32":  # no uvloop there
        return None
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return None
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def choose_loop(choice: str) -> LoopChoice:
    """``auto``: uvloop when importable, else asyncio; ``asyncio``; ``uvloop`` (a
    ``ConfigError`` saying how to get it when it is not installed)."""
    if choice not in CHOICES:
        raise ConfigError.single(SOURCE, None, None, f"{choice!r} is not one of "
                                 f"{', '.join(CHOICES)}")
    if choice == "asyncio":
        return LoopChoice("asyncio")
    found = _uvloop_version()
    if found is None:
        if choice == "uvloop":
            raise ConfigError.single(SOURCE, None, None, "uvloop was asked for but is not "
                                     f"installed: {HOW_TO_INSTALL}")
        return LoopChoice("asyncio")
    # anyio's own option (every anyio 4 has it); uvloop is known importable by now, and
    # this is not Windows (where the option means winloop).
    return LoopChoice(f"uvloop {found}", {"use_uvloop": True})
