from __future__ import annotations

import os

# FastMCP's rich console handler renders each logged error's traceback with syntax
# highlighting in the gateway's event loop: 0.1-0.2 s each, the first ~2 s (its lazy
# imports) on a loaded two-core machine, long enough to run out a call's window while a
# test's gateway (in this process) logged another call's error.  Plain logging: ~1 ms.
# Before FastMCP's import, which reads it; `serve` processes reclaim the logger anyway.
os.environ.setdefault("FASTMCP_ENABLE_RICH_LOGGING", "false")

import pytest
from hypothesis import HealthCheck, settings

from tests import procs
from tests.pg import pg_cluster, pg_url  # noqa: F401 - fixtures for the PostgreSQL tests

# The suite runs on a loaded two-core machine (load ~6): hypothesis's per-example deadline
# (200 ms) and its "too slow" health check measure that machine's load, not the code.
# A test's own @settings still overrides either.
settings.register_profile("loaded_machine", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loaded_machine")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_leaked_processes():
    """Every test must leave no child process of ours behind, alive or zombie."""
    before = set(procs.descendants(os.getpid()))
    yield
    leaked = procs.wait_gone(os.getpid(), before, timeout=10.0)
    assert not leaked, f"processes left behind: {leaked}"


@pytest.fixture(autouse=True)
def _no_stale_uvicorn_signal_handlers():
    """A uvicorn server run in-process holds SIGTERM/SIGINT while it serves and gives
    them back as its ``serve()`` returns; one whose coroutine never finished (its loop
    closed under it) leaves its ``handle_exit`` installed.  sse-starlette finds the
    server through that handler and, its ``should_exit`` set, ends every SSE answer of
    a later test in the process at once, without its last body (the SDK's
    handshake-era answers: httpx's ASGITransport "assert response_complete", seen in
    test_answered_once in a full run).  So no test inherits another's handlers."""
    import signal

    from sse_starlette.sse import AppStatus

    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in kept.items():
        now = signal.getsignal(sig)
        if now is not handler and type(getattr(now, "__self__", None)).__name__ == "Server":
            signal.signal(sig, handler)
    AppStatus.should_exit = False  # set for the process by a uvicorn handle_exit


@pytest.fixture(autouse=True)
def _spool_of_the_test(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway stopped while its store is away spills what it held to its spool folder
    (``store/spool.py``), and every gateway started later names the files there that are
    for another store: one folder per test, so that no test sees another's."""
    monkeypatch.setenv("MCP_GATEWAY_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))


@pytest.fixture(autouse=True, scope="session")
def _store_in_a_temp_folder(tmp_path_factory: pytest.TempPathFactory):
    """Nothing the tests start touches the user's real home or data folder.

    ``MCP_GATEWAY_DB`` covers gateways that inherit the environment; ``HOME`` and
    ``XDG_DATA_HOME`` cover those started with a scrubbed one (the SDK's stdio client
    passes only HOME, PATH, USER, ... to a server, so a gateway started as an upstream or
    by a host falls back to the data folder under HOME)."""
    home = tmp_path_factory.mktemp("home")
    names = ("MCP_GATEWAY_DB", "HOME", "XDG_DATA_HOME", "MCP_GATEWAY_STARTUP_WAIT")
    previous = {name: os.environ.get(name) for name in names}
    os.environ["MCP_GATEWAY_DB"] = str(tmp_path_factory.mktemp("store") / "gateway.db")
    os.environ["HOME"] = str(home)
    os.environ["XDG_DATA_HOME"] = str(home / ".local" / "share")
    # A gateway a test starts answers its host's first lists once every upstream's
    # first connect attempt is over (an event), not after the default 2 s: on a loaded
    # machine the demo servers take longer, and a test about something else would see
    # half a catalog.  tests/test_startup.py sets its own waits; hosts that scrub the
    # environment get ``--startup-wait 600`` on their command line.
    os.environ["MCP_GATEWAY_STARTUP_WAIT"] = "600"
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
