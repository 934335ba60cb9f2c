"""A REST body sent as anything but JSON is refused (415), naming application/json.

``/api/v1`` read every POST/PUT body as JSON whatever its ``Content-Type``: a
``text/plain`` body (what a web page may send cross-site without asking first) or a
form was acted on.  Now an operation taking a body refuses another type, or a body
without one, with 415 ``unsupported_media_type``; ``application/json`` (with a charset,
or a ``+json`` type) is read as before, operations without a body take any request as
before, and the OpenAPI document lists the 415.  Neither the dashboard (forms to
``/ui``) nor the CLI sends REST bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.fixtures import beta_server, make_gateway, memory_entry, serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_rest-content-type-ops-3f9c1a7e"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}
RULE = json.dumps({"pattern": "a_", "target": "b", "match": "prefix"})


def _refused(response: httpx2.Response, sent: str | None) -> dict[str, Any]:
    assert response.status_code == 415, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "unsupported_media_type", error
    assert "'Content-Type: application/json'" in error["message"], error
    assert error["details"] == {"content_type": sent, "expected": "application/json"}
    return error


async def test_a_body_that_is_not_sent_as_json_is_refused(tmp_path: Path) -> None:
    gateway = make_gateway({"b": memory_entry("b")}, {"b": beta_server()},
                           options={"auth": AUTH}, db=tmp_path / "gateway.db")
    token = {"Authorization": f"Bearer {OPS}"}
    async with serve_http(gateway.http_app(), startup=False) as base, \
            httpx2.AsyncClient(base_url=f"{base}/api/v1", timeout=30, headers=token) as http:
        for kind in ("text/plain", "text/plain;charset=UTF-8",
                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                     "application/jsonl", "text/json"):
            error = _refused(await http.post("/routes", content=RULE,
                                             headers={"Content-Type": kind}), kind)
            assert error["message"].startswith(f"the request body is sent as '{kind}', "
                                               "and this API reads JSON only: send a JSON "
                                               "object with this operation's fields"), error
        error = _refused(await http.post("/routes", content=RULE), None)
        assert error["message"].startswith("the request body has no Content-Type"), error
        put = await http.put("/alerts/rules/down", content=json.dumps({"metric": "not_ready"}),
                             headers={"Content-Type": "text/plain"})
        _refused(put, "text/plain")
        assert (await http.get("/routes")).json()["routes"] == []  # nothing was acted on
        assert (await http.get("/alerts/rules")).json()["rules"] == []
        # JSON is read as before, with a charset or as a +json type.
        for n, kind in enumerate(("application/json", "Application/JSON; charset=utf-8",
                                  "application/merge-patch+json")):
            rule = json.dumps({"pattern": f"a{n}_", "target": "b", "match": "prefix"})
            made = await http.post("/routes", content=rule, headers={"Content-Type": kind})
            assert made.status_code == 201, (kind, made.text)
        # An empty body without a type still says what to send (400, as before).
        empty = await http.post("/routes")
        assert empty.status_code == 400 and "the request body is empty" in empty.text
        # An operation without a body takes any request, as before.
        rules = (await http.get("/routes")).json()["routes"]
        gone = await http.request("DELETE", f"/routes/{rules[0]['id']}", content=b"x",
                                  headers={"Content-Type": "text/plain"})
        assert gone.status_code == 200, gone.text


async def test_the_openapi_document_names_the_415() -> None:
    gateway = make_gateway({})
    async with serve_http(gateway.http_app(), startup=False) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        document = (await http.get(f"{base}/api/v1/openapi.json")).json()
    with_body = [(path, method, operation) for path, methods in document["paths"].items()
                 for method, operation in methods.items() if "requestBody" in operation]
    assert len(with_body) == 8, [(p, m) for p, m, _ in with_body]
    for path, method, operation in with_body:
        assert list(operation["requestBody"]["content"]) == ["application/json"]
        assert "415" in operation["requestBody"]["description"], (path, method)
        assert "application/json" in operation["responses"]["415"]["description"]
    without = [operation for methods in document["paths"].values()
               for operation in methods.values() if "requestBody" not in operation]
    assert without and all("415" not in operation["responses"] for operation in without)
