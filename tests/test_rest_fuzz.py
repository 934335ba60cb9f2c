"""Property-based: schemathesis drives every /api/v1 operation from the OpenAPI document
(in-process ASGI, a real gateway with an in-memory upstream and a real SQLite store)
and checks that no response is a 5xx, every response matches its schema, and no request
the document allows fails validation; tables check that the document and the server
agree on the edges (bodies, cursors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fixtures import beta_server, make_gateway, memory_entry

# Registering a server runs its command: the fuzzer must not invent commands to run.
NOT_FUZZED = {("POST", "/servers"), ("PUT", "/servers/{name}")}
EXAMPLES = 12  # per operation: about 300 requests, well within a minute


@pytest.fixture
def schema(tmp_path: Path):
    gateway = make_gateway({"beta": memory_entry("beta")}, {"beta": beta_server()},
                           db=tmp_path / "gateway.db", allow_unauthenticated_admin=True,
                           allowed_hosts=["testserver"])
    app = gateway.http_app()
    try:
        yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    finally:
        asgi.shutdown_lifespans()  # stop the gateway schemathesis started


@pytest.mark.timeout(240)
def test_every_operation_answers_within_its_schema_and_never_5xx(schema) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [op for op in operations if (op.method.upper(), op.path) not in NOT_FUZZED]
    assert len(fuzzed) == len(operations) - len(NOT_FUZZED) == 32
    checks = [schemathesis.checks.not_a_server_error, response_schema_conformance]
    for operation in fuzzed:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(checks=checks)
            assert response.status_code < 500, response.text
            # Data the document allows passes validation (a 422 may still say that a
            # named server or rule does not fit, as invalid_config).
            refused = (response.status_code == 422
                       and response.json()["error"]["code"] == "validation_error")
            assert not refused, f"{case.body!r} {case.query!r}: {response.text}"

        check()


# -- the document says exactly what the server accepts ---------------------------------

ISSUED = "1764467000.25|0f3a"  # the shape of a `next_cursor` (store.base.invocation_cursor)
BODIES: list[tuple[str, dict[str, Any], bool]] = [
    # (component schema, body, whether both accept it)
    ("RouteIn", {"pattern": "a", "target": "b", "priority": 5}, True),
    ("RouteIn", {"pattern": "a", "target": "b", "priority": 5.0}, True),  # JSON: the integer 5
    ("RouteIn", {"pattern": "a", "target": "b", "priority": 5.5}, False),
    ("RouteIn", {"pattern": "a", "target": "b", "priority": True}, False),
    ("RouteIn", {"pattern": "", "target": "b"}, False),
    ("AlertRule", {"name": "down", "metric": "not_ready"}, True),
    ("AlertRule", {"name": "", "metric": "not_ready"}, False),
    ("AlertRule", {"name": "-down", "metric": "not_ready"}, False),
    ("AlertRule", {"name": "d" * 65, "metric": "not_ready"}, False),
    ("AlertRule", {"name": "down", "metric": "not_ready", "threshold": 1}, False),
    ("AlertRule", {"name": "down", "metric": "not_ready", "op": "<"}, False),
    ("AlertRule", {"name": "down", "metric": "not_ready", "window": 0}, True),
    ("AlertRule", {"name": "slow", "metric": "p95_ms"}, False),
    ("AlertRule", {"name": "slow", "metric": "p95_ms", "threshold": None}, False),
    ("AlertRule", {"name": "slow", "metric": "p95_ms", "threshold": 500}, True),
    ("AlertRule", {"name": "slow", "metric": "p95_ms", "threshold": 0}, False),
    ("AlertRule", {"name": "slow", "metric": "p95_ms", "threshold": 500, "window": 0}, False),
    ("AlertRule", {"name": "slow", "metric": "p95_ms", "threshold": 5, "for": 4e7}, False),
    ("AlertRule", {"name": "slow", "metric": "p95_ms", "threshold": 5, "window": -1}, False),
    ("AlertRule", {"name": "ok", "metric": "success_rate", "threshold": 1}, True),
    ("AlertRule", {"name": "ok", "metric": "success_rate", "threshold": 1.5}, False),
    ("AlertRule", {"name": "f", "metric": "consecutive_failures", "threshold": 3.0}, True),
    ("AlertRule", {"name": "f", "metric": "consecutive_failures", "threshold": 2.5}, False),
    ("AlertRule", {"name": "f", "metric": "consecutive_failures", "threshold": 0}, False),
    ("AlertRule", {"name": "f", "metric": "not_ready", "min_calls": 5.0}, True),
    ("CallToolIn", {"server": "a", "tool": "t"}, True),
    ("CallToolIn", {"name": "a", "tool": "t"}, True),
    ("CallToolIn", {"tool": "t"}, False),
    ("CallToolIn", {"tool": "t", "name": None}, False),
    ("CallToolIn", {"tool": "t", "server": "a", "name": None}, False),
    ("CallToolIn", {"tool": "t", "server": "a", "name": "b"}, False),
    ("CallToolIn", {"tool": "t", "server": "a", "name": "a"}, False),
]
CURSORS = [("", True), (ISSUED, True), ("garbage", False), ("1.5", False), ("x|1", False),
           ("nan|1", False)]


def _document() -> dict[str, Any]:
    from fast_mcp_gateway.http.api import ENDPOINTS
    from fast_mcp_gateway.http.openapi import openapi_document

    return openapi_document(ENDPOINTS, bearer=False)


def _server_accepts(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("component", "body", "accepted"), BODIES)
def test_the_document_accepts_a_body_exactly_when_the_server_does(
        component: str, body: dict[str, Any], accepted: bool) -> None:
    from fast_mcp_gateway.config.alerts import AlertRule
    from fast_mcp_gateway.http import schemas

    document = _document()
    schema = {"components": document["components"], "$ref": f"#/components/schemas/{component}"}
    model = AlertRule if component == "AlertRule" else getattr(schemas, component)
    assert Draft202012Validator(schema).is_valid(body) is accepted
    assert _server_accepts(model, body) is accepted


@pytest.mark.parametrize(("cursor", "accepted"), CURSORS)
def test_the_document_accepts_a_cursor_exactly_when_the_server_does(
        cursor: str, accepted: bool) -> None:
    from fast_mcp_gateway.http.schemas import InvocationsQuery

    parameters = _document()["paths"]["/logs/invocations"]["get"]["parameters"]
    schema = next(p["schema"] for p in parameters if p["name"] == "cursor")
    assert Draft202012Validator(schema).is_valid(cursor) is accepted
    assert _server_accepts(InvocationsQuery, {"cursor": cursor}) is accepted
