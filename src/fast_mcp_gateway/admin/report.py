"""``ChangeReport``: what a reload or a registration changed.

Its own module because the control plane returns it on every reload (the gateway
imports it at start) while the other ``models`` load with the admin operations, on
their first use (``listed.py``); ``models`` re-exports it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class AppliedBefore(BaseModel):
    by: str = Field(description="who applied it: 'the config file watcher', or an actor")
    at: str = Field(description="when (ISO 8601, UTC)")
    changes: list[str] = Field(description="what that reload changed, by name")


class ChangeReport(BaseModel):
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    restarted: list[str] = Field(default_factory=list)
    updated: list[str] = Field(
        default_factory=list,
        description="servers whose changed settings (description, tools/resources/prompts "
        "curation, pinning, balancing, retries, rate limits, fallback, caching, result "
        "size) took effect without restarting them")
    unchanged: list[str] = Field(default_factory=list)
    restart_needed: list[str] = Field(
        default_factory=list,
        description="gateway options the file changes that take effect only when the "
        "gateway is restarted (until then it runs with the values it started with)")
    connect_failed: dict[str, str] = Field(
        default_factory=dict,
        description="added or restarted servers whose first connect attempt failed: "
        "server -> its state and why (the gateway keeps retrying it)")
    invalid: dict[str, str] = Field(
        default_factory=dict,
        description="servers whose entries in the file are invalid: server -> the error "
        "(file, field, fix); such a server keeps running its last valid entry, or, new, is "
        "not started (state 'invalid') -- every other change applied")
    pins_kept: dict[str, int] = Field(
        default_factory=dict,
        description="removed servers whose approved definitions are kept: server -> how "
        "many (added again, it is checked against them, not trusted anew); "
        "gateway_forget_pins / DELETE /api/v1/pins/{name} / 'mcp-gateway pins forget' "
        "drops them")
    already_applied: AppliedBefore | None = Field(
        default=None,
        description="this reload changed nothing because the file, as it reads now, was "
        "applied already (by the config file watcher, say): who, when and what changed")
    error: str | None = None

    def summary(self) -> str:
        """The report as one log line an operator reads: what changed, by name; the
        servers left as they were only counted (a team's file lists dozens)."""
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("added", self.added), ("removed", self.removed), ("restarted", self.restarted),
            ("updated in place", self.updated)) if names]
        if self.connect_failed:
            parts.append("first connect failed: " + "; ".join(
                f"{name}: {why}" for name, why in self.connect_failed.items()))
        if self.invalid:
            parts.append(f"invalid entries (logged above; fix and save): "
                         f"{', '.join(self.invalid)}")
        if self.restart_needed:
            parts.append(f"needing a gateway restart: {', '.join(self.restart_needed)}")
        # An invalid entry's server runs on as it was: said as invalid, not counted twice.
        same = [name for name in self.unchanged if name not in self.invalid]
        unchanged = f"{len(same)} server(s) unchanged"
        if parts:
            return "; ".join([*parts, unchanged])
        if (before := self.already_applied) is not None:
            return (f"no change now: the file as it reads now was applied already, by "
                    f"{before.by} at {before.at} ({'; '.join(before.changes)}); {unchanged}")
        return f"no change ({unchanged})"

    @property
    def troubled(self) -> bool:
        """Whether the reload left something for the operator to fix."""
        return bool(self.connect_failed or self.invalid or self.restart_needed)
