"""Resource URIs the gateway relays, in the form hosts see (namespaced) and back.

An upstream's results name its resources by its own URIs: ``resource_link`` blocks
and embedded resources in tool results and prompt messages.  Relayed raw, a host's
``resources/read`` of such a link reaches no server.  ``LinkMap.expose`` writes each
into the exposed form the lists use (``routing.naming.namespace_uri``, the name the
catalog gave a listed resource, or its template's: ``CatalogView.templated_uri``),
and ``LinkMap.resolve`` takes an exposed URI that no list names back to its server
and upstream URI, so that reading a link works (through the same pipeline, curation
included, as any read).  A server that serves no resources has its URIs relayed as they
came: no read through the gateway could follow them, and the host may (``file://``).
"""

from __future__ import annotations

from typing import Any

import mcp_types as types

from fast_mcp_gateway.routing.manager import UpstreamManager

_LINK_TYPES = frozenset({"resource_link", "resource"})


def strip_namespace(uri: str, namespace: str) -> str | None:
    """The URI ``namespace_uri(original, namespace)`` made ``uri`` of, if it did."""
    if not namespace:
        return None
    prefix = namespace + "/"
    scheme, sep, rest = uri.partition("://")
    if sep:
        if not rest.startswith(prefix):
            return None
        rest = rest[len(prefix):]
        if scheme.lower() == "file" and not rest.startswith("/"):
            # ``file:///srv/a.txt`` is exposed as ``file://fs//srv/a.txt``, which URL
            # parsers (pydantic's, so FastMCP's lists) write ``file://fs/srv/a.txt``: its
            # path, not ``file://srv/a.txt`` (a file on a host named "srv").
            rest = "/" + rest
        return f"{scheme}://{rest}"
    scheme, sep, rest = uri.partition(":")
    if sep and scheme and rest.startswith(prefix):
        return f"{scheme}:{rest[len(prefix):]}"
    if uri.startswith(namespace + ":"):  # an original without a scheme
        return uri[len(namespace) + 1:]
    return None


class LinkMap:
    """Upstream URI <-> exposed URI for every server of ``manager`` (see module doc)."""

    def __init__(self, manager: UpstreamManager) -> None:
        self.manager = manager
        self._generation = -1
        self._listed: dict[tuple[str, str], str] = {}

    def _index(self) -> dict[tuple[str, str], str]:
        view = self.manager.view
        if view.generation != self._generation:
            self._listed = {(origin.server, origin.original): exposed
                            for exposed, (origin, _) in view.resources.items()}
            self._generation = view.generation
        return self._listed

    def expose(self, server: str, uri: str) -> str:
        """How hosts name ``server``'s resource ``uri``: as it came from a server that
        serves no resources (no ``resources`` capability), as server-filesystem's
        ``file:///...``: namespaced, it named nothing a read could reach."""
        listed = self._index().get((server, uri))
        if listed is not None:
            return listed
        service = self.manager.services.get(server)
        if service is None:
            return uri
        capabilities = service.capabilities
        if capabilities is not None and capabilities.resources is None:
            return uri
        return self.manager.view.templated_uri(server, uri,
                                               service.config.effective_namespace)

    def resolve(self, uri: str) -> tuple[str, str] | None:
        """(server, upstream URI) of an exposed ``uri`` (None: no server's namespace)."""
        for service in self.manager.services.values():
            original = strip_namespace(uri, service.config.effective_namespace)
            if original is not None:
                return service.name, original
        return None

    # -- rewriting results ------------------------------------------------------------

    def typed_blocks(self, server: str, blocks: list[Any]) -> None:
        """Expose the URIs of ``blocks`` (typed content, rewritten in place)."""
        for block in blocks:
            if isinstance(block, types.ResourceLink):
                block.uri = self.expose(server, block.uri)
            elif isinstance(block, types.EmbeddedResource):
                block.resource.uri = self.expose(server, block.resource.uri)

    def json_blocks(self, server: str, blocks: Any) -> None:
        """Expose the URIs of ``blocks`` (JSON content, rewritten in place).  Run before
        the result is judged (``results.review``): a block may be anything, its type a
        list (``in _LINK_TYPES`` raised, an internal error for what is the upstream's
        invalid result)."""
        if not isinstance(blocks, list):
            return
        for block in blocks:
            if not isinstance(block, dict) or not isinstance(kind := block.get("type"), str) \
                    or kind not in _LINK_TYPES:
                continue
            target = block if block["type"] == "resource_link" else block.get("resource")
            if isinstance(target, dict) and isinstance(target.get("uri"), str):
                target["uri"] = self.expose(server, target["uri"])
