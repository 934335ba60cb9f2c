"""Pinning findings, reported at most once per server per window.

A server that changes its tool list in a loop with new names made one WARNING line and
one audit row per name (162 rows in 8 s).  ``FindingReports`` groups the findings the
catalog builds make (``PinBook``'s events) by server: a server not reported within the
last ``window`` seconds is reported at once; later findings of it wait until the window
has passed and are then reported together -- one ``Report``: one log line, one audit
row, naming the count and the first few.  Pure: the pin worker (``admin/pin_worker``)
feeds it, asks what is ``due`` and logs and audits that; time is its ``clock``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from fast_mcp_gateway.routing.curation import KIND_LABEL, Kind


class Finding(Protocol):
    """What a report reads of ``pinning.Finding`` (not imported: pinning imports this)."""

    @property
    def server(self) -> str: ...
    @property
    def kind(self) -> Kind: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def held(self) -> bool: ...
    @property
    def markers(self) -> tuple[str, ...]: ...
    def summary(self) -> str: ...

logger = logging.getLogger("fast_mcp_gateway.routing.pinning")
REPORT_WINDOW = 5.0
"""Seconds: at most one log line and one audit row per server within this."""
_FIRST = 5     # names a summary line shows
_ARGUMENTS = 10  # names an audit row's arguments keep


@dataclass(frozen=True)
class Report:
    """One server's findings of one window."""

    server: str
    findings: tuple[Finding, ...]

    @property
    def action(self) -> str:
        """The audit action: ``pin_<state>`` when every finding has that state."""
        states = {f.state for f in self.findings}
        return f"pin_{states.pop()}" if len(states) == 1 else "pin_findings"

    def summary(self) -> str:
        if len(self.findings) == 1:
            return self.findings[0].summary()
        groups: dict[tuple[str, Kind], list[str]] = {}
        for f in self.findings:
            groups.setdefault((f.state, f.kind), []).append(f.name)
        parts = []
        for (state, kind), names in groups.items():
            label = KIND_LABEL[kind] + ("s" if len(names) > 1 else "")
            shown = ", ".join(names[:_FIRST])
            more = f" and {len(names) - _FIRST} more" if len(names) > _FIRST else ""
            parts.append(f"{len(names)} {state} {label} ({shown}{more})")
        held = sum(f.held for f in self.findings)
        return (f"{len(self.findings)} findings of server '{self.server}': "
                f"{', '.join(parts)}; gateway_pin_status lists them"
                + (f" ({held} held until approved)" if held else ""))

    def arguments(self) -> dict[str, Any]:
        """The audit row's arguments: the finding's own, or the count and first names."""
        if len(self.findings) == 1:
            f = self.findings[0]
            return {"kind": f.kind, "name": f.name, "held": f.held, "markers": list(f.markers)}
        return {"count": len(self.findings),
                "names": [f"{f.kind}:{f.name}" for f in self.findings[:_ARGUMENTS]],
                "states": dict(Counter(f.state for f in self.findings)),
                "held": sum(f.held for f in self.findings),
                "markers": sorted({m for f in self.findings for m in f.markers})[:_ARGUMENTS]}

    def log(self) -> None:
        held = len(self.findings) == 1 and self.findings[0].held
        logger.warning("pinning: %s%s", self.summary(), " (held until approved)" if held else "")


class FindingReports:
    """Findings waiting to be reported, per server (see the module docstring)."""

    window = REPORT_WINDOW

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.held: dict[str, list[Finding]] = {}
        self._last: dict[str, float] = {}   # server -> when it was last reported
        self.reported = 0   # findings reported so far

    def add(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            self.held.setdefault(f.server, []).append(f)

    def due(self) -> list[Report]:
        """The reports to make now (each server's held findings, once its window
        passed); the rest stay held."""
        now = self.clock()
        out: list[Report] = []
        for server in list(self.held):
            last = self._last.get(server)
            if last is None or now - last >= self.window:
                out.append(Report(server, tuple(self.held.pop(server))))
                self._last[server] = now
                self.reported += len(out[-1].findings)
        return out

    def next_due(self) -> float | None:
        """Seconds until the next held report is due (None: nothing held)."""
        if not self.held:
            return None
        now = self.clock()
        return max(0.0, min(self._last.get(s, now) + self.window - now for s in self.held))
