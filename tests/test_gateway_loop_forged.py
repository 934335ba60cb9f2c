"""The loop guard against a host that names gateways it is not (``upstream/loops.py``).

* Any host that may open a session to a gateway (any valid token; anyone on loopback
  without one) could put an upstream gateway's identity, which every opening answer
  tells, in its own ``initialize``'s ``_meta`` while this gateway opened its session to
  that upstream (at start, at each reconnect): the upstream's answer then looked like
  handshakes that crossed, and the upstream was failed *for good*, as a loop, until an
  operator reconnected it.  A crossing is now retried (as an unreachable server is: no
  backoff to a parked ``failed``), the retry's answer says whether there is a loop.
* A replica's notes of who opened a session while its own opening was under way
  grew by one identity per hostile ``initialize`` for as long as the opening lasted
  (up to its connect timeout): now bounded.
* ``served_here`` hashed a PostgreSQL URL whole, its password with it, into an
  identity every host reads: 64 bits of an unsalted SHA-256 of a host name, a config
  path and the password, an offline guess's check.  The password no longer counts.

Real ``serve`` processes over HTTP on 127.0.0.1; each test fails on the old code.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway._compat_sessions import tell_gateways
from fast_mcp_gateway.upstream.loops import GATEWAYS_KEY, MAX_TOLD, Lineage, served_here
from tests.fixtures import WITHIN
from tests.test_gateway_loop_races import NO_PROBE, Relay, url_of
from tests.test_gateway_loops import CLOCK, Served, free_port, serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


async def opening_names(side: Served, told: list[str]) -> list[str]:
    """Open a session to ``side`` naming ``told`` as this host's gateways; the
    gateways its answer names."""
    async with Client(f"{side.base}/mcp", auto_initialize=False) as client:
        with tell_gateways(client.session, GATEWAYS_KEY, lambda: told):
            opened = await client.session.initialize()
    return list((opened.meta or {})[GATEWAYS_KEY])


async def settled(side: Served, name: str) -> dict[str, object]:
    """``name``'s status once it is ready or failed (waiting for either)."""
    with anyio.fail_after(WITHIN):
        while (server := (await side.servers())[name])["state"] not in ("ready", "failed"):
            await side._new.wait()  # a state change is logged
    return server


async def test_a_host_naming_an_upstream_gateway_does_not_fail_it_for_good(
        tmp_path: Path) -> None:
    """a's opening of b (its answer held in a relay) while a stranger opens a session
    to a naming b's identity (read from b's own answer): a connects to b all the same."""
    port_a, port_b = free_port(), free_port()
    release = anyio.Event()
    to_b = Relay(port_b, release)
    async with serve(tmp_path, "b", port_b, {"clock": CLOCK}) as b, \
            await anyio.create_tcp_listener(local_host="127.0.0.1") as front_b, \
            anyio.create_task_group() as relays:
        relays.start_soon(to_b.run, front_b)
        to_b.up.set()
        b_id = (await opening_names(b, []))[0]  # what any host reads
        async with serve(tmp_path, "a", port_a, {"peer": {"url": url_of(front_b),
                                                          **NO_PROBE}}) as a:
            with anyio.fail_after(WITHIN):
                await to_b.answered.wait()  # b answered a's initialize: held
            assert b_id not in await opening_names(a, [b_id, "whatever"])
            release.set()
            peer = await settled(a, "peer")
            assert peer["state"] == "ready", peer["last_error"]
            assert any(n.startswith("peer_clock_") for n in await a.tool_names())
        relays.cancel_scope.cancel()


def test_the_notes_of_openers_are_bounded() -> None:
    """While a replica opens its session (up to its connect timeout), each host's
    opening request naming a gateway was noted for it: as many as requests came."""
    lineage = Lineage()
    lineage.opening(1)
    for index in range(MAX_TOLD + 50):
        assert lineage.opened_by({GATEWAYS_KEY: [f"stranger-{index}"]}) is None
    assert len(lineage._flights[1]) == MAX_TOLD


def test_the_identity_tail_does_not_hash_a_store_password() -> None:
    one = served_here(None, "postgresql://gw:first-secret@db.example:5432/gateway")
    other = served_here(None, "postgresql://gw:other-secret@db.example:5432/gateway")
    query = served_here(None, "postgresql://gw@db.example:5432/gateway?password=x9")
    assert one == other == query
    assert served_here(None, "postgresql://gw@db.example:5432/other") != one
