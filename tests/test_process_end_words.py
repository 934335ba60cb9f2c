"""A stdio server that ends its own process mid-call: the host's error says how it
ended (its exit code, or the signal; or that it closed its stdout and runs on) and that
the gateway restarts it, not only that the connection closed; the server's environment
stays out of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from tests.fixtures import make_gateway, stdio_entry

pytestmark = pytest.mark.anyio

SECRET = "env-secret-4f1c9a"


@pytest.mark.parametrize(("tool", "args", "said"), [
    ("exit_with", {"code": 3}, "the server's process exited with code 3"),
    ("kill_self", {}, "the server's process was ended by signal 9 (SIGKILL)"),
    # Its stdout closed, its process running: said at once (it waited 2 s for an exit
    # code that did not come, then said nothing of how the connection ended).
    ("close_output", {}, "the server closed its output (stdout) while its process "
                         "still runs"),
])
async def test_a_server_ending_itself_mid_call_tells_the_host_how(
        tmp_path: Path, tool: str, args: dict[str, int], said: str) -> None:
    gateway = make_gateway({"up": stdio_entry("self_ending.py", env={"UP_TOKEN": SECRET})},
                           db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        result = await client.call_tool_mcp(f"up_{tool}", args)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"upstream 'up': connection closed during tools/call '{tool}': "
                           f"{said}; the gateway restarts it"), text
    assert SECRET not in text and "UP_TOKEN" not in text


def test_a_proc_of_another_pid_namespace_tells_nothing() -> None:
    # Under 'unshare --pid' without a /proc of its own, /proc/<pid> is another
    # namespace's process: a server that had exited (pid 42 here: the outer /proc's
    # kernel thread, sleeping) was 'not exiting', and its crash told as a closed stdout.
    import shutil
    import subprocess
    import sys

    probe = ["unshare", "-Urpf", "--kill-child", sys.executable, "-c", "pass"]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True,
                                                         check=False).returncode:
        pytest.skip("no unprivileged pid namespaces here")
    script = (
        "import os, subprocess, sys\n"
        "from fast_mcp_gateway.upstream.processes import exiting\n"
        "child = subprocess.Popen([sys.executable, '-c', 'pass'])\n"
        "os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped\n"
        "print(os.getpid(), child.pid, exiting(child.pid))\n")
    done = subprocess.run([*probe[:-2], "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.split()[2] == "None", done.stdout
