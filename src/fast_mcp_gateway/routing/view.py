"""One generation of the merged catalog (``CatalogView``) and the URI key form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from pydantic import AnyUrl

from fast_mcp_gateway.routing.curation import Curated, Hidden
from fast_mcp_gateway.routing.naming import Origin, Rename


def normalize_uri(uri: str) -> str:
    """The form FastMCP hands back for a URI (pydantic ``AnyUrl``), for table keys."""
    try:
        return str(AnyUrl(uri))
    except ValueError:
        return uri


@dataclass
class CatalogView:
    """One generation of the merged catalog: exposed name -> (origin, upstream item)."""

    tools: dict[str, tuple[Origin, types.Tool]] = field(default_factory=dict)
    prompts: dict[str, tuple[Origin, types.Prompt]] = field(default_factory=dict)
    resources: dict[str, tuple[Origin, types.Resource]] = field(default_factory=dict)
    templates: dict[str, tuple[Origin, types.ResourceTemplate]] = field(default_factory=dict)
    renames: list[Rename] = field(default_factory=list)
    generation: int = 0
    # Curation: what each server's rules did, and hidden components by the name (or
    # URI / template) they would have had, so a call by that name is refused clearly.
    curation: dict[str, Curated] = field(default_factory=dict)
    hidden: dict[tuple[str, str], tuple[Hidden, Any]] = field(default_factory=dict)
    hidden_originals: dict[tuple[str, str, str], Hidden] = field(default_factory=dict)
    # The upstream's own annotations of tools whose host-facing ones are overridden.
    upstream_annotations: dict[str, types.ToolAnnotations | None] = field(
        default_factory=dict)

    def hidden_as(self, kind: str, name: str) -> tuple[Hidden, Any] | None:
        """The hidden component a host names ``name`` (kind: tool, prompt, resource,
        resource_template), with its upstream item; None if nothing hidden is called so."""
        return self.hidden.get((kind, name))

    def refusal(self, kind: str, server: str, original: str) -> str | None:
        """Why a call of ``original`` on ``server`` is refused by curation, if it is."""
        hidden = self.hidden_originals.get((kind, server, original))
        return hidden.message if hidden is not None else None
