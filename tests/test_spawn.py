"""How stdio servers start: their own session, and (Linux) a death signal so that none
outlives a gateway killed with SIGKILL (spawn.py).  The end-to-end kill is in
test_shutdown.py; here each way a server starts is checked for the armed signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import anyio
import anyio.abc
import pytest

from fast_mcp_gateway import spawn
from fast_mcp_gateway._compat import create_process
from fast_mcp_gateway.upstream import processes

pytestmark = pytest.mark.anyio
LINUX = sys.platform.startswith("linux")

# Prints the signal armed for this process's parent's death (PR_GET_PDEATHSIG), then
# echoes one line: a live server's pipes.
REPORT = ("import ctypes, sys; s = ctypes.c_int(); p = getattr(ctypes.CDLL(None), 'prctl', None);"
          " p and p(2, ctypes.byref(s)); print(s.value, flush=True);"
          " print(sys.stdin.readline().strip(), flush=True)")


@pytest.fixture(params=[pytest.param(("asyncio", {}), id="asyncio"),
                        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return request.param  # type: ignore[no-any-return]


async def _report(process: anyio.abc.Process) -> tuple[int, str]:
    """The child's armed signal and its echo of one line; then it has ended."""
    assert process.stdin is not None and process.stdout is not None
    try:
        await process.stdin.send(b"ping\n")
        out = b""
        with anyio.fail_after(30):
            while out.count(b"\n") < 2:
                out += await process.stdout.receive()
            assert await process.wait() == 0
        armed, echoed = out.decode().split()
        return int(armed), echoed
    finally:
        await process.aclose()


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_connect_attempts_server_dies_with_the_gateway() -> None:
    # What upstream/stdio_tap.py spawns with.
    process = await create_process(sys.executable, ["-c", REPORT], env=None,
                                   errlog=sys.stderr)
    assert os.getsid(process.pid) == process.pid  # its own session, as the SDK's
    assert await _report(process) == (signal.SIGTERM, "ping")


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
async def test_an_early_started_server_dies_with_the_gateway() -> None:
    (early,) = await processes.spawn_early([(sys.executable, ["-c", REPORT], {}, None)])
    try:
        assert await _report(early.process) == (signal.SIGTERM, "ping")
    finally:
        await processes.discard_early()


async def test_where_there_is_no_prctl_a_server_starts_as_before(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert spawn.death_signal_setup("darwin") is None
    assert spawn.death_signal_setup("win32") is None
    monkeypatch.setattr(spawn, "death_signal_setup", lambda: None)
    process = await spawn.open_server_process(sys.executable, ["-c", REPORT], env=None,
                                              stderr=subprocess.DEVNULL)
    armed, echoed = await _report(process)
    assert echoed == "ping" and (armed == 0 or not LINUX)
