"""Property-based, over real HTTP on 127.0.0.1 with bearer tokens (tests/test_rest_fuzz.py
drives the API in-process, without `gateway.auth`): schemathesis sends every /api/v1
operation of the OpenAPI document with a token restricted to one server, an admin's and
a `tools` one, to a real gateway (two real stdio demo servers, one with calls of
another token's, a real SQLite store), and
checks that nothing answers 5xx or outside its schema, that the API ignores no
credential (`ignored_auth`: each operation refuses a request without one or with a bad
one), and that no answer to the restricted tokens names the server they may not see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastmcp import Client
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import ignored_auth, response_schema_conformance

from tests.fixtures import make_gateway, serve_http
from tests.test_rest_fuzz import NOT_FUZZED

pytestmark = pytest.mark.anyio

ADMIN = "mgw_fuzz-admin-of-notes-6d2e9a41"  # admin, servers [notes]
READER = "mgw_fuzz-reader-of-notes-0c7b3f58"  # tools, servers [notes]
OWNER = "mgw_fuzz-owner-7a1e5c93b2d4"  # admin of every server: makes the hidden one's traffic
HIDDEN = "zephyrine"  # the server neither token may see; a word no fuzzer makes up
EXAMPLES = 8  # per operation and token: about 500 requests


def _demo(name: str) -> dict[str, Any]:
    return {"command": "${GATEWAY_PYTHON}", "args": ["-m", f"fast_mcp_gateway.demo.{name}"]}


@pytest.mark.timeout(420)
async def test_restricted_tokens_over_http_never_see_another_server(tmp_path: Path) -> None:
    import anyio.to_thread

    auth = {"tokens": [
        {"name": "owner", "token": OWNER, "scopes": ["admin"]},
        {"name": "notes-admin", "token": ADMIN, "scopes": ["admin"], "servers": ["notes"]},
        {"name": "notes-reader", "token": READER, "scopes": ["tools"], "servers": ["notes"]},
    ]}
    gateway = make_gateway({"notes": _demo("notes"), HIDDEN: _demo("clock")},
                           options={"auth": auth}, db=tmp_path / "gateway.db")
    async with serve_http(gateway.http_app()) as base:
        # The hidden server has calls (an error among them), so logs, statistics and
        # health have rows of it for a leak to show.
        async with Client(f"{base}/mcp", auth=OWNER) as owner:
            assert not (await owner.call_tool(f"{HIDDEN}_now", {})).is_error
            failed = await owner.call_tool(f"{HIDDEN}_now", {"timezone": "Nowhere/x"},
                                           raise_on_error=False)
            assert failed.is_error
        # schemathesis is synchronous: it runs in a thread while this loop serves.
        for token in (ADMIN, READER):
            await anyio.to_thread.run_sync(_fuzz, base, token)


def _fuzz(base: str, token: str) -> int:
    """Every operation with ``token``; how many requests were sent."""
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    fuzzed = [op for op in operations if (op.method.upper(), op.path) not in NOT_FUZZED]
    assert len(fuzzed) == len(operations) - len(NOT_FUZZED) > 20
    checks = [schemathesis.checks.not_a_server_error, response_schema_conformance,
              ignored_auth]
    headers = {"Authorization": f"Bearer {token}"}
    sent = 0
    for operation in fuzzed:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            nonlocal sent
            response = case.call_and_validate(base_url=f"{base}/api/v1", checks=checks,
                                              headers=headers)
            sent += 1
            assert response.status_code < 500, response.text
            asked = json.dumps([case.path_parameters, case.query, case.body], default=str)
            if HIDDEN not in asked:  # the server's name is not an echo of the request
                assert HIDDEN not in response.text, (
                    f"{case.method} {case.formatted_path}: {response.text[:500]}")

        check()
    assert sent >= len(fuzzed)
    return sent
