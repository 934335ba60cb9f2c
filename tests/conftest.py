from __future__ import annotations

import os

import pytest

from tests import procs


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
