"""``ChangeReport``: what a reload or a registration changed.

Its own module because the control plane returns it on every reload (the gateway
imports it at start) while the other ``models`` load with the admin operations, on
their first use (``listed.py``); ``models`` re-exports it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


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
    error: str | None = None
