"""Property-based: schemathesis drives every /api/v1 operation from the OpenAPI document
(in-process ASGI, a real gateway with an in-memory upstream and a real SQLite store)
and checks that no response is a 5xx and every response matches its schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
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
    assert len(fuzzed) == len(operations) - len(NOT_FUZZED) == 31
    checks = [schemathesis.checks.not_a_server_error, response_schema_conformance]
    for operation in fuzzed:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(checks=checks)
            assert response.status_code < 500, response.text

        check()
