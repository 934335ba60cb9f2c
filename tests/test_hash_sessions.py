"""``balance: hash`` on the host's session (``hash_key: session``, the default key) over
HTTP: each session keeps to one replica, and sessions spread over the replicas.  The
records' client name for an HTTP host without a client id became 'http' (it was
'stdio'), and the session key took that shared name for the session's own: every HTTP
session hashed alike, onto one replica.  Real HTTP on 127.0.0.1."""

from __future__ import annotations

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from fast_mcp_gateway.http.lane import HttpLane
from tests.fixtures import make_gateway, replica_server, serve_http
from tests.test_resilience import instances, pytestmark  # noqa: F401


async def test_http_sessions_spread_over_the_replicas_and_each_keeps_to_one() -> None:
    memory = {t: replica_server(t) for t in "abc"}
    gateway = make_gateway({"svc": {"instances": instances("a", "b", "c"), "balance": "hash",
                                    "hash_key": "session"}}, memory)
    app = gateway.http_app("http")
    assert isinstance(getattr(app.mcp_entry, "app", None), HttpLane)
    homes = []
    async with serve_http(app) as base:
        for _ in range(8):
            async with Client(StreamableHttpTransport(f"{base}/mcp"), mode="legacy") as client:
                seen = {(await client.call_tool("svc_whoami", {})).data for _ in range(3)}
                assert len(seen) == 1, f"a session moved between replicas: {seen}"
                homes.append(seen.pop())
    # Eight sessions on one of three replicas by chance: 3 * (1/3)**8, under 0.1 %.
    assert len(set(homes)) > 1, homes
