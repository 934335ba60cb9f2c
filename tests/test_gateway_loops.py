"""A gateway never aggregates itself, whatever the address (``upstream/loops.py``).

Found by a new-user trial: the HTTP gateway's own ``/mcp`` URL added as a server made it
list its own tools under that name, then those again (``chain_chain_chain_...``, 2,640
tools after a minute).  Each gateway now tells its identity, and those of the gateways
behind it, in its opening answers; a replica whose server names this gateway ends
``failed`` with the reason, for good.  Real ``serve --transport http`` processes on
127.0.0.1: a file entry of the gateway's own URL, a registration through a TCP relay
(an address no check of host and port can see), two gateways aggregating each other, a
stdio child gateway (on a store of its own) aggregating its parent over HTTP.  On the
old code each loops: the failed state these tests wait for never comes.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from anyio.streams.text import TextReceiveStream
from fastmcp import Client
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

from fast_mcp_gateway.upstream.loops import GATEWAYS_KEY, MAX_TOLD, loop_text, not_added
from tests.fixtures import WITHIN, alpha_server, make_gateway, memory_entry, until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

CLOCK = {"command": sys.executable, "args": ["-m", "fast_mcp_gateway.demo.clock"]}
ITSELF = ("this server is this gateway itself (through URL {url}): it would list its own "
          "tools again under its name, without end; remove it")
AGGREGATES = "this server is a gateway that aggregates this gateway (through URL {url}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(path: Path, servers: dict[str, Any]) -> Path:
    import json  # JSON is YAML

    path.write_text(json.dumps({"servers": servers}))
    return path


class Served:
    """One ``serve --transport http`` process; its log lines, and a wait for one."""

    def __init__(self, port: int) -> None:
        self.port, self.lines = port, list[str]()
        self.base = f"http://127.0.0.1:{port}"
        self._new = anyio.Event()

    async def said(self, *texts: str) -> str:
        """The first log line holding every one of ``texts`` (waiting for it)."""
        try:
            with anyio.fail_after(WITHIN):
                while True:
                    found = [line for line in self.lines if all(t in line for t in texts)]
                    if found:
                        return found[0]
                    await self._new.wait()
        except TimeoutError:
            raise AssertionError(f"never said {texts}:\n" + "\n".join(self.lines)) from None

    def said_already(self) -> str:
        return "\n".join(self.lines)

    async def read(self, stream: TextReceiveStream) -> None:
        pending = ""
        async for chunk in stream:
            pending += chunk
            *done, pending = pending.split("\n")
            self.lines += done
            self._new.set()
            self._new = anyio.Event()

    async def servers(self) -> dict[str, dict[str, Any]]:
        async with httpx2.AsyncClient(base_url=self.base) as http:
            answer = await http.get("/api/v1/servers")
        assert answer.status_code == 200, answer.text
        return {s["name"]: s for s in answer.json()["servers"]}

    async def tool_names(self) -> list[str]:
        async with Client(f"{self.base}/mcp") as client:
            return [tool.name for tool in await client.list_tools()]


@asynccontextmanager
async def serve(tmp_path: Path, name: str, port: int, servers: dict[str, Any],
                store: list[str] | None = None, env: dict[str, str] | None = None
                ) -> AsyncIterator[Served]:
    """``store``: the store flags (default ``--db NAME.db``); ``env``: variables added."""
    config = write_config(tmp_path / f"{name}.yaml", servers)
    served = Served(port)
    if store is None:
        store = ["--db", str(tmp_path / f"{name}.db")]
    async with anyio.create_task_group() as tg, await anyio.open_process(
            [sys.executable, "-m", "fast_mcp_gateway", "serve", "--config", str(config),
             "--transport", "http", "--port", str(port), *store,
             "--allow-unauthenticated-admin"],
            stdin=None, stdout=None, env=None if env is None else {**os.environ, **env}
            ) as proc:
        assert proc.stderr is not None
        tg.start_soon(served.read, TextReceiveStream(proc.stderr))
        try:
            await served.said("serving")
            yield served
        finally:
            if proc.returncode is None:
                proc.terminate()
            with anyio.move_on_after(WITHIN):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            tg.cancel_scope.cancel()


async def test_a_file_entry_of_the_gateways_own_url_fails_for_good(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://localhost:{port}/mcp"  # the loader knows no port: only connecting tells
    async with serve(tmp_path, "g", port, {"clock": CLOCK, "chain": {"url": url}}) as g:
        line = await g.said("upstream chain: starting -> failed")
        assert ITSELF.format(url=url) in line, line
        await g.said("upstream clock: starting -> ready")
        servers = await g.servers()
        assert servers["chain"]["state"] == "failed"
        assert servers["chain"]["last_error"] == ITSELF.format(url=url)
        assert servers["chain"]["tools"] == 0
        names = await g.tool_names()
        assert any(n.startswith("clock_") for n in names)
        assert not any(n.startswith("chain_") for n in names), names
        async with Client(f"{g.base}/mcp") as client:  # the admin tool says it as well
            listed = await client.call_tool("gateway_list_servers", {})
        assert ITSELF.format(url=url) in str(listed.structured_content)


async def relay(listener: anyio.abc.SocketListener, port: int) -> None:
    """Every connection to ``listener`` passed on to 127.0.0.1:``port`` (a reverse
    proxy, a tunnel: an address of the gateway that names another port)."""

    async def pipe(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await sink.aclose()

    async def both_ways(client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", port) as server, \
                anyio.create_task_group() as tg:
            tg.start_soon(pipe, client, server)
            tg.start_soon(pipe, server, client)

    await listener.serve(both_ways)


async def test_a_registration_reaching_the_gateway_through_a_relay_is_refused(
        tmp_path: Path) -> None:
    port = free_port()
    async with serve(tmp_path, "g", port, {"clock": CLOCK}) as g, \
            await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, \
            anyio.create_task_group() as tg:
        tg.start_soon(relay, listener, port)
        url = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/mcp"
        async with httpx2.AsyncClient(base_url=g.base, timeout=WITHIN) as http:
            answer = await http.post("/api/v1/servers", json={
                "name": "via", "config": {"url": url}})
        # Not kept: its start failed (admin/servers._start_failure), saying why -- and
        # not "remove it" (it is not there) nor "add it again" (it would loop again).
        assert answer.status_code == 422, answer.text
        core = ITSELF.format(url=url).removesuffix("; remove it")
        assert answer.json()["error"]["message"] == (
            f"POST /api/v1/servers body 'config': server 'via': not added: {core}")
        async with httpx2.AsyncClient(base_url=g.base, timeout=WITHIN) as http:
            audit = (await http.get("/api/v1/logs/audit")).json()["entries"]
        assert [(e["action"], e["target"], e["result"]) for e in audit] == [
            ("add_server", "via", f"not added: {core}")]
        assert "via" not in await g.servers()
        assert not any(n.startswith("via_") for n in await g.tool_names())
        tg.cancel_scope.cancel()


async def test_two_gateways_aggregating_each_other_do_not_loop(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    # A 2026-07-28 session's health probe reads the identities again: two gateways
    # that opened their sessions to each other at the same moment find out there.
    peer = {"health": {"interval": 1}}
    async with serve(tmp_path, "a", port_a, {"clock": CLOCK, "peer": {
                "url": f"http://127.0.0.1:{port_b}/mcp", **peer}}) as a, \
            serve(tmp_path, "b", port_b, {"clock": CLOCK, "peer": {
                "url": f"http://127.0.0.1:{port_a}/mcp", **peer}}) as b:
        with anyio.fail_after(WITHIN):
            async with anyio.create_task_group() as tg:
                async def first(side: Served) -> None:
                    # (Not any failure: one started first may find the other still
                    # starting, and give up on it after a few attempts.)
                    await side.said("upstream peer: ", "-> failed (" + AGGREGATES.format(
                        url=f"{(b if side is a else a).base}/mcp"))
                    tg.cancel_scope.cancel()
                tg.start_soon(first, a)
                tg.start_soon(first, b)
        refused = [side for side in (a, b) if (await side.servers())["peer"]["state"]
                   == "failed" and "aggregates this gateway" in side.said_already()]
        assert refused
        for side in refused:
            error = (await side.servers())["peer"]["last_error"]
            assert error.startswith(AGGREGATES.format(
                url=f"{(b if side is a else a).base}/mcp")), error
            assert error.endswith("without end; remove it here or there")
        # Bounded: neither lists the other's listing of itself (once told of the change).
        for side in (a, b):
            with anyio.fail_after(WITHIN):
                while any(n.startswith("peer_peer_")  # noqa: ASYNC110 - no event tells us
                          for n in await side.tool_names()):
                    await anyio.sleep(0.05)
            assert len(await side.tool_names()) < 100


async def test_a_stdio_child_gateway_aggregating_its_parent_refuses_it(
        tmp_path: Path) -> None:
    """Which side refuses depends on which answer came first: the parent (its replica
    of the child fails) or the child (its replica of the parent fails).  Spawned before
    the parent's stack is up (``spawn_early``), the child may reach the parent while
    the parent's handshake with it is under way: both answers then name no other
    gateway, and the parent, which read the child's request meanwhile, refuses it
    (``tests/test_gateway_loop_races.py`` makes that order sure)."""
    port = free_port()
    parent_url = f"http://127.0.0.1:{port}/mcp"
    # Another store: not the command of this gateway on its own store (that one is
    # refused before it runs: config/checks.nested_gateway_problem).
    child_config = write_config(tmp_path / "child.yaml", {
        "clock": CLOCK, "parent": {"url": parent_url, "health": {"interval": 1}}})
    child = {"command": sys.executable, "args": [
        "-m", "fast_mcp_gateway", "serve", "--config", str(child_config),
        "--db", str(tmp_path / "child.db")]}
    async with serve(tmp_path, "p", port, {"child": child}) as p, \
            Client(f"{p.base}/mcp") as client:
        refusal = ("-> failed (this server is a gateway that aggregates this gateway "
                   "(through the command ")

        async def refused() -> dict[str, Any] | None:
            """The refused side's server as its gateway lists it; None: not yet."""
            if any("upstream child: " in line and refusal in line for line in p.lines):
                return (await p.servers())["child"]
            if "upstream child: starting -> ready" not in p.said_already():
                return None
            # The child's own admin tool, through its parent (a stdio gateway shows them).
            listed = await client.call_tool("child_gateway_list_servers", {})
            servers = listed.structured_content["servers"]  # type: ignore[index]
            parent = next(s for s in servers if s["name"] == "parent")
            return parent if parent["state"] == "failed" else None

        with anyio.fail_after(WITHIN):
            while (server := await refused()) is None:  # noqa: ASYNC110 - no event tells us
                await anyio.sleep(0.05)
        assert server["state"] == "failed"
        assert server["last_error"].startswith("this server is a gateway that aggregates "
                                               "this gateway (through "), server
        assert server["last_error"].endswith("without end; remove it here or there")
        # Bounded: the parent never lists the child's listing of itself (once told).
        with anyio.fail_after(WITHIN):
            while any(n.startswith("child_parent_")  # noqa: ASYNC110 - no event tells us
                      for n in await p.tool_names()):
                await anyio.sleep(0.05)
        assert len(await p.tool_names()) < 100


# -- in process: what the answers tell, and a loop made after the sessions opened ------


class Tells(Middleware):
    """An upstream gateway's discover answer, naming the gateways in ``told``."""

    def __init__(self) -> None:
        self.told: list[str] = ["an-upstream-gateway"]

    async def on_discover(self, context: MiddlewareContext[Any],
                          call_next: CallNext[Any, Any]) -> Any:
        result = await call_next(context)
        result.meta = {**(result.meta or {}), GATEWAYS_KEY: list(self.told)}
        return result


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # initialize, server/discover
async def test_the_opening_answer_names_this_gateway_then_those_behind_it(
        mode: str) -> None:
    behind = alpha_server()
    behind.add_middleware(Tells())
    gateway = make_gateway({"up": memory_entry("up", protocol="2026-07-28")}, {"up": behind})
    async with Client(gateway.server, mode=mode) as client:
        opened = client.session.initialize_result or client.session.discover_result
        assert (client.session.initialize_result is not None) == (mode == "legacy")
        assert opened is not None and opened.meta is not None
        assert opened.meta[GATEWAYS_KEY] == [gateway.manager.lineage.id,
                                             "an-upstream-gateway"]
        assert await client.list_tools()  # the lists carry nothing of it


async def test_a_loop_made_after_the_session_opened_ends_at_the_next_probe() -> None:
    """Two gateways that opened their sessions to each other at the same moment each
    answered before learning the other: the held session's probe finds it."""
    behind = alpha_server()
    tells = Tells()
    behind.add_middleware(tells)
    gateway = make_gateway({"up": memory_entry(
        "up", protocol="2026-07-28", health={"interval": 0.05})}, {"up": behind})
    async with Client(gateway.server) as client:
        assert any(t.name.startswith("up_") for t in await client.list_tools())
        up = gateway.manager.get("up").replicas[0]
        tells.told = ["an-upstream-gateway", gateway.manager.lineage.id]
        await until(lambda: str(up.state) == "failed")
        assert up.last_error is not None and up.last_error.startswith(
            "this server is a gateway that aggregates this gateway (through URL "
            "http://127.0.0.1:9/in-memory/up, directly or through other gateways)")
        assert not any(t.name.startswith("up_") for t in await client.list_tools())
        assert gateway.manager.lineage.told() == [gateway.manager.lineage.id]


async def test_what_upstream_gateways_tell_is_bounded_in_this_gateways_answers() -> None:
    """Each upstream's list is read up to ``MAX_TOLD`` strings of at most 100 characters;
    the gateway's own answer, the lists of all its upstreams together, was not bounded:
    three upstreams (hostile, or gateways behind many) telling 256 identities each made
    every host's opening answer carry 769 of them (~77 KB), of which a gateway reading it
    reads only the first ``MAX_TOLD``.  Now this gateway first, then at most
    ``MAX_TOLD`` in all."""
    behind: dict[str, Any] = {}
    for n in range(3):
        server, tells = alpha_server(), Tells()
        tells.told = [f"{n}-{i:03}-" + "x" * 90 for i in range(MAX_TOLD)] + [
            "y" * 101, 7, None, {"id": "z"}, *(f"{n}-more-{i}" for i in range(10_000))]
        server.add_middleware(tells)
        behind[f"up{n}"] = server
    gateway = make_gateway({name: memory_entry(name, protocol="2026-07-28")
                            for name in behind}, behind)
    async with Client(gateway.server) as client:
        opened = client.session.discover_result
        assert opened is not None and opened.meta is not None
        told = opened.meta[GATEWAYS_KEY]
    assert told[0] == gateway.manager.lineage.id
    assert len(told) == MAX_TOLD, len(told)
    assert all(isinstance(i, str) and len(i) <= 100 for i in told)
    assert told[1:4] == ["0-000-" + "x" * 90, "0-001-" + "x" * 90, "0-002-" + "x" * 90]


def test_a_refused_add_of_a_gateway_aggregating_this_one_says_what_to_do_instead() -> None:
    reason = loop_text(False, "URL http://b/mcp")
    assert reason.endswith("; remove it here or there")  # a running server's
    assert not_added(reason) == (
        "this server is a gateway that aggregates this gateway (through URL http://b/mcp, "
        "directly or through other gateways): each would list the other's tools again "
        "under its name, without end; add its other servers here directly, or take this "
        "gateway out of it first")
    assert not_added("cannot connect: refused; remove it") is None
