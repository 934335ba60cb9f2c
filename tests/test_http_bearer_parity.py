"""Every HTTP surface reads one ``Authorization`` header alike, over real HTTP.

FastMCP's guard on the MCP endpoint (the SDK's ``BearerAuthBackend``) takes the first
``Authorization`` header, its scheme ``Bearer`` in any case followed by one space, and
the rest as the token, as it is.  The HTTP express lane, the ``roots/list_changed``
note and the REST API ask ``Access`` (``caller_of``), which split the header at its
first space and stripped the token: ``Bearer  <token>`` (two spaces) verified there and
not on the full path, so the lane answered a ``tools/call`` that the full path refused
401, and the REST API served a header the MCP endpoint refused.  Whatever the header,
all of them now agree on whether it names a caller.
"""

from __future__ import annotations

import json

import pytest

from tests.test_http_lane import FULL, body_of, both, headers_of

pytestmark = pytest.mark.anyio

# (No trailing whitespace: HTTP strips it from a header's value.)
HEADERS = [f"Bearer {FULL}", f"bearer {FULL}", f"BEARER {FULL}", f"Bearer  {FULL}",
           f"Bearer   {FULL}", f"Bearer\t{FULL}", f"Bearer \t{FULL}", f"Bearer  {FULL} x",
           "Bearer", f"Basic {FULL}", FULL]


async def test_the_lane_the_full_path_and_the_rest_api_agree_on_a_header() -> None:
    name, arguments = "alpha_add", {"a": 2, "b": 3}
    async with both() as (lane, full):
        for header in HEADERS:
            asked = {**headers_of(name, None), "authorization": header}
            before = lane.served
            got = await lane.http.post("/mcp", content=json.dumps(body_of(name, arguments)),
                                       headers=asked)
            want = await full.http.post("/mcp", content=json.dumps(body_of(name, arguments)),
                                        headers=asked)
            rest = await full.http.get("/api/v1/servers", headers={"authorization": header})
            known = want.status_code != 401
            assert (got.status_code, got.json()) == (want.status_code, want.json()), header
            assert lane.served - before == (1 if known else 0), header
            assert (rest.status_code != 401) == known, (header, rest.text)
            if not known:
                assert "Bearer" in rest.json()["error"]["message"], rest.text
        # The header verifies everywhere when it is written as the SDK reads it.
        assert (await full.http.get("/api/v1/servers", headers={
            "authorization": f"bEaReR {FULL}"})).status_code != 401
