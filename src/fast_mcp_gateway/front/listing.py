"""The catalog lists, encoded once per change, for the stdio express lane.

A warm ``tools/list`` of a thousand aggregated tools cost the gateway ~0.12-0.19 ms of
CPU per tool through FastMCP and the SDK (components listed, converted to SDK models,
validated against the protocol revision's surface, dumped and encoded), on every
request, although the list had not changed.  ``ListCache`` builds a list's JSON the
way that path does -- ``FastMCP.list_*`` (providers, visibility, middleware), each
component's ``to_mcp_*``, the legacy wrapping of non-object output schemas, the SDK
server's cache hints, surface serialisation, ``resultType`` and ``serverInfo``
stamp -- and keeps the encoded bytes under everything the list depends on
(``GatewayProvider.list_key``: catalog generation, provider revision, config,
principal, route rules) and the protocol revision.  ``tests/test_fidelity_lists.py`` holds the
lane's bytes equal to the full path's for both eras.  A build goes ``CHUNK`` items at
a time (``ListCache._build``): all of a thousand tools' copies at once left their
pages in the process.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

import mcp_types as types
import pydantic_core
from fastmcp import FastMCP
from fastmcp.utilities.json_schema import is_object_schema
from fastmcp.utilities.versions import dedupe_with_versions
from mcp.server.caching import apply_cache_hint
from mcp_types import methods as _methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from fast_mcp_gateway._compat import low_level_server
from fast_mcp_gateway.front.hints import apply_list_hint

if TYPE_CHECKING:
    from fast_mcp_gateway.front.provider import GatewayProvider

LIST_METHODS = frozenset({"tools/list", "prompts/list", "resources/list",
                          "resources/templates/list"})


def wire_output_schema(schema: dict[str, Any] | None, version: str) -> dict[str, Any] | None:
    """The output schema FastMCP's ``tools/list`` handler sends at ``version``: legacy
    revisions require a literal object type at the root, so others are wrapped."""
    if version in MODERN_PROTOCOL_VERSIONS or schema is None:
        return schema
    if is_object_schema(schema):
        return schema if schema.get("type") == "object" else {**schema, "type": "object"}
    wrapped: dict[str, Any] = {
        "type": "object", "properties": {"result": schema}, "required": ["result"],
        "x-fastmcp-wrap-result": True,
    }
    for key in ("$defs", "definitions"):  # local references still resolve from the root
        if key in schema:
            wrapped[key] = schema[key]
    return wrapped


# The wire key of each list's items.
_ITEMS = {"tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
          "resources/templates/list": "resourceTemplates"}
# Items converted, validated and encoded at a time (see ``ListCache``).
CHUNK = 100


async def listed_components(server: FastMCP[Any], method: str) -> list[Any]:
    """The FastMCP components FastMCP's handler of ``method`` lists (first page)."""
    if method == "tools/list":
        return dedupe_with_versions(list(await server.list_tools()), lambda t: t.name)
    if method == "prompts/list":
        return dedupe_with_versions(list(await server.list_prompts()), lambda p: p.name)
    if method == "resources/list":
        return dedupe_with_versions(list(await server.list_resources()), lambda r: str(r.uri))
    return dedupe_with_versions(list(await server.list_resource_templates()),
                                lambda t: t.uri_template)


def list_result(method: str, version: str, components: list[Any]) -> types.Result:
    """The result model FastMCP's handler of ``method`` answers with ``components``."""
    if method == "tools/list":
        return types.ListToolsResult(tools=[
            t.to_mcp_tool(name=t.name, outputSchema=wire_output_schema(t.output_schema, version))
            for t in components])
    if method == "prompts/list":
        return types.ListPromptsResult(prompts=[
            p.to_mcp_prompt(name=p.name) for p in components])
    if method == "resources/list":
        return types.ListResourcesResult(resources=[
            r.to_mcp_resource(uri=str(r.uri)) for r in components])
    return types.ListResourceTemplatesResult(resource_templates=[
        t.to_mcp_template(uri_template=t.uri_template) for t in components])


def wire_result(server: FastMCP[Any], method: str, version: str,
                result: types.Result) -> dict[str, Any]:
    """``result`` as the SDK server puts it on the wire at ``version`` (its cache hint,
    the revision's surface, ``resultType`` and the 2026-07-28 ``serverInfo`` stamp)."""
    low = low_level_server(server)
    hint = low.cache_hints.get(method)  # type: ignore[call-overload]
    if hint is not None and isinstance(result, types.CacheableResult):
        result = apply_cache_hint(result, hint)
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    dumped = _methods.serialize_server_result(method, version, dumped)
    if version in MODERN_PROTOCOL_VERSIONS:
        dumped.setdefault("resultType", "complete")
        meta = dumped.get("_meta")
        if meta is None:
            dumped["_meta"] = {types.SERVER_INFO_META_KEY: low.server_info_stamp}
        elif isinstance(meta, dict) and meta.get(types.SERVER_INFO_META_KEY) is None:
            dumped["_meta"] = {**meta, types.SERVER_INFO_META_KEY: low.server_info_stamp}
    return dumped


def encode_json(value: Any) -> bytes:
    """``value`` as the SDK's transports encode a message (pydantic-core: ``0.00001``
    where ``json.dumps`` writes ``1e-05``; non-ASCII as is, compact)."""
    try:
        return pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError:  # a lone surrogate (an upstream's):
        return json.dumps(value, separators=(",", ":")).encode()  # escaped, valid JSON


class ListCache:
    """Each list's encoded result, built once per change (see the module doc)."""

    def __init__(self, server: FastMCP[Any], provider: GatewayProvider) -> None:
        self.server, self.provider = server, provider
        self._cache: dict[tuple[str, str], tuple[tuple[Any, ...], bytes]] = {}
        self.builds = 0  # how many lists were encoded (a test's witness of caching)

    async def encoded(self, method: str, version: str) -> bytes:
        """The JSON of the ``method`` result a host at ``version`` gets now."""
        key = self.provider.list_key()
        hit = self._cache.get((method, version))
        if hit is not None and hit[0] == key:
            return hit[1]
        body = self._build(method, version, await listed_components(self.server, method))
        self.builds += 1
        # Keyed by what was current when the build began: a change during it makes
        # the next request build again rather than serve a list older than it.
        self._cache[(method, version)] = (key, body)
        return body

    def _build(self, method: str, version: str, components: list[Any]) -> bytes:
        """The list's JSON, ``CHUNK`` items at a time: the items converted to SDK models,
        dumped, validated against the surface, dumped again and encoded, one chunk alive
        at a time (the whole list at once held ~9 MB of transient copies for a thousand
        tools, whose pages stayed in the process).  ``components`` is emptied as it is
        encoded.  The bytes are those of the whole list at once: the surface validates
        each item alone and the envelope (hints, ``resultType``, ``serverInfo``) does
        not depend on the items."""
        key = _ITEMS[method]
        pieces: list[bytes] = []
        while components:
            chunk = components[:CHUNK]
            del components[:CHUNK]
            dumped = wire_result(self.server, method, version,
                                 list_result(method, version, chunk))
            del chunk
            pieces.append(encode_json(dumped[key])[1:-1])
            del dumped
        envelope = wire_result(self.server, method, version, apply_list_hint(
            self.provider, method, list_result(method, version, [])))
        marker = secrets.token_hex(16)   # unguessable: no upstream text holds it
        envelope[key] = [marker]
        return encode_json(envelope).replace(f'["{marker}"]'.encode(),
                                             b"[" + b",".join(pieces) + b"]", 1)
