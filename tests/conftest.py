from __future__ import annotations

import os

import pytest

from tests import procs
from tests.pg import pg_cluster, pg_url  # noqa: F401 - fixtures for the PostgreSQL tests


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


@pytest.fixture(autouse=True, scope="session")
def _store_in_a_temp_folder(tmp_path_factory: pytest.TempPathFactory):
    """Gateways the tests start as subprocesses record calls here, not in $HOME."""
    previous = os.environ.get("MCP_GATEWAY_DB")
    os.environ["MCP_GATEWAY_DB"] = str(tmp_path_factory.mktemp("store") / "gateway.db")
    yield
    if previous is None:
        os.environ.pop("MCP_GATEWAY_DB", None)
    else:
        os.environ["MCP_GATEWAY_DB"] = previous
