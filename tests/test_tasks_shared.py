"""MCP tasks through several gateway instances (shared ``request_state_keys``).

Two real gateways served over HTTP on 127.0.0.1, in front of one real streamable-HTTP
upstream process whose tools run as tasks (``tests/servers/tasker.py http``; one for
the module, ``tasker_url``: each test's gates and tasks are its own), and each
with a stdio replica of its own of the same program: a task created through one is
followed, updated and cancelled through the other (the host's next request landed
elsewhere, as behind a load balancer); another caller, a changed id and an id of
another key ring are "Unknown task"; a stdio server's task asked of the other
instance gets an error naming the instance that holds it.  With a shared store
(PostgreSQL) a task's end seen by both instances is recorded once.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from fast_mcp_gateway import Gateway
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.front.task_book import TASK_PREFIX, TaskRecord
from fast_mcp_gateway.front.task_ids import TaskIds
from fast_mcp_gateway.front.tasks import UNMASKABLE, WITHHELD
from tests.fixtures import PY, SERVERS, WITHIN, make_gateway, stdio_entry
from tests.test_asks_routing import _port, until
from tests.test_request_state import KEY, served
from tests.test_tasks import ALICE, ALICE_SHA, BOB, BOB_SHA, OPT_IN, TERMINAL, post

pytestmark = pytest.mark.anyio

TOKENS = [{"name": "alice", "sha256": ALICE_SHA, "scopes": ["tools"]},
          {"name": "bob", "sha256": BOB_SHA, "scopes": ["tools"]}]
OTHER_KEY = "o" * 16 + "0123456789abcdef-another-ring"


@pytest.fixture(scope="module")
def tasker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One tasker process serving streamable HTTP, shared by the module's tests (each
    holds gates and tasks of its own; the test whose upstream goes away starts its
    own); its MCP URL."""
    port_file = tmp_path_factory.mktemp("tasker") / "port"
    process = subprocess.Popen([PY, str(SERVERS / "tasker.py"), "http", str(port_file)])
    try:
        deadline = time.monotonic() + WITHIN
        while not _port(port_file):
            assert process.poll() is None, f"the tasker exited ({process.returncode})"
            assert time.monotonic() < deadline, "the tasker never wrote its port"
            time.sleep(0.02)  # another process's progress: nothing to wait on
        yield f"http://127.0.0.1:{_port(port_file)}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def gateway(url: str, name: str, keys: list[str], db: str | None = None,
            isolation: str = "shared", tokens: list[dict[str, Any]] = TOKENS) -> Gateway:
    """A gateway reaching ``tasker`` by ``url`` and running ``local`` (the same program)
    as a stdio process of its own."""
    return make_gateway({"tasker": {"url": url, "protocol": "2026-07-28",
                                    "isolation": isolation},
                         "local": stdio_entry("tasker.py", protocol="2026-07-28")},
                        options={"auth": {"tokens": tokens}}, request_state_keys=keys,
                        instance_id=name, call_timeout=60, db=db)


async def created(http: httpx2.AsyncClient, tool: str, arguments: dict[str, Any],
                  token: str = ALICE) -> str:
    """A task made by ``tool``; its gateway id."""
    reply = await post(http, token, "tools/call", {"name": tool, "arguments": arguments},
                       OPT_IN)
    assert reply["result"]["resultType"] == "task", reply
    task_id = reply["result"]["taskId"]
    assert isinstance(task_id, str) and task_id.startswith(TASK_PREFIX)
    return task_id


async def get(http: httpx2.AsyncClient, task_id: str, token: str = ALICE) -> dict[str, Any]:
    return await post(http, token, "tasks/get", {"taskId": task_id}, OPT_IN)


async def until_ended(http: httpx2.AsyncClient, task_id: str) -> dict[str, Any]:
    """``tasks/get`` until the task ends (the upstream's background work: polled)."""
    with anyio.fail_after(30):
        while True:
            task = (await get(http, task_id))["result"]
            if task["status"] in TERMINAL:
                return dict(task)
            await anyio.sleep(0.02)  # the host's poll interval


async def release(http: httpx2.AsyncClient, gate: str) -> None:
    reply = await post(http, ALICE, "tools/call", {"name": "tasker_release",
                                                   "arguments": {"gate": gate}})
    assert reply["result"]["content"][0]["text"] == f"opened {gate}", reply


def unknown(reply: dict[str, Any], task_id: str) -> bool:
    return bool(reply.get("error", {}).get("message", "").startswith(
        f"Unknown task: {task_id!r}."))


async def test_a_task_created_on_one_gateway_is_followed_and_cancelled_on_another(
        tasker_url: str) -> None:
    a, b = gateway(tasker_url, "gw-a", [KEY]), gateway(tasker_url, "gw-b", [KEY])
    async with served(a, b) as (to_a, to_b):
        task_id = await created(to_a, "tasker_hold", {"gate": "s1"})
        polled = await get(to_b, task_id)
        assert polled["result"]["status"] == "working", polled
        assert polled["result"]["taskId"] == task_id   # the ids swapped back
        assert unknown(await get(to_b, task_id, BOB), task_id)   # another caller
        assert unknown(await get(to_a, task_id, BOB), task_id)
        update = await post(to_b, ALICE, "tasks/update",
                            {"taskId": task_id, "inputResponses": {}}, OPT_IN)
        assert update["result"]["resultType"] == "complete", update
        await release(to_a, "s1")
        done = await until_ended(to_b, task_id)
        assert (done["status"], done["taskId"]) == ("completed", task_id)
        assert done["result"]["content"] == [{"type": "text", "text": "released s1"}]
        assert (await until_ended(to_a, task_id))["status"] == "completed"

        # Created on b, cancelled on a, seen cancelled on b.
        held = await created(to_b, "tasker_hold", {"gate": "s2"})
        cancel = await post(to_a, ALICE, "tasks/cancel", {"taskId": held}, OPT_IN)
        assert cancel["result"]["resultType"] == "complete", cancel
        assert unknown(await post(to_a, BOB, "tasks/cancel", {"taskId": held}, OPT_IN),
                       held)
        assert (await until_ended(to_b, held))["status"] == "cancelled"


async def test_a_per_client_servers_task_is_followed_on_the_callers_session_elsewhere(
        tasker_url: str) -> None:
    """``isolation: per_client``: the instance that did not create the task follows it
    on the caller's own session of the server (opened for it), as the caller's calls."""
    a, b = (gateway(tasker_url, name, [KEY], isolation="per_client")
            for name in ("gw-a", "gw-b"))
    async with served(a, b) as (to_a, to_b):
        task_id = await created(to_a, "tasker_hold", {"gate": "s4"})
        assert (await get(to_b, task_id))["result"]["status"] == "working"
        service = b.manager.services["tasker"]
        assert service.clients is not None and service.clients.created == 1
        assert unknown(await get(to_b, task_id, BOB), task_id)
        assert service.clients.created == 1   # none opened for a caller refused
        await release(to_b, "s4")
        assert (await until_ended(to_b, task_id))["status"] == "completed"


async def test_a_task_whose_upstream_is_gone_fails_on_either_instance(
        tmp_path: Path) -> None:
    """The upstream process ends while its task runs: the instance that did not create
    the task (adopting it then) and the one that did both answer a failed task naming
    the replica; its end is recorded by each."""
    port_file = tmp_path / "tasker-port"
    process = await anyio.open_process([PY, str(SERVERS / "tasker.py"), "http", str(port_file)])
    try:
        await until(lambda: _port(port_file) != "")
        url = f"http://127.0.0.1:{_port(port_file)}/mcp"
        a, b = gateway(url, "gw-a", [KEY]), gateway(url, "gw-b", [KEY])
        async with served(a, b) as (to_a, to_b):
            task_id = await created(to_a, "tasker_hold", {"gate": "s5"})
            process.kill()
            await process.wait()
            for http in (to_b, to_a):
                task = (await get(http, task_id))["result"]
                assert (task["taskId"], task["status"]) == (task_id, "failed"), task
                assert "of server 'tasker' that runs this task is unreachable" in \
                    task["statusMessage"], task
                cancel = await post(http, ALICE, "tasks/cancel", {"taskId": task_id}, OPT_IN)
                assert "has failed" in cancel["error"]["message"], cancel
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_stdio_servers_task_asked_of_another_gateway_is_refused_naming_why(
        tasker_url: str) -> None:
    a, b = gateway(tasker_url, "gw-a", [KEY]), gateway(tasker_url, "gw-b", [KEY])
    async with served(a, b) as (to_a, to_b):
        task_id = await created(to_a, "local_hold", {"gate": "s3"})
        for method in ("tasks/get", "tasks/cancel"):
            refused = await post(to_b, ALICE, method, {"taskId": task_id}, OPT_IN)
            message = refused["error"]["message"]
            assert message.startswith(f"Task {task_id!r} cannot be served by this "
                                      "gateway instance ('gw-b')"), refused
            assert "stdio process of the instance 'gw-a'" in message
            # Another caller learns nothing about it.
            assert unknown(await post(to_b, BOB, method, {"taskId": task_id}, OPT_IN),
                           task_id)
        # Where it lives, it is served (and cancelled).
        assert (await get(to_a, task_id))["result"]["status"] == "working"
        await post(to_a, ALICE, "tasks/cancel", {"taskId": task_id}, OPT_IN)
        assert (await until_ended(to_a, task_id))["status"] == "cancelled"


async def test_after_a_restart_an_instance_serves_its_url_servers_tasks_not_its_stdio_ones(
        tasker_url: str) -> None:
    """The same instance id before (``a``) and after (``again``) a restart: its book is
    gone; a task of a server reached by URL is served again, a stdio one is refused
    saying why.  And where a caller may not use the server (here: its token on that
    instance names other servers), the task is unknown."""
    a, again = gateway(tasker_url, "gw-a", [KEY]), gateway(tasker_url, "gw-a", [KEY])
    async with served(a, again) as (to_a, to_again):
        remote = await created(to_a, "tasker_hold", {"gate": "s6"})
        local = await created(to_a, "local_hold", {"gate": "s6"})
        assert (await get(to_again, remote))["result"]["status"] == "working"
        refused = (await get(to_again, local))["error"]["message"]
        assert "is a stdio process of this instance, which no longer holds the task" \
            in refused, refused
        await release(to_again, "s6")
        assert (await until_ended(to_again, remote))["status"] == "completed"
    limited = [{**TOKENS[0], "servers": ["local"]}, TOKENS[1]]
    b = gateway(tasker_url, "gw-b", [KEY])
    c = gateway(tasker_url, "gw-c", [KEY], tokens=limited)
    async with served(b, c) as (to_b, to_c):
        remote = await created(to_b, "tasker_crunch", {"n": 7})
        assert unknown(await get(to_c, remote), remote)


def test_a_task_id_and_a_request_state_are_sealed_apart() -> None:
    """Task ids are sealed under keys derived for them: the same shared key's
    ``requestState`` seal is no task id (nor is a task id a ``requestState``)."""
    from mcp.server.request_state import InvalidRequestState, RequestStateSecurity

    from fast_mcp_gateway.front.task_ids import TaskClaims

    claims = TaskClaims(server="s", transport="http", url="u", upstream_id="up",
                        owner=("token", "alice"), expires_at=4e9, created="", instance="i",
                        exposed="s_t", start=None, unmaskable=False)
    states = RequestStateSecurity(keys=[KEY]).codec
    forged = TASK_PREFIX + states.seal(claims.model_dump_json().encode())
    assert TaskIds([KEY], "i").open(forged) is None
    task_id = TaskIds([KEY], "i").id_for(_record(), 60.0, unmaskable=False)
    with pytest.raises(InvalidRequestState):
        states.unseal(task_id.removeprefix(TASK_PREFIX))


@pytest.mark.parametrize("rings", [
    pytest.param(([KEY], [OTHER_KEY]), id="another-key-ring"),
    pytest.param(([], []), id="no-shared-keys"),
])
async def test_without_the_same_keys_a_task_stays_on_its_gateway(
        tasker_url: str, rings: tuple[list[str], list[str]]) -> None:
    """No shared keys: as before, another instance does not know the task; another key
    ring cannot open it (nor read it: the id is sealed)."""
    a, b = gateway(tasker_url, "gw-a", rings[0]), gateway(tasker_url, "gw-b", rings[1])
    async with served(a, b) as (to_a, to_b):
        task_id = await created(to_a, "tasker_crunch", {"n": 4})
        assert unknown(await get(to_b, task_id), task_id)
        assert (await until_ended(to_a, task_id))["result"]["structuredContent"] == \
            {"result": "crunched 8"}
        if rings[0]:
            assert "tasker" not in task_id and tasker_url not in task_id


async def test_a_changed_task_id_is_unknown_everywhere(tasker_url: str) -> None:
    a, b = gateway(tasker_url, "gw-a", [KEY]), gateway(tasker_url, "gw-b", [KEY])
    async with served(a, b) as (to_a, to_b):
        task_id = await created(to_a, "tasker_crunch", {"n": 5})
        middle = len(task_id) // 2
        flipped = "A" if task_id[middle] != "A" else "B"
        for changed in (task_id[:middle] + flipped + task_id[middle + 1:],
                        task_id[:-2], task_id + "x"):
            for http in (to_a, to_b):
                assert unknown(await get(http, changed), changed)
        assert (await until_ended(to_b, task_id))["status"] == "completed"


SECRET_URL = "https://mcp.example/mcp?api_key=sk-live-abcdef0123456789"


def _record() -> TaskRecord:
    """A task of a server whose URL holds a credential."""

    class Replica:
        config = ServerConfig(name="remote", url=SECRET_URL)
        label = "remote"

    return TaskRecord("", "up-1", "remote", "remote_t", Replica(),  # type: ignore[arg-type]
                      1, ("token", "alice"), 0.0, "2026-01-01T00:00:00Z")


def test_a_sealed_id_holds_no_credential_and_opens_only_under_its_ring() -> None:
    """The URL a replica is reached by may hold a credential: the id carries a digest."""
    secret_url, record = SECRET_URL, _record()
    ids = TaskIds([KEY], "gw-a")
    task_id = ids.id_for(record, 60.0, unmaskable=False)
    claims = ids.open(task_id)
    assert claims is not None and claims.server == "remote" and claims.url is not None
    assert "sk-live" not in claims.model_dump_json() and secret_url not in task_id
    assert TaskIds([OTHER_KEY], "gw-b").open(task_id) is None
    assert TaskIds([OTHER_KEY, KEY], "gw-b").open(task_id) is not None   # rotation ring
    expired = ids.id_for(record, -1.0, unmaskable=False)
    assert expired.startswith(TASK_PREFIX) and ids.open(expired) is None


async def test_with_a_shared_store_a_tasks_end_is_recorded_once(
        tasker_url: str, pg_url: str) -> None:
    """Both instances see the task end (each was asked): one record of its end in the
    store they share.  A failed task whose call had a credential-like argument, seen
    ended only on the instance that did not create it, is recorded without its text,
    and its host is told it withheld (it got the echoed key whole: fidelity15)."""
    a = gateway(tasker_url, "gw-a", [KEY], pg_url)
    b = gateway(tasker_url, "gw-b", [KEY], pg_url)
    async with served(a, b) as (to_a, to_b):
        task_id = await created(to_a, "tasker_crunch", {"n": 6})
        assert (await until_ended(to_b, task_id))["status"] == "completed"
        assert (await until_ended(to_a, task_id))["status"] == "completed"
        key = "k-shared-0123456789abcdef"
        signed = await created(to_a, "tasker_sign_in", {"user": "ada", "api_key": key})
        failed = await until_ended(to_b, signed)
        assert failed["status"] == "failed" and key not in json.dumps(failed), failed
        assert failed["error"]["message"] == WITHHELD, failed
        for gw in (a, b):
            assert gw.recorder is not None and await gw.recorder.flushed()
        store = a.control.store
        assert store is not None
        rows, _ = await store.invocations(limit=50)
        ends = {r.exposed: r for r in rows if r.kind == "task"}
        assert sorted(r.exposed for r in rows if r.kind == "task") == [
            "tasker_crunch", "tasker_sign_in"], rows
        assert ends["tasker_crunch"].status == "success"
        assert ends["tasker_sign_in"].status == "error"
        assert ends["tasker_sign_in"].error == UNMASKABLE
        assert ends["tasker_sign_in"].instance_id == "gw-b"
        assert all(key not in (r.error or "") + (r.arguments or "") for r in rows)
        calls = {r.exposed: r for r in rows if r.kind == "tool"}
        assert ends["tasker_crunch"].trace_id == calls["tasker_crunch"].trace_id
        # The end gw-b recorded (it did not create the task) keeps whose kind it is.
        kind = calls["tasker_sign_in"].client_kind
        assert kind is not None and ends["tasker_sign_in"].client_kind == kind
