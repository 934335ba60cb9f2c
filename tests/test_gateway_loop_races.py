"""The loop guard's gaps closed (``upstream/loops.py``): handshakes that cross, a loop
made after connect over the handshake era, and ``check``.

* Two gateways whose opening handshakes cross (each answers before it learned the
  other) both accepted, and the loop ran until the next 2026-07-28 probe (none over
  the handshake era).  The opening *requests* now name the client's gateways: of two
  crossing handshakes one side reads the other's request before the answer to its
  own, and refuses.  Reproduced by holding answers (relays, a stdio child's output)
  until the other side answered too: never by luck, and with no probe to fall back on
  (health every hour).
* A loop closed deeper in a chain after its sessions opened, over the handshake era
  (pings, which told nothing): a gateway's ping now names its gateways and is answered
  with the other's, so the held sessions' probes find it.
* ``mcp-gateway check`` reported an entry pointing at the running gateway of its own
  config (or at one aggregating it) "ok": it now fails as ``serve`` refuses it, also
  when both run ``--no-db`` with ``$MCP_GATEWAY_DB`` set (serve's identity hashed that
  store, check's none).

Real ``serve`` processes (HTTP on 127.0.0.1, a stdio child gateway on a store of its
own); each test fails on the old code (the loop is never refused, or ``check`` says ok).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from fastmcp import Client
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.shared.exceptions import MCPError

from fast_mcp_gateway.upstream.loops import GATEWAYS_KEY
from tests.fixtures import WITHIN, alpha_server, make_gateway, memory_entry
from tests.test_gateway_loops import (
    AGGREGATES,
    CLOCK,
    ITSELF,
    Served,
    free_port,
    serve,
    write_config,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

NO_PROBE = {"health": {"interval": 3600}, "timeouts": {"connect": 120}}
"""Nothing but the connect may find the loop; the other side may take long to start."""


async def pipe(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream,
               first: anyio.Event | None = None, hold: anyio.Event | None = None) -> None:
    """``source`` to ``sink``; ``first`` set at the first bytes, which wait for ``hold``."""
    try:
        async for chunk in source:
            if first is not None:
                first.set()
            if hold is not None:
                await hold.wait()
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        await sink.aclose()


class Relay:
    """Connections to a listener passed on to 127.0.0.1:``port`` once ``up`` is set (the
    gateway there serves); its answers wait for ``hold`` (None: passed at once).
    ``answered`` is set when the gateway there first answered through it."""

    def __init__(self, port: int, hold: anyio.Event | None = None) -> None:
        self.port, self.hold = port, hold
        self.up, self.answered = anyio.Event(), anyio.Event()

    async def run(self, listener: anyio.abc.SocketListener) -> None:
        async def both_ways(client: anyio.abc.SocketStream) -> None:
            async with client:
                await self.up.wait()
                try:
                    server = await anyio.connect_tcp("127.0.0.1", self.port)
                except OSError:  # the gateway there stopped (the test is ending)
                    return
                async with server, anyio.create_task_group() as tg:
                    tg.start_soon(pipe, client, server)
                    tg.start_soon(pipe, server, client, self.answered, self.hold)

        await listener.serve(both_ways)


def url_of(listener: anyio.abc.SocketListener) -> str:
    return f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/mcp"


async def first_refusal(*sides: tuple[Served, str]) -> Served:
    """The first of ``sides`` (a gateway, its server's name) to log that server's
    refusal as a gateway aggregating it (waiting for it)."""
    found: list[Served] = []
    with anyio.fail_after(WITHIN):
        async with anyio.create_task_group() as tg:
            async def wait(side: Served, name: str) -> None:
                await side.said(f"upstream {name}: ", "-> failed (this server is a gateway "
                                "that aggregates this gateway (through ")
                found.append(side)
                tg.cancel_scope.cancel()
            for side, name in sides:
                tg.start_soon(wait, side, name)
    return found[0]


async def bounded(side: Served, repeated: str, most: int = 100) -> None:
    """``side`` stops listing tools named ``repeated...`` (once told of the change), and
    lists at most ``most`` (a gateway lists its own few, and each gateway's behind it)."""
    with anyio.fail_after(WITHIN):
        while any(n.startswith(repeated)  # noqa: ASYNC110 - no event tells us
                  for n in await side.tool_names()):
            await anyio.sleep(0.05)
    assert len(await side.tool_names()) < most


@pytest.mark.parametrize("protocol", ["legacy", "auto"])  # initialize, server/discover
async def test_two_gateways_whose_handshakes_cross_do_not_loop(
        tmp_path: Path, protocol: str) -> None:
    """Each gateway's answer waits (in a relay) until the other gateway answered too:
    both answered before learning the other, so neither answer names the other."""
    port_a, port_b = free_port(), free_port()
    both = anyio.Event()
    to_a, to_b = Relay(port_a, both), Relay(port_b, both)
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as front_a, \
            await anyio.create_tcp_listener(local_host="127.0.0.1") as front_b, \
            anyio.create_task_group() as relays:
        relays.start_soon(to_a.run, front_a)
        relays.start_soon(to_b.run, front_b)

        async def crossed() -> None:
            await to_a.answered.wait()
            await to_b.answered.wait()
            both.set()
        relays.start_soon(crossed)
        peer = {"protocol": protocol, **NO_PROBE}
        async with serve(tmp_path, "a", port_a, {"clock": CLOCK, "peer": {
                    "url": url_of(front_b), **peer}}) as a:
            to_a.up.set()
            async with serve(tmp_path, "b", port_b, {"clock": CLOCK, "peer": {
                        "url": url_of(front_a), **peer}}) as b:
                to_b.up.set()
                refused = await first_refusal((a, "peer"), (b, "peer"))
                other = b if refused is a else a
                error = (await refused.servers())["peer"]["last_error"]
                front = front_b if refused is a else front_a
                assert error.startswith(AGGREGATES.format(url=url_of(front))), error
                assert error.endswith("without end; remove it here or there")
                for side in (a, b):
                    await bounded(side, "peer_peer_")
                assert not any(n.startswith("peer_") for n in await refused.tool_names())
                assert other.said_already()  # (the other may have refused as well)
        relays.cancel_scope.cancel()


HOLD = """
import os, subprocess, sys
gate, command = sys.argv[1], sys.argv[2:]
child = subprocess.Popen(command, stdout=subprocess.PIPE)  # stdin, stderr: ours
if os.path.exists(gate):  # the first child only
    with open(gate, "rb") as opened:  # until the test opens the FIFO to write to it
        opened.read(1)
    os.unlink(gate)
for chunk in iter(lambda: child.stdout.read1(65536), b""):
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
sys.exit(child.wait())
"""


async def test_a_stdio_child_gateway_whose_handshake_crosses_its_parents_is_refused(
        tmp_path: Path) -> None:
    """The child's answers to its parent wait (its output held by a wrapper) until the
    parent answered the child's own opening request: the parent answered before
    learning the child, the child's answer (early, before its gateway was built) names
    no other gateway.  The parent read the child's request while its own opening of
    the child was under way: the child's identity, new with its process and sent only
    to its own upstreams, was named by the child itself (not a forgery, as an HTTP
    server's may be: ``test_gateway_loop_forged``), so the parent refuses it at once.
    Retried, a child that opens its upstreams before it answers crossed again at each
    restart under load (``test_gateway_loops``' stdio child never refused)."""
    port = free_port()
    to_parent = Relay(port)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    (tmp_path / "hold.py").write_text(HOLD)
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as front, \
            anyio.create_task_group() as relays:
        relays.start_soon(to_parent.run, front)
        child_config = write_config(tmp_path / "child.yaml", {
            "clock": CLOCK, "parent": {"url": url_of(front), **NO_PROBE}})
        child = {"command": sys.executable, "args": [
            str(tmp_path / "hold.py"), str(gate), sys.executable, "-m", "fast_mcp_gateway",
            "serve", "--config", str(child_config), "--db", str(tmp_path / "child.db")],
            **NO_PROBE}
        async with serve(tmp_path, "p", port, {"child": child}) as p:
            to_parent.up.set()
            with anyio.fail_after(WITHIN):
                await to_parent.answered.wait()

            def open_gate() -> None:
                with gate.open("wb") as opened:
                    opened.write(b"x")
            await anyio.to_thread.run_sync(open_gate)
            line = await p.said("upstream child: starting -> failed (")
            assert "(this server is a gateway that aggregates this gateway (through " \
                "the command " in line, line
            assert "handshakes crossed" not in "\n".join(p.lines)
            assert not any(n.startswith("child_") for n in await p.tool_names())
        relays.cancel_scope.cancel()


async def register(side: Served, name: str, url: str, probe_every: float) -> None:
    async with httpx2.AsyncClient(base_url=side.base, timeout=WITHIN) as http:
        answer = await http.post("/api/v1/servers", json={"name": name, "config": {
            "url": url, "protocol": "legacy", "health": {"interval": probe_every}}})
    assert answer.status_code in (200, 201), answer.text


async def test_a_loop_closed_after_connect_over_the_handshake_era_is_found(
        tmp_path: Path) -> None:
    """v aggregates w, then w aggregates u: v's knowledge of w is now old (it probes w
    hourly).  Then u aggregates v: v's answer names only v and w, so u's connect finds
    nothing, and the loop is closed.  Every session is handshake-era (pings); w's ping
    of u, which told nothing, is now answered with the gateways behind u: w among them."""
    ports = {name: free_port() for name in "uvw"}
    async with serve(tmp_path, "u", ports["u"], {"clock": CLOCK}) as u, \
            serve(tmp_path, "v", ports["v"], {"clock": CLOCK}) as v, \
            serve(tmp_path, "w", ports["w"], {"clock": CLOCK}) as w:
        await register(v, "w", f"{w.base}/mcp", 3600)
        await register(w, "u", f"{u.base}/mcp", 0.2)
        await register(u, "v", f"{v.base}/mcp", 3600)  # the loop: no connect can tell
        assert await first_refusal((v, "w"), (w, "u"), (u, "v")) is w
        error = (await w.servers())["u"]["last_error"]
        assert error.startswith(AGGREGATES.format(url=f"{u.base}/mcp")), error
        for side, repeated in ((u, "v_w_u_"), (v, "w_u_v_"), (w, "u_v_w_")):
            await bounded(side, repeated, 200)  # a chain of three: 120 at most


async def test_check_reports_the_gateway_itself_and_one_aggregating_it(
        tmp_path: Path) -> None:
    """``check`` with the config and store of a running gateway: an entry of its URL,
    and one of a gateway aggregating it, fail with the words ``serve`` refuses them
    with; the other servers are ok."""
    port_g, port_h = free_port(), free_port()
    own = f"http://127.0.0.1:{port_g}/mcp"
    async with serve(tmp_path, "g", port_g, {"clock": CLOCK, "self": {"url": own}}) as g, \
            serve(tmp_path, "h", port_h, {"g": {"url": own}}) as h:
        await h.said("upstream g: starting -> ready")
        await g.said("upstream self: starting -> failed")
        config = write_config(tmp_path / "g.yaml", {  # (g itself may reload it: no matter)
            "clock": CLOCK, "self": {"url": own}, "h": {"url": f"{h.base}/mcp"}})
        checked = await anyio.run_process(
            [sys.executable, "-m", "fast_mcp_gateway", "check", "--config", str(config),
             "--db", str(tmp_path / "g.db"), "--json"], check=False)
    assert checked.returncode == 1, checked.stderr.decode()
    rows = {row["server"]: row for row in json.loads(checked.stdout)["servers"]}
    assert rows["clock"]["status"] == "ok"
    assert rows["self"]["status"] == "failed"
    assert rows["self"]["error"] == ITSELF.format(url=own)
    assert rows["h"]["status"] == "failed"
    assert rows["h"]["error"].startswith(AGGREGATES.format(url=f"{h.base}/mcp")), rows


async def test_check_knows_a_gateway_serving_without_its_store_variable(
        tmp_path: Path) -> None:
    """``serve --no-db`` with ``$MCP_GATEWAY_DB`` set runs without a store, but its
    identity hashed that store, while ``check --no-db`` hashed none: ``check`` with the
    same settings said the gateway's own URL was "ok".  Both now hash the store ``serve``
    runs with (``GatewaySettings.store``)."""
    port = free_port()
    own = f"http://127.0.0.1:{port}/mcp"
    env = {"MCP_GATEWAY_DB": str(tmp_path / "g.db")}
    async with serve(tmp_path, "g", port, {"clock": CLOCK, "self": {"url": own}},
                     store=["--no-db"], env=env) as g:
        await g.said("upstream self: starting -> failed")
        checked = await anyio.run_process(
            [sys.executable, "-m", "fast_mcp_gateway", "check", "--config",
             str(tmp_path / "g.yaml"), "--no-db", "--json"], check=False,
            env={**os.environ, **env})
    assert checked.returncode == 1, checked.stderr.decode()
    rows = {row["server"]: row for row in json.loads(checked.stdout)["servers"]}
    assert rows["clock"]["status"] == "ok"
    assert (rows["self"]["status"], rows["self"]["error"]) == ("failed", ITSELF.format(url=own))
    assert not (tmp_path / "g.db").exists()  # neither opened the store


# -- in process: what the opening requests and the pings tell -------------------------


class Heard(Middleware):
    """What an upstream heard in the ``_meta`` of the opening requests."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    async def on_initialize(self, context: MiddlewareContext[Any],
                            call_next: CallNext[Any, Any]) -> Any:
        self.told.append((context.message.params.meta or {}).get(GATEWAYS_KEY))
        return await call_next(context)

    async def on_discover(self, context: MiddlewareContext[Any],
                          call_next: CallNext[Any, Any]) -> Any:
        self.told.append((context.message.params.meta or {}).get(GATEWAYS_KEY))
        return await call_next(context)

    async def on_list_tools(self, context: MiddlewareContext[Any],
                            call_next: CallNext[Any, Any]) -> Any:
        meta = getattr(getattr(context.message, "params", None), "meta", None) or {}
        self.told.append(("tools/list", meta.get(GATEWAYS_KEY)))  # (none: no cost after)
        return await call_next(context)


@pytest.mark.parametrize("protocol", ["legacy", "2026-07-28"])
async def test_the_opening_request_names_this_gateway(protocol: str) -> None:
    behind = alpha_server()
    heard = Heard()
    behind.add_middleware(heard)
    gateway = make_gateway({"up": memory_entry("up", protocol=protocol)}, {"up": behind})
    async with Client(gateway.server, mode="legacy") as client:  # (pings: the handshake era)
        assert any(t.name.startswith("up_") for t in await client.list_tools())
        assert heard.told[0] == [gateway.manager.lineage.id]
        assert set(heard.told[1:]) == {("tools/list", None)}, heard.told
        # A host naming no gateway is answered as before; a gateway's ping, with ours.
        assert (await client.session.send_ping()).meta is None
        pinged = await client.session.send_ping(meta={GATEWAYS_KEY: ["another"]})  # type: ignore[typeddict-unknown-key]
        assert pinged.meta == {GATEWAYS_KEY: [gateway.manager.lineage.id]}


async def test_an_opening_request_from_a_gateway_this_one_aggregates_is_refused() -> None:
    """The server side: refused before any answer, its gateways in the error's data."""
    from fast_mcp_gateway._compat_sessions import tell_gateways  # (the old code: none)

    behind = alpha_server()
    gateway = make_gateway({"up": memory_entry("up")}, {"up": behind})
    lineage = gateway.manager.lineage
    async with Client(gateway.server) as client:
        await client.list_tools()
    lineage._learned[0] = ("a-gateway-behind",)  # as a replica's answer teaches it
    with pytest.raises(MCPError) as refused:
        async with Client(gateway.server, auto_initialize=False) as client:
            with tell_gateways(client.session, GATEWAYS_KEY, lambda: ["a-gateway-behind"]):
                await client.session.initialize()
    error = refused.value.error
    assert error.code == -32600
    assert error.message.startswith("this gateway aggregates the gateway opening this "
                                    "session")
    assert error.data == {GATEWAYS_KEY: [lineage.id, "a-gateway-behind"]}
