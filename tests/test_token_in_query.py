"""A token put in the URL's query string (``?access_token=``, as some clients and
tutorials do) is not read, and the 401 says so: it said only "this gateway requires a
bearer token", as though none had been sent.  Over real HTTP, on the MCP endpoint (both
of its paths: FastMCP's guard behind the express lane), the REST API and /metrics; the
token itself is never repeated."""

from __future__ import annotations

import json

import pytest

from fast_mcp_gateway.http.access import in_query
from tests.test_http_lane import FULL, body_of, front, headers_of

pytestmark = pytest.mark.anyio

SAID = "the URL's query string holds a token ('access_token='), which this gateway does not read"


async def test_a_token_in_the_query_string_is_refused_saying_where_it_must_go() -> None:
    async with front(True) as gw:
        http = gw.http
        answers = [
            await http.post(f"/mcp?access_token={FULL}", headers=headers_of("alpha_add", None),
                            content=json.dumps(body_of("alpha_add", {"a": 1, "b": 2}))),
            await http.get(f"/mcp?access_token={FULL}",
                           headers={"accept": "text/event-stream"}),
            await http.get(f"/api/v1/servers?access_token={FULL}"),
            await http.get(f"/metrics?access_token={FULL}"),
        ]
        for answer in answers:
            assert answer.status_code == 401, answer.text
            assert SAID in answer.text and "Authorization header" in answer.text, answer.text
            assert FULL not in answer.text and FULL not in str(answer.headers)
        # Without a token anywhere the words are as before.
        plain = await http.get("/api/v1/servers?limit=1")
        assert plain.status_code == 401 and "query string" not in plain.text


def test_what_counts_as_a_token_in_a_query() -> None:
    assert "('token=')" in in_query(b"token=abc&x=1")
    assert "('access_token=')" in in_query("ACCESS_TOKEN=")
    # A value of a token's form is found under any name, which is not repeated.
    found = in_query("q=mgw_" + "a" * 43)
    assert "(a parameter)" in found and "q=" not in found
    assert "(a parameter)" in in_query("x=eyJhbGciOi.eyJzdWIi.c2ln")
    assert in_query("") == in_query(b"limit=5&server=notes") == ""
