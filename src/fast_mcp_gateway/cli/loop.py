"""Which event loop ``serve`` runs on: uvloop when it is installed, else asyncio's own.

A stdio gateway's own work per express-lane call is mostly event-loop turns (about
eight per call: reading the host's line, writing to the upstream's pipe, reading its
answer, writing the host's), so the loop's cost per turn is the largest part of the
gateway's CPU per call; uvloop's turns are cheaper.  Only ``serve`` chooses: the other
commands run briefly, and library mode runs on whatever loop its caller started.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys
from collections.abc import Callable
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


def _uvloop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop], str] | None:
    if sys.platform == "win32":  # no uvloop there (anyio's use_uvloop means winloop)
        return None
    try:
        import uvloop
    except ImportError:
        return None
    try:
        version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return uvloop.new_event_loop, version


def choose_loop(choice: str) -> LoopChoice:
    """``auto``: uvloop when importable, else asyncio; ``asyncio``; ``uvloop`` (a
    ``ConfigError`` saying how to get it when it is not installed)."""
    if choice not in CHOICES:
        raise ConfigError.single(SOURCE, None, None, f"{choice!r} is not one of "
                                 f"{', '.join(CHOICES)}")
    if choice == "asyncio":
        return LoopChoice("asyncio")
    found = _uvloop_factory()
    if found is None:
        if choice == "uvloop":
            raise ConfigError.single(SOURCE, None, None, "uvloop was asked for but is not "
                                     f"installed: {HOW_TO_INSTALL}")
        return LoopChoice("asyncio")
    factory, version = found
    # loop_factory rather than anyio's use_uvloop: the import (and its failure) is ours.
    return LoopChoice(f"uvloop {version}", {"loop_factory": factory})
