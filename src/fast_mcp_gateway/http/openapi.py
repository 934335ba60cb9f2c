"""The OpenAPI 3.1 document of ``/api/v1``, generated from the endpoint table.

Paths, methods, parameters and statuses come from ``api.ENDPOINTS``; every schema comes
from the same pydantic models that validate requests and shape responses
(``models_json_schema``, with references into ``components/schemas``).  Nothing here
is written per endpoint.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from fast_mcp_gateway._version import __version__
from fast_mcp_gateway.config.schema import STORE_INT_MAX
from fast_mcp_gateway.http.endpoints import Endpoint
from fast_mcp_gateway.http.errors import ErrorBody

_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"{(\w+)}")
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "minLength": 1},
    "id": {"type": "integer", "minimum": 1, "maximum": STORE_INT_MAX},
}
_REASONS = {400: "malformed request (not a JSON object)", 401: "no bearer token, or a bad one",
            403: "the token lacks the scope (named in details)",
            404: "no such server, route, tool or alert rule (or not visible to this token)",
            409: "the name is taken", 413: "the body is over 1 MiB",
            415: "the body is not sent as 'Content-Type: application/json'",
            422: "validation failed (details name the fields)",
            429: "a rate limit is exhausted (see Retry-After)",
            503: "an upstream or the store is unavailable"}


def _parameters(ep: Endpoint) -> list[dict[str, Any]]:
    params = [{"name": p, "in": "path", "required": True, "schema": _PATH_SCHEMAS[p]}
              for p in _PARAM.findall(ep.path)]
    if ep.query is not None:
        schema = ep.query.model_json_schema(mode="validation")
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                     "schema": prop}
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
    return params


def _statuses(ep: Endpoint) -> list[int]:
    statuses = {401, 403, 503, *ep.errors}
    if ep.query is not None or ep.body is not None or "{id}" in ep.path:
        statuses.add(422)
    if ep.body is not None:
        statuses |= {400, 413, 415}
    if "{" in ep.path:
        statuses.add(404)
    return sorted(statuses)


def openapi_document(endpoints: list[Endpoint], *, bearer: bool) -> dict[str, Any]:
    """The document for ``endpoints``; ``bearer``: requests need a token (``gateway.auth``)."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for ep in endpoints:
        wanted.append((ep.response, "serialization"))
        if ep.body is not None:
            wanted.append((ep.body, "validation"))
    unique = list(dict.fromkeys(wanted))
    refs, defs = models_json_schema(unique, ref_template=_REF)

    def ref(model: type[BaseModel], mode: Literal["validation", "serialization"]
            ) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": refs[(model, mode)]}}}

    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        responses: dict[str, Any] = {str(ep.status): {"description": "success",
                                                      **ref(ep.response, "serialization")}}
        for status in _statuses(ep):
            responses[str(status)] = {"description": _REASONS.get(status, "error"),
                                      **ref(ErrorBody, "serialization")}
        operation: dict[str, Any] = {
            "operationId": f"{ep.handler.__name__}",
            "summary": ep.summary.splitlines()[0] if ep.summary else ep.path,
            "description": f"{ep.summary}\n\nScope: `{ep.scope}`.",
            "tags": [ep.tag],
            "parameters": _parameters(ep),
            "responses": responses,
        }
        if ep.body is not None:
            operation["requestBody"] = {
                "required": True, **ref(ep.body, "validation"),
                "description": "a JSON object, sent with 'Content-Type: application/json' "
                               "(another type, or none, is refused with 415)"}
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Fast MCP Gateway management API", "version": __version__,
                 "description": "Manage the gateway's servers, routes, logs, statistics and "
                                "inspector; the same operations as the gateway_* MCP tools."},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
    if bearer:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a gateway.auth token (mcp-gateway token new) or a JWT"}}
        document["security"] = [{"bearer": []}]
    return document
