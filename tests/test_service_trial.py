"""Defects found trying the service half as a demanding team would (session 12, trial 2).

Each test reproduces one finding over real HTTP on 127.0.0.1 with the demo upstreams as
real stdio subprocesses and a real store (PostgreSQL where the finding is about it); each
failed on the code it was written against.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import jwt
import pytest
from fastmcp import Client
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from prometheus_client.parser import text_string_to_metric_families

from fast_mcp_gateway.store import open_store
from tests.fixtures import make_gateway, serve_http
from tests.pg import PgCluster, running_cluster
from tests.test_admin_restricted import AUTH, NOTES_ADMIN
from tests.test_asks_routing import until
from tests.test_rest import OPS, assert_error, demo, serving
from tests.test_ui import _login

pytestmark = pytest.mark.anyio


async def test_a_restricted_admin_cannot_route_another_servers_tools_over_rest(
        tmp_path: Path) -> None:
    """README: "a change beyond one server: an import, a reload, a route or an alert rule,
    needs a token without `servers`"; gateway_add_route refuses carol over MCP, but
    POST /api/v1/routes took her rule, and a wildcard on clock's names sent every
    caller's clock calls (arguments included) to her server."""
    async with serving(tmp_path, {"notes": demo("notes"), "clock": demo("clock")},
                       auth=False, options={"auth": AUTH}) as (api, _):
        hijack = {"pattern": "clock_*", "match": "wildcard", "target": "notes",
                  "priority": 100}
        added = await api("POST", "/routes", NOTES_ADMIN, json=hijack)
        assert added.status_code == 403, added.text
        assert "without a 'servers' list" in added.json()["error"]["message"]
        # Nor may she rewrite or delete a rule an unrestricted admin made for her server.
        rid = (await api("POST", "/routes", OPS, json={"pattern": "notes_x",
                                                        "target": "notes"})).json()["id"]
        changed = await api("PUT", f"/routes/{rid}", NOTES_ADMIN, json=hijack)
        assert changed.status_code == 403, changed.text


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL server of this test's own: the test stops it."""
    with running_cluster() as cluster:
        yield cluster


@pytest.mark.timeout(240)
def test_logs_follow_survives_a_database_restart(own_cluster: PgCluster,
                                                tmp_path: Path) -> None:
    """The gateways ride out a PostgreSQL restart; `mcp-gateway logs --follow` against
    the same database died at its first failed poll, after printing asyncpg's 20-line
    traceback ("Failed to restore the pool connection floor; retrying").  A follower
    says the store is unreachable, in a line, keeps following, and says when it is back."""
    url = own_cluster.create_database()

    async def migrate() -> None:  # the schema, as a gateway would have made it
        await (await open_store(url)).close()

    anyio.run(migrate)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fast_mcp_gateway", "logs", "--db", url, "--follow"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()  # the first page (empty) is out: it is following
        own_cluster.stop()
        said = proc.stderr.readline()  # blocks until the follower says something
        assert "unreachable" in said and "still following" in said, said
        assert proc.poll() is None, f"logs --follow exited ({proc.returncode})"
        own_cluster.start()
        said = proc.stderr.readline()
        assert "reachable again" in said, said
        assert proc.poll() is None
    finally:
        proc.kill()
        _, rest = proc.communicate(timeout=60)
    assert "Traceback" not in rest, rest


async def test_a_jwt_without_an_expiry_is_refused(tmp_path: Path) -> None:
    """A JWT access token must carry `exp` (RFC 9068, section 2.2).  One without it was
    accepted, for ever: a token lifted once from a log or a proxy stays valid until the
    identity provider's key is rotated.  The same token with an `exp` is accepted."""
    pair = RSAKeyPair.generate()
    auth = {"jwt": {"public_key": pair.public_key, "issuer": "https://idp.test/",
                    "audience": "mcp-gateway"}}
    key = pair.private_key.get_secret_value()
    now = int(time.time())
    claims = {"iss": "https://idp.test/", "aud": "mcp-gateway", "sub": "bob@idp",
              "scope": "tools", "iat": now}
    expiring = jwt.encode({**claims, "exp": now + 600}, key, algorithm="RS256")
    forever = jwt.encode(claims, key, algorithm="RS256")
    nobody = jwt.encode({k: v for k, v in claims.items() if k != "sub"} | {"exp": now + 600},
                        key, algorithm="RS256")  # no subject: every such caller was "unknown"
    async with serving(tmp_path, {"notes": demo("notes")}, auth=False,
                       options={"auth": auth}) as (api, _):
        assert (await api("GET", "/servers", expiring)).status_code == 200
        refused = await api("GET", "/servers", forever)
        assert refused.status_code == 401, refused.text
        refused = await api("GET", "/servers", nobody)
        assert refused.status_code == 401, refused.text


async def test_the_dashboard_shows_the_servers_while_postgresql_is_down(
        own_cluster: PgCluster) -> None:
    """While PostgreSQL is down the gateway serves calls and GET /api/v1/servers from
    memory, but every dashboard page but Live answered 503 "PostgreSQL ... unreachable":
    in an incident the overview and a server's page (state, replicas, actions) are gone
    exactly when an operator needs them.  They should show what the gateway knows, with
    the store's problem named (history, charts and logs can wait for the store)."""
    url = own_cluster.create_database()
    gateway = make_gateway({"notes": demo("notes")}, db=url,
                           options={"auth": {"tokens": [
                               {"name": "ops", "token": OPS, "scopes": ["admin"]}]}})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        await _login(http, base, OPS)
        await anyio.to_thread.run_sync(own_cluster.stop)
        listed = await http.get(base + "/api/v1/servers",
                                headers={"Authorization": f"Bearer {OPS}"})
        assert listed.status_code == 200  # the gateway itself knows its servers
        for path in ("/ui/", "/ui/servers/notes"):
            page = await http.get(base + path)
            assert page.status_code == 200, (path, page.status_code, page.text[-600:])
            assert "notes" in page.text and "unreachable" in page.text, path


async def test_every_rest_error_has_the_one_shape_even_for_a_newline_in_a_name(
        tmp_path: Path) -> None:
    """README: "Every error has one shape".  A server name holding an encoded line feed
    (schemathesis found it on every /servers/{name}... and /stats/.../{name} path) got
    Starlette's bare `Not Found` in text/plain; `a%0A` alone gets the JSON shape."""
    async with serving(tmp_path, {"notes": demo("notes")}) as (api, _):
        for path in ("/servers/a%0Ab", "/servers/a%0Ab/tools", "/stats/tools/x%0Ay"):
            response = await api("GET", path, OPS)
            assert response.headers["content-type"].startswith("application/json"), (
                path, response.status_code, response.text)
            assert_error(response, 404, "not_found")


async def test_a_created_route_says_when_it_was_created(tmp_path: Path) -> None:
    """POST /api/v1/routes answered `"created_at": null`; GET /routes shows the same rule
    with its time.  The 201 body should be the rule as stored."""
    async with serving(tmp_path, {"notes": demo("notes")}) as (api, _):
        created = await api("POST", "/routes", OPS, json={"pattern": "x", "target": "notes"})
        assert created.status_code == 201, created.text
        listed = (await api("GET", "/routes", OPS)).json()["routes"]
        assert created.json() == listed[0]


async def test_two_registrations_of_one_name_at_once_are_one_201_and_one_409(
        tmp_path: Path) -> None:
    """POST /api/v1/servers is 201, or 409 if the name exists.  Two at once (two
    operators, two CI jobs, or the same job through two instances behind no balancer)
    both got 201 and two add_server audit entries; one registration silently replaced
    the other, so one caller holds a 201 for a configuration that is not there."""
    async with serving(tmp_path, {"notes": demo("notes")}) as (api, _):
        statuses: list[int] = []

        async def register(description: str) -> None:
            config = {**demo("notes"), "description": description}
            response = await api("POST", "/servers", OPS,
                                 json={"name": "twin", "config": config})
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            group.start_soon(register, "first")
            group.start_soon(register, "second")
        assert sorted(statuses) == [201, 409], statuses


async def test_the_recorder_queue_depth_counts_the_records_held_for_postgresql(
        own_cluster: PgCluster) -> None:
    """While PostgreSQL is down the call records are held and written when it is back
    (none lost: good), but `mcp_gateway_recorder_queue_depth` ("call records waiting to
    be written") stayed 0 with 20 held, and nothing else in /metrics or /health/servers
    changes: a Prometheus alert cannot see that the gateway lost its database."""
    url = own_cluster.create_database()
    gateway = make_gateway({"notes": demo("notes")}, db=url)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http:
        await anyio.to_thread.run_sync(own_cluster.stop)
        async with Client(f"{base}/mcp") as host:
            tool = sorted(t.name for t in await host.list_tools())[0]
            for _ in range(20):
                await host.call_tool(tool, {}, raise_on_error=False)

        async def sample(name: str) -> float:
            text = (await http.get(base + "/metrics")).text
            return next(s.value for f in text_string_to_metric_families(text)
                        for s in f.samples if s.name == name)

        recorder = gateway.recorder
        assert recorder is not None
        await until(lambda: recorder.store_unavailable, 120)  # its first failed write
        assert await sample("mcp_gateway_store_up") == 0
        assert await sample("mcp_gateway_recorder_queue_depth") >= 20
        await anyio.to_thread.run_sync(own_cluster.start)
        assert await recorder.flushed(120)  # back: the held records are written
        await until(lambda: not gateway.control.store_lost, 120)  # and the change feed
        assert await sample("mcp_gateway_store_up") == 1
        assert await sample("mcp_gateway_recorder_queue_depth") == 0


async def test_an_idle_gateway_reports_the_store_down_while_postgresql_is(
        own_cluster: PgCluster) -> None:
    """`mcp_gateway_store_up` ("alert on it") was fed by call-record writes only: a
    gateway taking no calls while PostgreSQL was down said 1 for the whole outage, while
    its change feed logged "lost the store" and REST answered 503 store_unavailable."""
    url = own_cluster.create_database()
    gateway = make_gateway({"notes": demo("notes")}, db=url)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30) as http:

        async def store_up() -> float:
            text = (await http.get(base + "/metrics")).text
            return next(s.value for f in text_string_to_metric_families(text)
                        for s in f.samples if s.name == "mcp_gateway_store_up")

        assert await store_up() == 1
        await anyio.to_thread.run_sync(own_cluster.stop)
        await until(lambda: gateway.control.store_lost, 120)  # the feed's first failure
        assert await store_up() == 0
        await anyio.to_thread.run_sync(own_cluster.start)
        await until(lambda: not gateway.control.store_lost, 120)
        assert await store_up() == 1
