"""A URI a host reads is the host's words: a template's parameters are its arguments
(``data://items/{item_id}`` read as ``data://items/ghp_...``, ``...?api_key=...``).

Found by secrets26's review: the call record kept the URI whole in ``exposed`` and
``original`` (shown by ``gateway_calls``, REST and the dashboard, and in the store's
file) beside its own error text, which was masked; and a read's round carried to
another gateway instance (front/crossing.py) wrote it in the clear in the shared
PostgreSQL store's ``parked_rounds`` row, where the answers are sealed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client, Context, FastMCP

from tests.fixtures import alpha_server, make_gateway, memory_entry
from tests.test_parked_rounds_crossing import ASKING, AUTH, first_row, rows_left
from tests.test_request_state import KEY, served
from tests.test_tasks import ALICE, post

pytestmark = pytest.mark.anyio

TOKEN = "ghp_" + "Zq9Xw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8"  # GitHub's format: masked anywhere
KEY_VALUE = "zq7Rk2Vw9Xc4Pb6Mn1Td"


async def test_a_read_uri_is_recorded_with_its_credentials_masked(tmp_path: Path) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        read = await client.read_resource(f"data://alpha/items/{TOKEN}")
        with pytest.raises(Exception, match="Unknown resource"):  # recorded 'rejected'
            await client.read_resource(f"data://items/x?api_key={KEY_VALUE}")
        calls = (await client.call_tool("gateway_calls", {"limit": 10})
                 ).structured_content["calls"]
    assert getattr(read[0], "text", "") == f"item-{TOKEN}"  # what the host read: as is
    served, rejected = (next(c for c in calls if c["status"] == status)
                        for status in ("success", "rejected"))
    assert served["exposed"] == "data://alpha/items/ghp_***", served
    assert served["original"] == "data://items/ghp_***", served
    assert rejected["exposed"] == "data://items/x?api_key=***", rejected
    stored = _stored(tmp_path)  # the store's file and its WAL
    assert TOKEN.encode() not in stored and KEY_VALUE.encode() not in stored


def _stored(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in folder.glob("g.db*"))


def asking_reads() -> FastMCP[Any]:
    mcp: FastMCP[Any] = FastMCP("asking-reads")

    @mcp.resource("vault://{item}")
    async def item(item: str, ctx: Context) -> str:
        answer = await ctx.elicit("Open it?", response_type=str)
        return f"{item}: {getattr(answer, 'data', None)}"

    return mcp


async def test_a_crossed_reads_uri_is_not_in_the_clear_in_the_store(pg_url: str) -> None:
    """The holder (gw-a) does not listen: the round gw-b posts stays until the ask
    timeout, and the row is read meanwhile."""
    upstream = asking_reads()
    entry = memory_entry("asker", protocol="legacy")
    first, second = (make_gateway({"asker": entry}, {"asker": upstream},
                                  request_state_keys=[KEY], db=pg_url, instance_id=name,
                                  options={"auth": AUTH}, ask_timeout=3)
                     for name in ("gw-a", "gw-b"))
    first.parking.crossing = None  # gw-a holds its question, and hears no round
    uri = f"vault://asker/{TOKEN}"
    async with served(first, second) as (to_a, to_b):
        for http in (to_a, to_b):  # (``post`` names a tool or a task only)
            http.headers["mcp-name"] = uri
        asked = (await post(to_a, ALICE, "resources/read", {"uri": uri}, ASKING))["result"]
        assert asked["resultType"] == "input_required", asked
        ((key, _),) = asked["inputRequests"].items()
        seen: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_row, pg_url, seen)
            told = json.dumps(await post(to_b, ALICE, "resources/read", {
                "uri": uri, "requestState": asked["requestState"],
                "inputResponses": {key: {"action": "accept", "content": {"value": "y"}}}},
                ASKING))
            tg.cancel_scope.cancel()
    assert "did not take the answers within 3s" in told, told
    assert seen and "resources/read 'vault://asker/ghp_***'" in seen[0], seen
    assert TOKEN not in seen[0], seen  # (the host's answer names its own URI as it is)
    assert await rows_left(pg_url) == 0
