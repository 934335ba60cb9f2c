"""Where the gateway's memory goes: RSS and tracemalloc of a real gateway, real upstreams.

    python benchmarks/memory_probe.py [--upstreams 20] [--tools 50] [--top 25]
                                      [--trace] [--group lineno|traceback] [--focus TEXT]
                                      [--wait S] [--poll S] [--log PATH]
                                      [--http] [--http-upstreams] [--calls N]

Starts ``mcp-gateway serve`` (stdio) in front of ``--upstreams`` copies of
``many_tools.py`` with ``--tools`` each, waits until every tool is listed, lists three
more times (the warm state the ``lists`` phase measures) and prints the gateway's RSS.
With ``--trace`` the gateway runs under tracemalloc (which costs memory itself: compare
RSS without it) and the probe prints the largest allocation sites of the live heap,
grouped by line or by a short traceback, plus the total per first gateway frame.
``--http`` runs ``serve --transport http`` on a free loopback port instead and talks
to it over streamable HTTP (what the dashboard, REST and metrics add is there);
``--http-upstreams`` serves each upstream over streamable HTTP (``url:``) instead of
stdio; ``--calls N`` calls the first tool N times after the warm lists (``search``).
After the warm lists the gateway (run through this script, ``--inner``) is asked
(SIGUSR2) for ``gc.collect`` + ``malloc_trim`` and prints pymalloc's statistics: what
is left is live memory, not garbage; then the threads (by target), the bytecode
loaded per package (``PROBE_PACKAGE=name``: that package's modules) and, with
``PROBE_WHO=pkg,...``, who imported each package first.  ``--log PATH`` keeps the
gateway's stderr.  ``PYTHONPATH=<other>/src`` measures another tree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# The lines of the gateway's sys._debugmallocstats() (and thread census) worth printing.
_SHOWN = ("# arenas allocated current", "# arenas highwater", "# bytes in allocated blocks",
          "# bytes in available blocks", "Total ", "# threads",
          "# modules", "# who")
MANY_TOOLS = HERE / "many_tools.py"


def inner(out: Path, argv: list[str]) -> None:
    """The gateway's side: tracemalloc on, a snapshot to ``out`` on SIGUSR1."""
    if os.environ.get("PROBE_FRAMES", "0") != "0":
        tracemalloc.start(int(os.environ["PROBE_FRAMES"]))

    def dump(*_: Any) -> None:
        snap = tracemalloc.take_snapshot()
        tmp = out.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(snap, fh)
        tmp.rename(out)

    def trim(*_: Any) -> None:
        import ctypes
        import gc

        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        sys._debugmallocstats()  # to the gateway's stderr: pymalloc arenas and free blocks
        import threading
        from collections import Counter as Count

        names = Count(f"{type(t).__module__}.{type(t).__name__}"
                      f"({getattr(getattr(t, '_target', None), '__qualname__', '')})"
                      for t in threading.enumerate())
        print(f"# threads {dict(names)}", file=sys.stderr, flush=True)
        # Bytecode size per top-level package: what its code objects roughly cost.
        sizes: Count[str] = Count()
        for name, module in list(sys.modules.items()):
            cached = getattr(module, "__cached__", None)
            if cached and os.path.exists(cached):
                sizes[name.partition(".")[0]] += os.path.getsize(cached)
        top = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in sizes.most_common(30))
        print(f"# modules {len(sys.modules)}, pyc MB: {top}", file=sys.stderr, flush=True)
        if pkg := os.environ.get("PROBE_PACKAGE"):   # that package's modules, largest first
            own = Count({name: os.path.getsize(m.__cached__) for name, m in list(
                sys.modules.items()) if name.partition(".")[0] == pkg
                and getattr(m, "__cached__", None) and os.path.exists(m.__cached__)})
            top = ", ".join(f"{k} {v / 1e3:.0f}" for k, v in own.most_common(40))
            print(f"# modules of {pkg}, pyc kB: {top}", file=sys.stderr, flush=True)

    if who := os.environ.get("PROBE_WHO"):
        _watch_imports(set(who.split(",")))
    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGUSR2, trim)
    (out.parent / "pid").write_text(str(os.getpid()))
    from fast_mcp_gateway.cli.main import main

    raise SystemExit(main(argv))


def _watch_imports(names: set[str]) -> None:
    """Print (to the gateway's stderr) who first imports each package in ``names``."""
    import traceback

    class Who:
        def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
            if fullname in names:
                names.discard(fullname)
                stack = [f"{_short(f.filename)}:{f.lineno}" for f in traceback.extract_stack()
                         if "importlib" not in f.filename and f.filename != __file__]
                print(f"# who {fullname}: {' <- '.join(reversed(stack[-8:]))}",
                      file=sys.stderr, flush=True)

    sys.meta_path.insert(0, Who())  # type: ignore[arg-type]


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def gateway_pid(root: Path, trace: bool) -> int:
    if True:
        return int((root / "pid").read_text())
    # Without tracing the gateway is the client's only python child.
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me and b"fast_mcp_gateway" in cmd:
            return int(proc.name)
    raise RuntimeError("gateway process not found")


async def outer(args: argparse.Namespace) -> None:
    import anyio
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    # ``upstreams`` stops the HTTP upstreams whatever fails after each one starts (after the
    # gateway in front of them has stopped).
    with tempfile.TemporaryDirectory(prefix="gateway-mem-") as tmp, \
            contextlib.ExitStack() as upstreams:
        root = Path(tmp)
        lines = ["servers:"]
        for k in range(args.upstreams):
            argv = [str(MANY_TOOLS), "--tools", str(args.tools), "--first", str(k * args.tools)]
            if args.http_upstreams:
                port = free_port()
                upstream = subprocess.Popen(  # noqa: ASYNC220 - before measuring
                    [sys.executable, *argv, "--port", str(port)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
                upstreams.callback(upstream.wait)
                upstreams.callback(upstream.terminate)
                lines += [f"  u{k + 1:02d}:", f"    url: http://127.0.0.1:{port}/mcp"]
                continue
            lines += [f"  u{k + 1:02d}:", f"    command: {sys.executable}",
                      f"    args: {json.dumps(argv)}"]
        config = root / "servers.yaml"
        config.write_text("\n".join(lines) + "\n")
        serve = ["serve", "--config", str(config), "--log-level", "WARNING",
                 "--connect-timeout", "120", "--db", str(root / "store.db")]
        snap = root / "snap.pickle"
        cmd = [str(Path(__file__)), "--inner", str(snap), *serve]
        env = {k: v for k, v in os.environ.items()
               if k.startswith(("MCP_GATEWAY_", "HOME", "XDG_", "PATH", "PYTHONPATH",
                                 "PYTHONIMPORTTIME", "PYTHONMALLOC", "MALLOC_", "PROBE_"))}
        env["PROBE_FRAMES"] = os.environ.get("PROBE_FRAMES", "12") if args.trace else "0"
        want = args.upstreams * args.tools
        started = time.perf_counter()
        async with contextlib.AsyncExitStack() as stack:
            if args.http:
                client = await stack.enter_async_context(
                    http_gateway(cmd, env, root / "gateway.log"))
            else:
                transport = StdioTransport(sys.executable, cmd, env=env,
                                           log_file=root / "gateway.log")
                client = await stack.enter_async_context(Client(transport, timeout=300))
            pid = gateway_pid(root, args.trace)
            print(f"gateway pid {pid}; RSS at session {rss_mb(pid):.1f} MB")
            if args.wait:
                await anyio.sleep(args.wait)
                print(f"after {args.wait:g} s without a list: RSS {rss_mb(pid):.1f} MB")
            while True:
                tools = await client.list_tools_mcp(cache_mode="bypass")
                if sum(t.name.startswith("u") for t in tools.tools) >= want:
                    break
                await anyio.sleep(args.poll)
            print(f"all {want} tools listed after {time.perf_counter() - started:.1f} s; "
                  f"RSS {rss_mb(pid):.1f} MB")
            for _ in range(3):
                await client.list_tools_mcp(cache_mode="bypass")
            for _ in range(args.calls):
                await client.call_tool_mcp(tools.tools[0].name, {"query": "probe"})
            print(f"warm: RSS {rss_mb(pid):.1f} MB, peak {rss_mb(pid, 'VmHWM'):.1f} MB, "
                  f"load {os.getloadavg()[0]:.1f}")
            os.kill(pid, signal.SIGUSR2)
            await anyio.sleep(1)
            print(f"after gc.collect + malloc_trim: RSS {rss_mb(pid):.1f} MB "
                  f"(anon {rss_mb(pid, 'RssAnon'):.1f}, file {rss_mb(pid, 'RssFile'):.1f}, "
                  f"threads {rss_mb(pid, 'Threads') * 1e6 / 1024:.0f})")
            log = (root / "gateway.log").read_text()
            if args.log:
                Path(args.log).write_text(log)  # noqa: ASYNC240 - after the measurement
            for line in log.splitlines():
                if line.startswith(_SHOWN):
                    print("   ", line)
            if args.trace:
                os.kill(pid, signal.SIGUSR1)
                while not snap.exists():  # noqa: ASYNC110 - another process writes it
                    await anyio.sleep(0.1)
                with snap.open("rb") as fh:
                    report(pickle.load(fh), args)


@contextlib.asynccontextmanager
async def http_gateway(cmd: list[str], env: dict[str, str], log: Path
                       ) -> AsyncIterator[Any]:
    """``cmd`` serving streamable HTTP on a free loopback port; a client connected to
    it (polled until the server answers); the process is stopped on exit."""
    import anyio
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    port = free_port()
    cmd = [*cmd, "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as err:
        proc = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
            [sys.executable, *cmd], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 300
        while True:  # until it serves (a probe session, closed at once)
            try:
                async with Client(StreamableHttpTransport(url), timeout=300):
                    break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                await anyio.sleep(0.2)
        async with Client(StreamableHttpTransport(url), timeout=300) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def report(snap: tracemalloc.Snapshot, args: argparse.Namespace) -> None:
    snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    total = sum(s.size for s in snap.statistics("filename"))
    print(f"\ntraced live heap {total / 1e6:.1f} MB")
    per_pkg: Counter[str] = Counter()
    for stat in snap.statistics("traceback"):
        per_pkg[_owner(stat.traceback)] += stat.size
    print("\nby first project frame (else package of the allocating frame):")
    for name, size in per_pkg.most_common(args.top):
        print(f"  {size / 1e6:8.2f} MB  {name}")
    print(f"\ntop {args.top} by {args.group}:")
    stats = snap.statistics(args.group)
    if args.focus:
        stats = [s for s in stats if any(args.focus in fr.filename for fr in s.traceback)]
    for stat in stats[: args.top]:
        print(f"  {stat.size / 1e6:8.2f} MB  {stat.count:7d} blocks")
        frames = list(stat.traceback)[::-1][: 1 if args.group == "lineno" else 8]
        for fr in frames:
            print(f"        {_short(fr.filename)}:{fr.lineno}")


def _short(path: str) -> str:
    for mark in ("site-packages/", "src/"):
        if mark in path:
            return path.split(mark, 1)[1]
    return path


def _owner(tb: tracemalloc.Traceback) -> str:
    """The innermost frame in the gateway's own code, else the allocating package."""
    for fr in reversed(list(tb)):  # most recent first
        if "fast_mcp_gateway/" in fr.filename:
            return f"{_short(fr.filename)}:{fr.lineno}"
    short = _short(tb[-1].filename if len(tb) else "?")
    return short.split("/", 1)[0]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--inner"]:
        inner(Path(argv[1]), argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstreams", type=int, default=20)
    parser.add_argument("--tools", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--focus", default="",
                        help="only allocation sites with a frame in a file matching this")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds to wait before the first list (no rebuilds meanwhile)")
    parser.add_argument("--poll", type=float, default=0.05,
                        help="seconds between lists until every tool is there")
    parser.add_argument("--log", default="",
                        help="keep the gateway's stderr here (e.g. with PYTHONIMPORTTIME=1)")
    parser.add_argument("--group", choices=("lineno", "traceback"), default="lineno")
    parser.add_argument("--http", action="store_true",
                        help="serve --transport http (on a free loopback port), not stdio")
    parser.add_argument("--http-upstreams", action="store_true",
                        help="serve the upstreams over streamable HTTP (url:), not stdio")
    parser.add_argument("--calls", type=int, default=0,
                        help="tool calls after the warm lists (of the first tool)")
    args = parser.parse_args(argv)
    import anyio

    anyio.run(outer, args)


if __name__ == "__main__":
    main()
