"""A token restricted to some servers learns no other server's name, on any surface
(session 18, trial 4: the HTTP service walked as a team's new operator would).

Each test reproduces one finding over real HTTP on 127.0.0.1, with the demo servers as
real stdio subprocesses and a real SQLite store; each failed on the code it was written
against.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import StreamableHttpTransport

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.front.calls import routed_away
from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.upstream.model import UpstreamState
from tests.fixtures import (
    WITHIN,
    alpha_server,
    beta_server,
    make_gateway,
    memory_entry,
    serve_http,
    stdio_entry,
    until,
    watched_server,
)
from tests.test_admin_restricted import AUTH, NOTES_ADMIN
from tests.test_rest import ALICE, OPS, demo, serving
from tests.test_rest import AUTH as REST_AUTH
from tests.test_startup import slow_entry

pytestmark = pytest.mark.anyio
MINE = "mgw_mine-only-5b0c2e9d"  # a token of scope tools, restricted to some servers


def narrowable(config: Path, entries: dict[str, Any]) -> Callable[[list[str]], dict[str, Any]]:
    """``write(servers)``: ``config`` as a servers.yaml of ``entries`` whose auth has the
    admin token ``OPS`` and ``MINE`` limited to ``servers``; the auth section written."""
    def write(servers: list[str]) -> dict[str, Any]:
        auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                           {"name": "mo", "token": MINE, "scopes": ["tools"],
                            "servers": servers}]}
        config.write_text(json.dumps({"gateway": {"auth": auth}, "servers": entries}))
        return auth

    return write


def watch_and_tick(tmp_path: Path) -> tuple[Gateway, Callable[[list[str]], dict[str, Any]]]:
    """A gateway of two watched servers, 'watch' and 'tick' (handshake era), whose
    servers.yaml ``write`` narrows ``MINE`` to some of them (both, to start with)."""
    entries = {"watch": memory_entry("watch", protocol="legacy"),
               "tick": memory_entry("tick", protocol="legacy")}
    config = tmp_path / "servers.yaml"
    write = narrowable(config, entries)
    return make_gateway(entries, {"watch": watched_server(), "tick": watched_server()},
                        options={"auth": write(["watch", "tick"])}, config=config), write


SERVERS = {"notes": demo("notes"), "clock": demo("clock")}



def asker_entry(tmp_path: Path) -> dict[str, Any]:
    """``asker.py`` over stdio: its ``log_later`` tool logs once its ``go`` file exists."""
    record = tmp_path / "asker.jsonl"
    return stdio_entry("asker.py", "stdio", "--record", str(record), protocol="legacy")


def logged(logs: dict[str, list[str]], who: str) -> Any:
    """A log handler putting each log's ``logger:data`` into ``logs[who]``."""
    async def on_log(message: Any) -> None:
        logs[who].append(f"{message.logger}:{message.data}")
    return on_log


async def asking_for_logs(*hosts: Client[Any]) -> None:
    for host in hosts:
        await host.list_tools()  # a host that lists is told of changes and logs
        await host.set_logging_level("debug")


async def other_then_mine_log(ops: Client[Any], tmp_path: Path,
                              logs: dict[str, list[str]]) -> None:
    """Servers 'other', then 'mine' log with no call in flight (each seen by ``ops``, who
    may use both); then wait for the first log host 'mo' gets: 'other's would come first."""
    for server, go in (("other", tmp_path / "go-other"), ("mine", tmp_path / "go-mine")):
        await ops.call_tool(f"{server}_log_later", {"text": f"from {server}", "go": str(go)})
        go.touch()  # it logs now, with no call in flight
        await until(lambda server=server: f"{server}.asker:from {server}" in logs["ops"])
    await until(lambda: len(logs["mo"]) >= 1)

async def test_a_broken_route_rule_names_no_server_to_a_caller_outside_it(
        tmp_path: Path) -> None:
    """A rule sending a restricted caller's tool to a server lacking it answered "route
    #1 (wildcard 'notes_*') sends 'notes_list_notes' to server 'clock', which has no tool
    'list_notes'": the rule and a server outside the caller's set.  Now such a caller
    gets the words it gets for a working rule to that server (and does not list the
    tool: ``tests/test_route_scope.py``); an unrestricted caller still gets the rule and
    how to fix it."""
    async with serving(tmp_path, SERVERS) as (api, base):
        made = await api("POST", "/routes", OPS, json={
            "pattern": "notes_*", "match": "wildcard", "target": "clock"})
        assert made.status_code == 201, made.text
        unknown = routed_away("notes_list_notes", Principal("alice", frozenset({"tools"}),
                                                            frozenset({"notes"})))
        for mode in ("auto", "2026-07-28"):  # the full path, and the HTTP express lane
            async with Client(StreamableHttpTransport(f"{base}/mcp", auth=ALICE),
                              mode=mode) as alice:
                assert "notes_list_notes" not in {t.name for t in await alice.list_tools()}
                got = await alice.call_tool("notes_list_notes", {}, raise_on_error=False)
                assert got.is_error and got.content[0].text == unknown, (mode, got.content)  # type: ignore[union-attr]
        async with Client(f"{base}/mcp", auth=OPS) as ops:
            got = await ops.call_tool("notes_list_notes", {}, raise_on_error=False)
            assert got.is_error
            assert "route #1 (wildcard 'notes_*') sends 'notes_list_notes' to server " \
                   "'clock', which has no tool 'list_notes'" in got.content[0].text  # type: ignore[union-attr]
        # A rule whose server was removed since: the same, whoever asks.
        assert (await api("DELETE", "/servers/clock", OPS)).status_code == 200
        async with Client(f"{base}/mcp", auth=ALICE) as alice:
            got = await alice.call_tool("notes_list_notes", {}, raise_on_error=False)
            assert got.is_error and got.content[0].text == unknown, got.content  # type: ignore[union-attr]


async def test_another_servers_alert_rule_is_absent_to_a_restricted_admin(
        tmp_path: Path) -> None:
    """Over MCP, updating or deleting an alert rule on a server outside the token's set
    was refused "... not on server 'clock'", naming the server of a rule the token is
    never shown (REST answered 404); adding one under its name was told "exists; update
    it", which it cannot.  Now: absent, and "choose another name"."""
    async with serving(tmp_path, SERVERS, auth=False, options={"auth": AUTH}) as (api, base):
        hidden = {"name": "team-b", "server": "clock", "metric": "not_ready"}
        assert (await api("POST", "/alerts/rules", OPS, json=hidden)).status_code == 201
        mine = {**hidden, "server": "notes"}
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:
            for tool, arguments in [
                ("gateway_update_alert_rule", {"name": "team-b", "rule": mine}),
                ("gateway_delete_alert_rule", {"name": "team-b"}),
            ]:
                got = await carol.call_tool(tool, arguments, raise_on_error=False)
                assert got.is_error, tool
                assert got.content[0].text == "no alert rule named 'team-b'", tool  # type: ignore[union-attr]
            added = await carol.call_tool("gateway_add_alert_rule", {"rule": mine},
                                          raise_on_error=False)
            taken = ("an alert rule named 'team-b' exists, on a server this token does not "
                     "manage; choose another name")
            assert added.is_error and added.content[0].text == taken  # type: ignore[union-attr]
        rest = await api("POST", "/alerts/rules", NOTES_ADMIN, json=mine)
        assert rest.status_code == 409 and rest.json()["error"]["message"] == taken
        ops = await api("POST", "/alerts/rules", OPS, json=mine)  # it may update it: told so
        assert ops.status_code == 409
        assert ops.json()["error"]["message"] == (
            "an alert rule named 'team-b' exists; update it, or choose another name")


async def test_ready_names_a_server_only_to_a_token_that_may_use_it(tmp_path: Path) -> None:
    """``/ready`` takes no token (probes send none), and with ``gateway.auth`` it named
    every server to anyone, a restricted token's holder included ("ready_servers":
    ["clock", "notes"], and each starting one in its reason).  Now the status and the
    counts are everyone's, and the names are those of the caller's token."""
    release = tmp_path / "release"
    gateway = make_gateway({"notes": demo("notes"), "slow": slow_entry(release)},
                           options={"auth": REST_AUTH}, db=tmp_path / "gateway.db")
    app = gateway.http_app()
    with anyio.fail_after(WITHIN):
        async with serve_http(app, startup=False) as base, \
                httpx2.AsyncClient(base_url=base, timeout=30) as http:

            async def ready(token: str | None = None) -> httpx2.Response:
                return await http.get("/ready", headers={} if token is None else {
                    "Authorization": f"Bearer {token}"})

            starting = await ready(OPS)
            assert starting.status_code == 503 and "slow" in starting.json()["reason"]
            for token in (None, "mgw_not-a-token", ALICE):
                probe = await ready(token)
                assert probe.status_code == 503 and probe.json()["status"] == "starting"
                assert "slow" not in probe.text, (token, probe.text)
            release.touch()
            await app.state.startup_gate.attempted.wait()
            replica = gateway.manager.services["slow"].replicas[0]
            await replica.wait_until(lambda: replica.state is UpstreamState.READY, WITHIN)
            seen = {token: await ready(token) for token in (None, "mgw_not-a-token", ALICE,
                                                             OPS)}
            assert {t: (r.status_code, r.json()["ready"], r.json()["total"])
                    for t, r in seen.items()} == dict.fromkeys(seen, (200, 2, 2))
            assert {t: r.json()["ready_servers"] for t, r in seen.items()} == {
                None: [], "mgw_not-a-token": [], ALICE: ["notes"], OPS: ["notes", "slow"]}


async def test_a_name_collision_names_no_server_outside_the_callers_set(
        tmp_path: Path) -> None:
    """Two servers without a namespace both offer 'add': the later one's is renamed, and
    its server's detail said why: "collides with 'add' of server 'alpha'", to an admin
    restricted to 'beta' too (REST, gateway_server_detail).  Now that admin reads that
    it collides with a name of another server; an unrestricted one still reads which."""
    beta_admin = "mgw_beta-admin-only-3e1a77c0"
    auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                       {"name": "bea", "token": beta_admin, "scopes": ["admin"],
                        "servers": ["beta"]}]}
    gateway = make_gateway({"alpha": memory_entry("alpha", namespace=""),
                            "beta": memory_entry("beta", namespace="")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           options={"auth": auth})
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http:

        async def reasons(token: str) -> dict[str, str | None]:
            got = await http.get("/api/v1/servers/beta",
                                 headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200, got.text
            async with Client(f"{base}/mcp", auth=token) as client:
                detail = await client.call_tool("gateway_server_detail", {"name": "beta"})
            over_mcp = {e["exposed"]: e["renamed_because"]
                        for e in detail.structured_content["exposed"]}  # type: ignore[index]
            assert over_mcp == {e["exposed"]: e["renamed_because"]
                                for e in got.json()["exposed"]}
            return {e: r for e, r in over_mcp.items() if r is not None}

        told = await reasons(beta_admin)
        assert set(told.values()) == {"collides with a name of another server"}, told
        assert len(told) == 3  # the tool 'add', the prompt 'greet', 'urn:alpha:settings'
        full = await reasons(OPS)
        assert set(full) == set(told)
        assert all("of server 'alpha'" in reason for reason in full.values() if reason), full


async def test_a_namespace_taken_by_another_server_is_not_named_to_a_restricted_admin(
        tmp_path: Path) -> None:
    """An admin restricted to 'notes' changing its namespace to one 'clock' uses was told
    "namespace 'clock' is already used by server 'clock'": a way to find the servers a
    token is not shown, one namespace at a time (and it said 'runtime registration' where
    each other refusal names the request)."""
    async with serving(tmp_path, SERVERS, auth=False, options={"auth": AUTH}) as (api, base):
        taken = {"config": {**demo("notes"), "namespace": "clock"}}
        got = await api("PUT", "/servers/notes", NOTES_ADMIN, json=taken)
        assert got.status_code == 422, got.text
        assert got.json()["error"]["message"] == (
            "PUT /api/v1/servers/notes body 'config': server 'notes', field 'namespace': "
            "namespace 'clock' is already used by another server; give 'notes' another "
            "'namespace:'")
        async with Client(f"{base}/mcp", auth=NOTES_ADMIN) as carol:
            refused = await carol.call_tool("gateway_update_server", {
                "name": "notes", "config": taken["config"]}, raise_on_error=False)
            assert refused.is_error
            assert "already used by another server" in refused.content[0].text  # type: ignore[union-attr]
            assert "server 'clock'" not in refused.content[0].text  # type: ignore[union-attr]
        ops = await api("PUT", "/servers/notes", OPS, json=taken)
        assert "namespace 'clock' is already used by server 'clock'" in ops.text


async def test_the_instructions_name_only_the_callers_servers(tmp_path: Path) -> None:
    """The gateway's ``instructions`` give each server's own under its namespace; a token
    restricted to 'notes' was told "## clock\\nCurrent time in any time zone..." in its
    ``initialize`` and ``server/discover`` answers.  Now only its servers'."""
    envelope = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}
    openings = {
        "initialize": ({"protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "raw", "version": "1"}}, {}),
        "server/discover": ({"_meta": envelope}, {"mcp-protocol-version": "2026-07-28",
                                                  "mcp-method": "server/discover"}),
    }
    async with serving(tmp_path, SERVERS) as (api, base):

        async def told(token: str) -> list[str]:
            texts = []
            for method, (params, headers) in openings.items():
                got = await api.http.post(f"{base}/mcp", json={
                    "jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                    headers={"Authorization": f"Bearer {token}",
                             "Accept": "application/json, text/event-stream", **headers})
                assert got.status_code == 200, got.text
                data = next(line for line in got.text.splitlines() if line.startswith("{")
                            or line.startswith("data: "))
                texts.append(json.loads(data.removeprefix("data: "))["result"]["instructions"])
            return texts

        for text in await told(ALICE):
            assert "## notes" in text and "clock" not in text.lower(), text
        for text in await told(OPS):
            assert "## notes" in text and "## clock" in text, text
        async with Client(f"{base}/mcp", auth=ALICE) as alice:
            assert "## notes" in (alice.instructions or "")
            assert "clock" not in (alice.instructions or "").lower()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # logging/setLevel, SEP-2577
@pytest.mark.parametrize("limit", ["token", "profile"])
async def test_logs_between_calls_reach_only_the_hosts_that_may_use_their_server(
        tmp_path: Path, limit: str) -> None:
    """An upstream's log sent while no call is in flight went to every handshake-era
    host that set a level, a token restricted to other servers (or a profile's host)
    included: its logger ("other.asker") and text.  Now only to hosts that may use that
    server.  Both upstreams log on one hub in order: the limited host, which gets its
    own server's log, would have got the other's before it."""
    asker = asker_entry(tmp_path)
    auth = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                       {"name": "mo", "token": MINE, "scopes": ["tools"],
                        "servers": ["mine"]}]}
    gateway = make_gateway({"mine": asker, "other": asker}, options={
        "auth": auth, "profiles": {"mine-only": {"servers": ["mine"]}}})
    logs: dict[str, list[str]] = {"ops": [], "mo": []}

    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=OPS, mode="legacy", log_handler=logged(logs, "ops")) as ops,
        Client(f"{base}/mcp", auth=MINE, mode="legacy", log_handler=logged(logs, "mo"))
        if limit == "token" else Client(f"{base}/mcp/p/mine-only", auth=OPS, mode="legacy",
                                        log_handler=logged(logs, "mo")) as mo,
    ):
        await asking_for_logs(ops, mo)
        await other_then_mine_log(ops, tmp_path, logs)
    assert logs["mo"] == ["mine.asker:from mine"]


async def test_a_profiles_instructions_are_its_servers_alone(tmp_path: Path) -> None:
    """A host at /mcp/p/<profile> lists that profile's servers' tools only, but was told
    every server's instructions: a model read "## notes ..." and had no notes tool.  Now
    the profile's servers' alone, narrowed further by a restricted token (to which a
    profile of none of its servers is unknown: http/profile_paths.py)."""
    profiles = {"timey": {"servers": ["clock"]}, "both": {"servers": ["clock", "notes"]}}
    async with serving(tmp_path, SERVERS, options={"profiles": profiles}) as (_api, base):
        for mode in ("legacy", "2026-07-28"):
            async with Client(StreamableHttpTransport(f"{base}/mcp/p/timey", auth=OPS),
                              mode=mode) as ops:
                tools = {t.name for t in await ops.list_tools()}
                told = await _instructions(ops, base + "/mcp/p/timey", OPS)
            assert "clock_now" in tools and "notes_add_note" not in tools
            assert "## clock" in told and "notes" not in told, (mode, told)
        async with Client(f"{base}/mcp/p/both", auth=ALICE) as alice:  # notes only
            told = await _instructions(alice, base + "/mcp/p/both", ALICE)
        assert "## notes" in told and "clock" not in told.lower(), told
        async with httpx2.AsyncClient(timeout=30) as http:
            unknown = await http.post(f"{base}/mcp/p/timey", json={
                "jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={
                "Authorization": f"Bearer {ALICE}",
                "Accept": "application/json, text/event-stream"})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"]["message"] == (
            "unknown profile 'timey'; known profiles: both (gateway.profiles in servers.yaml "
            "as this gateway started with it: a profile added since is served after a restart)")


async def _instructions(client: Client[Any], url: str, token: str) -> str:
    """What the gateway told ``client`` (a 2026-07-28 one: its server/discover answer)."""
    if client.instructions is not None:
        return client.instructions
    envelope = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}
    async with httpx2.AsyncClient(timeout=30) as http:
        got = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                                         "params": {"_meta": envelope}},
                              headers={"Authorization": f"Bearer {token}",
                                       "Accept": "application/json, text/event-stream",
                                       "mcp-protocol-version": "2026-07-28",
                                       "mcp-method": "server/discover"})
    data = next(line for line in got.text.splitlines() if line.startswith(("{", "data: ")))
    return str(json.loads(data.removeprefix("data: "))["result"]["instructions"])


async def test_ready_names_no_server_to_a_rebound_web_page(tmp_path: Path) -> None:
    """Without ``gateway.auth`` the servers' health and the metrics are refused to a web
    page on a DNS name rebound to 127.0.0.1 (a foreign Host or Origin), but /ready, which
    a probe reaches with any Host, named every server to it.  Now it answers that page
    with its status and counts alone."""
    gateway = make_gateway({"clock": demo("clock")}, db=tmp_path / "gateway.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http:
        local = await http.get("/ready")
        assert local.status_code == 200 and local.json()["ready_servers"] == ["clock"]
        for rebound in ({"Host": "evil.example"},
                        {"Origin": "http://evil.example"}):
            page = await http.get("/ready", headers=rebound)
            assert page.status_code == 200, (rebound, page.text)
            assert page.json()["ready"] == page.json()["total"] == 1
            assert "clock" not in page.text, (rebound, page.text)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # logging/setLevel, SEP-2577
async def test_logs_between_calls_follow_a_reload_that_narrows_the_tokens_servers(
        tmp_path: Path) -> None:
    """The servers whose logs an open session gets were the token's as it was when the
    host last listed: a reload that took 'other' from the token's ``servers`` left the
    session getting 'other's logs until it listed again.  Now the running config's."""
    asker = asker_entry(tmp_path)
    entries = {"mine": asker, "other": asker}
    config = tmp_path / "servers.yaml"
    write = narrowable(config, entries)
    gateway = make_gateway(entries, options={"auth": write(["mine", "other"])}, config=config)
    logs: dict[str, list[str]] = {"ops": [], "mo": []}

    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=OPS, mode="legacy", log_handler=logged(logs, "ops")) as ops,
        Client(f"{base}/mcp", auth=MINE, mode="legacy", log_handler=logged(logs, "mo")) as mo,
    ):
        await asking_for_logs(ops, mo)
        write(["mine"])
        assert (await gateway.reload_config()).error is None
        await other_then_mine_log(ops, tmp_path, logs)
    assert logs["mo"] == ["mine.asker:from mine"]


async def test_resource_updates_follow_a_reload_that_narrows_the_tokens_servers(
        tmp_path: Path) -> None:
    """A handshake-era host subscribed to a resource went on getting its updates (the
    URI names the server) after a reload took that server from its token's ``servers``.
    Now each update is sent only while the token may use the server.  Both hosts are
    subscribed; the other server's update, sent after, is the one the narrowed host gets
    first: the watched one would have come before it."""
    gateway, write = watch_and_tick(tmp_path)
    got: dict[str, list[str]] = {"ops": [], "mo": []}

    class Updates(MessageHandler):
        def __init__(self, who: str) -> None:
            self.who = who

        async def on_resource_updated(self, message: Any) -> None:
            got[self.who].append(str(message.params.uri))

    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=OPS, mode="legacy", message_handler=Updates("ops")) as ops,
        Client(f"{base}/mcp", auth=MINE, mode="legacy", message_handler=Updates("mo")) as mo,
    ):
        for host in (ops, mo):
            for server in ("watch", "tick"):
                await host.session.subscribe_resource(f"watch://{server}/counter")
        write(["tick"])
        assert (await gateway.reload_config()).error is None
        for server in ("watch", "tick"):
            await ops.call_tool(f"{server}_bump", {})
            await until(lambda server=server: f"watch://{server}/counter" in got["ops"])
        await until(lambda: len(got["mo"]) >= 1)
    # Each upstream tells each of its subscriptions (one per host): one or two of each.
    assert set(got["mo"]) == {"watch://tick/counter"}, got


async def test_a_2026_listen_stream_follows_a_reload_that_narrows_the_tokens_servers(
        tmp_path: Path) -> None:
    """The same for a 2026-07-28 host's ``subscriptions/listen`` stream, whose updates
    came from the SDK's event bus, filtered only by the URIs the stream named: after the
    reload it went on getting the server's updates.  The watched update is published
    first; the narrowed stream's first event must be the other server's."""
    from mcp.client.subscriptions import ResourceUpdated, listen

    gateway, write = watch_and_tick(tmp_path)
    uris = [f"watch://{server}/counter" for server in ("watch", "tick")]
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=OPS, mode="legacy") as ops,
        Client(f"{base}/mcp", auth=MINE) as mo,
    ):
        assert mo.protocol_version == "2026-07-28"
        async with listen(mo.session, resource_subscriptions=uris) as stream:
            write(["tick"])
            assert (await gateway.reload_config()).error is None
            for server in ("watch", "tick"):
                await ops.call_tool(f"{server}_bump", {})
            with anyio.fail_after(WITHIN):
                event = await stream.__anext__()
    assert isinstance(event, ResourceUpdated) and event.uri == "watch://tick/counter", event


async def test_a_session_whose_client_sends_a_new_token_keeps_its_updates(
        tmp_path: Path) -> None:
    """A session's updates between its requests were filtered by the token it subscribed
    with, for good: a client that then sent another valid token (a refreshed JWT, or the
    token a rotation put in place) lost them once the first expired or was removed.  Now
    each request of the session makes its token of now the one that stands."""
    entries = {"watch": memory_entry("watch", protocol="legacy")}
    first, second = "mgw_first-token-4c1d7e20", "mgw_second-token-9a83b6f1"
    config = tmp_path / "servers.yaml"

    def auth(*tokens: str) -> dict[str, Any]:
        return {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}, *(
            {"name": f"mo{n}", "token": t, "scopes": ["tools"], "servers": ["watch"]}
            for n, t in enumerate(tokens))]}

    def write(*tokens: str) -> None:
        config.write_text(json.dumps({"gateway": {"auth": auth(*tokens)}, "servers": entries}))

    write(first, second)
    gateway = make_gateway(entries, {"watch": watched_server()},
                           options={"auth": auth(first, second)}, config=config)
    got: list[str] = []

    class Updates(MessageHandler):
        async def on_resource_updated(self, message: Any) -> None:
            got.append(str(message.params.uri))

    class Switching(httpx2.Auth):
        token = first

        def auth_flow(self, request: httpx2.Request) -> Any:
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request

    switching = Switching()
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=OPS, mode="legacy") as ops,
        Client(StreamableHttpTransport(f"{base}/mcp", auth=switching), mode="legacy",
               message_handler=Updates()) as mo,
    ):
        await mo.session.subscribe_resource("watch://watch/counter")
        await ops.call_tool("watch_bump", {})
        await until(lambda: len(got) == 1)
        write(second)   # the first token is rotated out
        assert (await gateway.reload_config()).error is None
        switching.token = second
        # A request with the token of now: the upstream, let go of once the mover saw
        # no holder's credential standing, is subscribed again (or never let go of).
        await mo.list_tools()
        mover = gateway.host_requests.mover
        await until(lambda: mover.followed == gateway.manager.view.generation
                    and gateway.hub.home("watch://watch/counter", "watch") is not None)
        await mo.call_tool("watch_bump", {})
        await until(lambda: len(got) == 2)
        assert got == ["watch://watch/counter"] * 2


async def test_a_host_lets_go_of_its_subscription_after_a_reload_narrowed_its_token(
        tmp_path: Path) -> None:
    """After a reload took the server from its token, the host's ``resources/unsubscribe``
    was refused as "Unknown resource", so the gateway's subscription upstream stayed for
    good.  Its own subscription is let go of (naming nothing it had not subscribed to)."""
    gateway, write = watch_and_tick(tmp_path)
    async with (
        serve_http(gateway.http_app("http")) as base,
        Client(f"{base}/mcp", auth=MINE, mode="legacy") as mo,
    ):
        await mo.session.subscribe_resource("watch://watch/counter")
        write(["tick"])
        assert (await gateway.reload_config()).error is None
        await mo.session.unsubscribe_resource("watch://watch/counter")
        assert "watch://watch/counter" not in gateway.hub._subscribers
        with pytest.raises(Exception, match="Unknown resource"):  # not subscribed: unknown
            await mo.session.unsubscribe_resource("watch://watch/counter")
