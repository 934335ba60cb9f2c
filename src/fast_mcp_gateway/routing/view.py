"""One generation of the merged catalog (``CatalogView``), the URI key form, and what
the manager's catalog build does with a generation once it is made (``index_hidden``,
``changed_kinds``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import mcp_types as types
from pydantic import AnyUrl, BaseModel

from fast_mcp_gateway.routing.curation import Curated, Hidden
from fast_mcp_gateway.routing.naming import Origin, Rename, namespace_uri, natural_name
from fast_mcp_gateway.upstream.model import Catalog


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

    def offers(self, kind: str, name: str) -> bool:
        """Whether a ``kind`` (tool, prompt, resource) is exposed as ``name`` (a resource
        URI in any form that normalizes alike: hosts read the form the list shows)."""
        if kind in ("tool", "prompt"):
            return name in (self.tools if kind == "tool" else self.prompts)
        return name in self.resources or normalize_uri(name) in self.resources

    @cached_property
    def _by_original(self) -> dict[str, list[str]]:
        """An upstream's own resource URI, as written and normalized -> the exposed URIs
        of the resources it is the URI of, in list order (made on the first lookup: a
        generation's resources do not change)."""
        index: dict[str, list[str]] = {}
        for exposed, (origin, _) in self.resources.items():
            for form in dict.fromkeys((origin.original, normalize_uri(origin.original))):
                index.setdefault(form, []).append(exposed)
        return index

    def resources_at(self, original: str) -> list[str]:
        """The exposed URIs of the resources whose upstream URI is ``original`` (as their
        server wrote it, or normalized), in list order."""
        return self._by_original.get(original, [])

    def templated_uri(self, server: str, uri: str, namespace: str) -> str:
        """How hosts name ``server``'s resource ``uri`` that no list names: as the
        template it comes from is exposed, when that one was renamed on a collision
        (``urn:item/k`` of b's ``urn:item/{key}``, exposed as ``urn:b/item/{key}``, is
        ``urn:b/item/k``: ``urn:item/k`` is the other server's); else ``namespace_uri``."""
        from fastmcp.resources.template import forward_uri, match_uri_template

        for exposed, (origin, _) in self.templates.items():
            if origin.server == server and exposed != namespace_uri(origin.original, namespace):
                params = match_uri_template(uri, origin.original)
                if params is not None:
                    return forward_uri(exposed, params, uri)
        return namespace_uri(uri, namespace)

    def hidden_as(self, kind: str, name: str) -> tuple[Hidden, Any] | None:
        """The hidden component a host names ``name`` (kind: tool, prompt, resource,
        resource_template), with its upstream item; None if nothing hidden is called so."""
        return self.hidden.get((kind, name))

    def refusal(self, kind: str, server: str, original: str) -> str | None:
        """Why a call of ``original`` on ``server`` is refused by curation, if it is."""
        hidden = self.hidden_originals.get((kind, server, original))
        return hidden.message if hidden is not None else None


def index_hidden(view: CatalogView, servers: Iterable[tuple[str, str, Catalog]],
                 sep: str) -> None:
    """Index ``view``'s hidden components (of the exposed ``servers``: name, namespace,
    catalog) by the names they would have had, so a call by such a name is refused
    clearly; a name another component took stays that component's."""
    taken: dict[str, Mapping[str, Any]] = {
        "tool": view.tools, "prompt": view.prompts, "resource": view.resources,
        "resource_template": view.templates}
    for server, ns, catalog in servers:
        items: dict[str, dict[str, Any]] = {
            "tool": {t.name: t for t in catalog.tools},
            "prompt": {p.name: p for p in catalog.prompts},
            "resource": {str(r.uri): r for r in catalog.resources},
            "resource_template": {t.uri_template: t for t in catalog.templates},
        }
        for hidden in view.curation[server].hidden:
            item = items[hidden.kind].get(hidden.original)
            view.hidden_originals[(hidden.kind, server, hidden.original)] = hidden
            names = [f"{server}:{hidden.original}"]
            if hidden.kind in ("tool", "prompt"):
                names.append(natural_name(ns, hidden.original, sep))
            else:
                uri = namespace_uri(hidden.original, ns)
                names.append(normalize_uri(uri) if hidden.kind == "resource" else uri)
            for name in names:
                if name not in taken[hidden.kind]:
                    view.hidden.setdefault((hidden.kind, name), (hidden, item))


def changed_kinds(old: CatalogView, new: CatalogView) -> set[str]:
    """The kinds ("tools", "prompts", "resources") whose lists differ between two
    generations (what ``list_changed`` announces)."""
    kinds: set[str] = set()
    if _fingerprint(old.tools) != _fingerprint(new.tools):
        kinds.add("tools")
    if _fingerprint(old.prompts) != _fingerprint(new.prompts):
        kinds.add("prompts")
    if (_fingerprint(old.resources) != _fingerprint(new.resources)
            or _fingerprint(old.templates) != _fingerprint(new.templates)):
        kinds.add("resources")
    return kinds


def _fingerprint(items: Mapping[str, tuple[Origin, BaseModel]]) -> dict[str, BaseModel]:
    # The models compared as they are (field by field): encoding each as JSON cost more,
    # and raised out of the rebuild (stopping the gateway) on a lone surrogate in a string
    # of an in-process server's component.
    return {name: item for name, (_, item) in items.items()}
