"""An operation that takes no query parameters refuses one, as the others refuse an
unknown one: ``GET /api/v1/servers?server=notes`` (a team filtering the list as it
filters the call log) answered every server, 200, the parameter unsaid -- and
README says "?sever=x is refused, not ignored".  (``/servers`` itself now takes
``server``, ``state`` and ``detail``: tests/test_list_narrow.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http

pytestmark = pytest.mark.anyio


async def test_a_query_parameter_to_an_operation_taking_none_is_refused(
        tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        for path in ("/routes", "/alerts", "/servers/alpha/tools"):
            refused = await http.get(f"{base}/api/v1{path}", params={"server": "alpha"})
            assert refused.status_code == 422, (path, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "validation_error"
            assert error["message"] == ("invalid query: server is not accepted: this "
                                        "operation takes no query parameters"), error
            assert error["details"]["fields"][0]["field"] == "server"
            # A cache buster ('_'-prefixed) is still let through, as on every operation.
            busted = await http.get(f"{base}/api/v1{path}", params={"_": "1700000000"})
            assert busted.status_code == 200, (path, busted.text)


async def test_a_query_parameter_with_an_empty_name_is_named_as_such(tmp_path: Path) -> None:
    """'?=1' was refused as "invalid query:  is not accepted" (the empty name, said as
    nothing): the problem is named, with the parameters the operation takes."""
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        for path, takes in (("/routes?=1", "no query parameters"),
                            ("/servers?=1", "server, state, detail"),
                            ("/servers/alpha?=secret", "stderr_lines, replica"),
                            ("/logs/invocations?server=alpha&=", "server, tool, ")):
            refused = await http.get(f"{base}/api/v1{path}")
            assert refused.status_code == 422, (path, refused.text)
            error = refused.json()["error"]
            assert error["message"].startswith(
                "invalid query: a query parameter has an empty name"), error
            assert f"(this operation takes {takes}" in error["message"], error
            assert "secret" not in refused.text
            assert error["details"]["fields"][0]["type"] == "empty_name"
