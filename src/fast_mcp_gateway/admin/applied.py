"""What the last reload that changed something did, for the reloads after it.

A user who edits ``servers.yaml`` and calls ``gateway_reload_config`` (or REST's, or
SIGHUP) often comes after the file watcher, which applied the edit within a second:
their reload found nothing to do and answered "no change", as if the edit had not been
taken.  ``AppliedReloads`` remembers the last reload that changed something (who, when,
what, and the file as it read it: its (mtime, size) stamp); a later reload that changes
nothing of a file read the same says so (``ChangeReport.already_applied``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from fast_mcp_gateway.admin.context import CONFIG_FILE, Actor
from fast_mcp_gateway.admin.report import AppliedBefore, ChangeReport
from fast_mcp_gateway.config.schema import GatewayOptions


def _by(actor: Actor) -> str:
    return "the config file watcher" if actor == CONFIG_FILE else actor.id


def _options_changed(old: GatewayOptions, new: GatewayOptions) -> list[str]:
    """The ``gateway.*`` options ``new`` sets otherwise (names only: never a value)."""
    return [f"gateway.{name}" for name in type(old).model_fields
            if getattr(old, name) != getattr(new, name)]


class AppliedReloads:
    """The last reload that changed something (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._last: tuple[AppliedBefore, tuple[int, int] | None] | None = None

    def after(self, actor: Actor, report: ChangeReport, old: GatewayOptions,
              new: GatewayOptions, stamp: tuple[int, int] | None) -> ChangeReport:
        """``report`` of a reload by ``actor`` from ``old`` to ``new`` options, of the
        file as ``stamp``: remembered if it changed something, else told what the last
        one that did changed, if it read the file as it is now."""
        options = _options_changed(old, new)
        changes = [f"{what} {', '.join(names)}" for what, names in (
            ("added", report.added), ("removed", report.removed),
            ("restarted", report.restarted), ("updated in place", report.updated),
            ("changed", options)) if names]
        if changes:
            at = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")
            self._last = AppliedBefore(by=_by(actor), at=at, changes=changes), stamp
        elif self._last is not None and stamp is not None and self._last[1] == stamp:
            report.already_applied = self._last[0]
        return report
