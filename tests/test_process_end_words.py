"""A stdio server that ends its own process mid-call: the host's error says how it
ended (its exit code, or the signal; or that it closed its stdout and runs on) and that
the gateway restarts it, not only that the connection closed; the server's environment
stays out of it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from fast_mcp_gateway._compat import wait_for_process_exit
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


async def test_a_server_closing_its_stdout_and_exiting_at_once_is_told_by_its_exit_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its stdout closed and its process exited a moment (~1 ms) later: /proc, read
    between the two, shows it running, and it was told as one that runs on, its exit
    code lost.  The interleaving made certain: ``exiting``'s first look answers what it
    did then, and the gateway's stop (after which an exit may be its own doing) waits
    for the exit; now the request waits for it, woken by it, up to ``CLOSED_GRACE``."""
    from fast_mcp_gateway.upstream import processes, stdio_tap

    real_exiting, looks = processes.exiting, []
    real_stop = stdio_tap._stop_server_process

    def exiting(pid: int) -> bool | None:
        looks.append(pid)
        return False if len(looks) == 1 else real_exiting(pid)

    async def stop_after_its_exit(process: Any, stopping: asyncio.Event) -> None:
        await wait_for_process_exit(process, 60)
        await real_stop(process, stopping)

    monkeypatch.setattr(processes, "exiting", exiting)
    monkeypatch.setattr(stdio_tap, "_stop_server_process", stop_after_its_exit)
    gateway = make_gateway({"up": stdio_entry("self_ending.py")}, db=tmp_path / "g.db")
    async with Client(gateway.server) as client:
        result = await client.call_tool_mcp("up_close_output_and_exit", {"code": 4})
    assert result.is_error and len(looks) == 1
    text = result.content[0].text  # type: ignore[union-attr]
    assert "the server's process exited with code 4; the gateway restarts it" in text, text


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


def test_the_exit_wait_holds_with_more_than_1024_files_open() -> None:
    """``failures.exits`` looked at its pidfd with ``select.select``, which refuses a
    file number of 1024 or more (ValueError): a gateway with that many files open (its
    hosts' sockets, its servers' pipes) had each lost stdio server's call end in that
    error, not in how the server ended.  Run in a process of its own with 1,100 open."""
    import resource
    import subprocess
    import sys

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1200:
        pytest.skip("this process may not open 1,200 files")
    script = (
        "import asyncio, os, resource, subprocess, sys\n"
        "from fast_mcp_gateway.upstream.failures import exits\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))\n"
        "held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]\n"
        "async def main():\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],\n"
        "                             stdin=subprocess.PIPE)\n"
        "    stopping = asyncio.Event()\n"
        "    stopping.set()  # not waited for: told at once whether it has ended\n"
        "    runs = await exits(child.pid, 60, stopping)\n"
        "    child.stdin.close()  # it ends now, and the pidfd wakes the wait\n"
        "    ended = await exits(child.pid, 600, asyncio.Event())\n"
        "    child.wait()\n"
        "    print(runs, ended)\n"
        "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"], done.stdout
