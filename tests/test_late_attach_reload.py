"""A store opened late (the gateway started without it) and a config reload at once.

``connect_later`` attaches the store once it answers: the runtime registrations are
merged with the config file and converged into the running servers.  The merge was
made before waiting for the reload lock, from the config file as it was then: a reload
in flight (the watcher, retrying since the store came back) applied the edited file,
and the attach then converged to the file before the edit -- a server added by the
edit was stopped again, and nothing read the file again (its stamp was taken).
In process, a real SQLite store; the lock's queue orders the two, no timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from fastmcp import Client

from fast_mcp_gateway.store import open_store
from fast_mcp_gateway.telemetry.recorder import Recorder
from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry, until

pytestmark = pytest.mark.anyio


def write(config: Path, *names: str) -> None:
    config.write_text(json.dumps({"servers": {n: memory_entry(n) for n in names}}))


async def test_a_late_attach_keeps_a_reload_applied_meanwhile(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    write(config, "alpha")
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server(),
                            "gamma": alpha_server()}, config=config)
    store = await open_store(tmp_path / "g.db")
    await store.put_server("gamma", memory_entry("gamma"), True)  # registered at runtime
    control = gateway.control
    try:
        async with Client(gateway.server) as host:
            await host.list_tools()
            write(config, "alpha", "beta")  # the edit the watcher reloads
            lock = control._reload_lock
            async with anyio.create_task_group() as group:
                await lock.acquire()  # a change in flight: the two queue behind it
                group.start_soon(control.reload_config)
                await until(lambda: lock.statistics().tasks_waiting == 1)
                group.start_soon(lambda: control.attach(store, Recorder(store), late=True))
                await until(lambda: lock.statistics().tasks_waiting == 2)
                lock.release()
            assert set(gateway.manager.services) == {"alpha", "beta", "gamma"}
            assert {"beta_echo", "gamma_add"} <= {t.name for t in await host.list_tools()}
    finally:
        control.detach()
        await store.close()
