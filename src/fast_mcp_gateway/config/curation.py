"""Curation settings of one server (``tools:``, ``resources:``, ``prompts:``) and the
gateway's exposure settings (``gateway.exposure``, ``gateway.search``).

Pure models, validated with the rest of ``servers.yaml`` (and every runtime
registration, which goes through the same ``ServerConfig``).  Globs are
``fnmatch`` patterns (``*``, ``?``, ``[...]``), case-sensitive, on the upstream's
own names and URIs.  What they do to a catalog is ``routing/curation.py``.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

# What a host accepts in a tool or prompt name (the same rule exposed names follow); a
# profile name is held to it too (it is part of a URL and a command-line flag).
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Exposure = Literal["all", "search", "auto"]
PinningMode = Literal["off", "warn", "enforce"]
Oversize = Literal["error", "truncate"]
Glob = Annotated[str, Field(min_length=1, max_length=1024)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Filter(_Strict):
    """``include`` (default: everything) then ``exclude`` globs on original names/URIs."""

    include: tuple[Glob, ...] | None = Field(
        default=None, description="globs on original names; only matches are exposed")
    exclude: tuple[Glob, ...] = Field(
        default=(), description="globs on original names; matches are hidden")


def _check_renames(rename: dict[str, str]) -> dict[str, str]:
    for original, new in rename.items():
        if not _NAME.match(new):
            raise ValueError(
                f"rename target {new!r} (for {original!r}) is not a valid name: use 1-64 "
                "letters, digits, '_' or '-'")
    targets: dict[str, str] = {}
    for original, new in rename.items():
        if new in targets:
            raise ValueError(
                f"rename collision: {targets[new]!r} and {original!r} are both renamed to "
                f"{new!r}; give them different names")
        targets[new] = original
    return rename


# Each check is a validator of its type: a field declared with it is checked the same
# way (and with the same words) wherever it is used.
Renames = Annotated[dict[str, str], AfterValidator(_check_renames)]


class Override(_Strict):
    """What the host sees of one tool instead of the upstream's own; never sent upstream."""

    description: str | None = Field(default=None, max_length=16_384)
    title: str | None = Field(default=None, max_length=1024)
    annotations: dict[str, Any] | None = Field(
        default=None, description="merged over the upstream's annotations, e.g. "
                                  "{destructiveHint: false}")

    @field_validator("annotations")
    @classmethod
    def _known_annotations(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        known = {"title": str, "readOnlyHint": bool, "destructiveHint": bool,
                 "idempotentHint": bool, "openWorldHint": bool}
        for key, item in value.items():
            if key not in known:
                raise ValueError(f"unknown annotation {key!r}; known: {', '.join(known)}")
            if not isinstance(item, known[key]):
                kind = "true or false" if known[key] is bool else "text"
                raise ValueError(f"annotation {key!r} must be {kind}")
        return value


class CacheRule(_Strict):
    """``cache:`` of a server (every read-only/idempotent tool) or of one tool."""

    ttl: float = Field(gt=0, le=86_400,
                       description="seconds a result is served again for the same arguments")
    max_entries: StrictInt = Field(default=256, ge=1, le=100_000,
                                   description="results kept (least recently used go first)")


class ToolCuration(Filter):
    """``tools:`` of a server."""

    rename: Renames = Field(
        default_factory=dict, description="original name -> new name (before the namespace)")
    override: dict[str, Override] = Field(
        default_factory=dict, description="original name -> {description, title, annotations}")
    cache: dict[str, CacheRule] = Field(
        default_factory=dict, description="original name -> {ttl}: results served again for "
                                          "the same arguments (read-only/idempotent tools only)")


class PromptCuration(Filter):
    """``prompts:`` of a server."""

    rename: Renames = Field(
        default_factory=dict, description="original name -> new name (before the namespace)")


class ResourceCuration(Filter):
    """``resources:`` of a server: globs on original URIs, and on templates' uriTemplate."""


class SearchOptions(_Strict):
    """``gateway.search``: when ``auto`` switches to search, and what stays listed."""

    auto_threshold_tools: StrictInt = Field(
        default=80, ge=0, le=1_000_000,
        description="in exposure: auto, more exposed tools than this means search mode")
    pinned: tuple[str, ...] = Field(
        default=(), description="exposed tool names listed as themselves in search mode")

    @model_validator(mode="after")
    def _unique(self) -> SearchOptions:
        seen: set[str] = set()
        for name in self.pinned:
            if name in seen:
                raise ValueError(f"pinned lists {name!r} twice")
            seen.add(name)
        return self


# -- pinning, result limits, caching, profiles ----------------------------------------



class Profile(_Strict):
    """``gateway.profiles.<name>``: a named subset of the catalog (a virtual server),
    served at ``/mcp/p/<name>`` in HTTP mode and chosen with ``serve --profile``."""

    description: str | None = Field(default=None, max_length=1024)
    servers: tuple[str, ...] | None = Field(
        default=None, description="the servers it shows (default: all)")
    tools: Filter = Field(default_factory=Filter,
                          description="include/exclude globs on exposed tool names")
    exposure: Exposure | None = Field(
        default=None, description="all | search | auto (default: the gateway's)")

    def shows_tool(self, exposed: str, server: str) -> bool:
        """Whether it shows tool ``exposed`` of ``server``."""
        if self.servers is not None and server not in self.servers:
            return False
        rules = self.tools
        if rules.include is not None and not any(
                fnmatch.fnmatchcase(exposed, g) for g in rules.include):
            return False
        return not any(fnmatch.fnmatchcase(exposed, g) for g in rules.exclude)


def _check_profile_names(profiles: dict[str, Profile]) -> dict[str, Profile]:
    for name in profiles:
        if not _NAME.match(name):
            raise ValueError(f"profile name {name!r} must be 1-64 letters, digits, '_' or '-' "
                             "(it is part of a URL and a command-line flag)")
    return profiles


Profiles = Annotated[dict[str, Profile], AfterValidator(_check_profile_names)]
