"""An admin change over HTTP cancelled by uvicorn's stop, once its store write is made.

A stopping ``serve --transport http`` gives requests in flight ``timeout_graceful_
shutdown`` (5 s) and then cancels their tasks with asyncio's ``Task.cancel()``, which no
anyio shield holds: ``finishing()`` did not keep such an operation going, and a server
added over REST whose first connect outlasted the grace was stored (run at the next
start) but neither taken back nor audited, with an ERROR traceback in the log.  The
gateway's HTTP surfaces now run a change in a child task (``admin.context.
shieldable``), where the cancellation arrives as a cancel scope's: from its store write
on it ends, applied and audited.  In process (the request's task is the test's, as
uvicorn's is), on a real SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry

pytestmark = pytest.mark.anyio

OPS = "mgw_native-cancel-ops-7d2e9a41c0b3"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Task.cancel() is asyncio's


async def test_a_rest_change_cancelled_natively_after_its_store_write_ends_audited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = make_gateway({"alpha": memory_entry("alpha")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           options={"auth": AUTH}, db=str(tmp_path / "g.db"))
    app = gateway.http_app("http")
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8765",
            headers={"Authorization": f"Bearer {OPS}"}) as http:
        store = gateway.store
        assert store is not None
        written, go_on = anyio.Event(), anyio.Event()
        add_server = store.add_server

        async def then_a_checkpoint(*args: Any, **kwargs: Any) -> Any:
            result = await add_server(*args, **kwargs)
            written.set()
            await go_on.wait()  # where the request task's cancellation lands
            return result

        monkeypatch.setattr(store, "add_server", then_a_checkpoint)
        request = asyncio.ensure_future(http.post("/api/v1/servers", json={
            "name": "beta", "config": memory_entry("beta")}))
        await written.wait()
        request.cancel("Task cancelled, timeout graceful shutdown exceeded")  # uvicorn's
        go_on.set()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        assert request.cancelled()
        # The request's task ended once the change did: stored, running, audited.
        assert [r.name for r in await store.servers()] == ["beta"]
        assert sorted(gateway.control.manager.services) == ["alpha", "beta"]
        assert [(e.action, e.target) for e in await store.audit()] == [("add_server", "beta")]
