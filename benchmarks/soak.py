"""A long run of mixed traffic, HTTP and stdio: does the gateway's memory stay flat?

    python benchmarks/soak.py [--rounds 8] [--calls 5000] [--sessions 40]

Two gateways in front of the same two upstreams (``upstream.py`` over streamable
HTTP, and another over stdio) take ``--rounds`` rounds of the traffic a gateway that
runs for weeks meets, every value that a host chooses made new on every request (so
that anything kept per host, per client, per token or per progress token shows up as
growth).  ``mcp-gateway serve --transport http`` with a static token, as a team runs it:

* ``--calls`` 2026-07-28 ``tools/call`` POSTs (the HTTP express lane), alternating
  between the two upstreams, each with its own ``clientInfo`` name, ``client_id``,
  progress token and log level, on keep-alive connections a few calls long;
* ``--sessions`` handshake-era hosts (``fastmcp.Client``, legacy mode): each opens a
  session, lists, calls three times and closes it (the full path, the session manager);
* a tenth as many requests with a bearer token nobody issued (401), each a new one;
  unknown tools, bad JSON and calls with arguments the tool refuses;
* a ``/metrics`` scrape, ``GET /api/v1/servers``, ``/api/v1/stats/overview``, the last
  50 call records and ``/health/servers``;

and ``mcp-gateway serve`` over stdio, as a desktop host keeps it for days: ``--calls``
2026-07-28 ``tools/call`` lines on its one pipe, each its own host as above, with an
unknown tool, refused arguments and a line that is not JSON every tenth call.

After a warm-up round each gateway's RSS is read after every round (``VmRSS``, after
the round's last answer); printed: RSS per round, the growth from the first measured
round to the last and per 10,000 requests (least-squares slopes: over every measured
round, and over the last half of them), and PASS/FAIL against the target of **< 1 MB
per 10,000 requests over the last half** (what is kept per call is a call record, and
it goes to the store on disk; bounded caches, SQLite's page cache first, fill during the
first rounds: a leak keeps growing).  Exit status 1 if a request got an answer
it should not have.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_harness import PY, UPSTREAM, Workspace, load, memory_mb
from bench_http import BENCH_TOKEN, free_port, http_client, http_upstream, process, until_serving

TARGET_MB_PER_10K = 1.0
_VERSION = "2026-07-28"
_LEVELS = ("debug", "info", "warning", "error")


def config(ws: Workspace, upstream_url: str, *, auth: bool = True) -> Path:
    import hashlib

    path = ws.root / f"servers-soak{'' if auth else '-stdio'}.yaml"
    section = ["gateway:", "  auth:", "    tokens:", "      - name: soak",
               f"        sha256: {hashlib.sha256(BENCH_TOKEN.encode()).hexdigest()}",
               "        scopes: [admin]"] if auth else []
    path.write_text("\n".join([
        *section,
        "servers:", "  up:", f"    url: {upstream_url}",
        "  st:", f"    command: {json.dumps(PY)}", f"    args: {json.dumps([str(UPSTREAM)])}",
    ]) + "\n")
    return path


class Raw:
    """Requests on one keep-alive connection, answers read by Content-Length."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, method: str, path: str, body: bytes, headers: dict[str, str]
                   ) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.conn
        head = "".join(f"{k}: {v}\r\n" for k, v in {
            "host": f"127.0.0.1:{self.port}", "content-length": str(len(body)), **headers,
        }.items())
        writer.write(f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in fields:
            raise RuntimeError(f"{method} {path}: an answer without Content-Length: {raw!r}")
        answer = await reader.readexactly(int(fields["content-length"]))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return int(lines[0].split(" ")[1]), answer

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            with contextlib.suppress(OSError):
                await self.conn[1].wait_closed()
            self.conn = None


def _call(n: int, tool: str, arguments: dict[str, Any]) -> bytes:
    meta = {"io.modelcontextprotocol/protocolVersion": _VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": f"soak-host-{n}", "version": "1"},
            "io.modelcontextprotocol/logLevel": _LEVELS[n % len(_LEVELS)],
            "client_id": f"soak-client-{n}", "progressToken": f"p-{n}"}
    return json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": meta}}).encode()


def _mcp_headers(tool: str, token: str) -> dict[str, str]:
    return {"accept": "application/json, text/event-stream",
            "content-type": "application/json", "mcp-protocol-version": _VERSION,
            "mcp-method": "tools/call", "mcp-name": tool, "authorization": f"Bearer {token}"}


class Soak:
    def __init__(self, port: int) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}/mcp"
        self.serial = itertools.count(1)
        self.requests = 0
        self.wrong: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        self.requests += 1
        if not ok and len(self.wrong) < 20:
            self.wrong.append(what)

    async def lane(self, calls: int, per_connection: int = 25) -> None:
        raw = Raw(self.port)
        try:
            for i in range(calls):
                n = next(self.serial)
                tool = ("up_echo", "st_echo")[i % 2]
                status, body = await raw.send("POST", "/mcp", _call(n, tool, {"text": f"t{n}"}),
                                              _mcp_headers(tool, BENCH_TOKEN))
                self.check(status == 200 and f'"t{n}"'.encode() in body,
                           f"call {n}: {body[:200]!r}")
                if i % 10 == 0:   # the refusals and mistakes, as often as a busy day has them
                    await self.mistakes(raw, n)
                if i % per_connection == per_connection - 1:
                    await raw.close()
        finally:
            await raw.close()

    async def mistakes(self, raw: Raw, n: int) -> None:
        bad = f"not-a-token-{secrets.token_hex(8)}"
        status, _ = await raw.send("POST", "/mcp", _call(n, "up_echo", {"text": "x"}),
                                   _mcp_headers("up_echo", bad))
        self.check(status == 401, f"bad token: {status}")
        status, body = await raw.send("POST", "/mcp", _call(n, f"up_nosuch{n}", {}),
                                      _mcp_headers(f"up_nosuch{n}", BENCH_TOKEN))
        self.check(b"error" in body or b'"isError":true' in body, f"unknown tool: {body[:200]!r}")
        status, body = await raw.send("POST", "/mcp", _call(n, "up_echo", {"text": n}),
                                      _mcp_headers("up_echo", BENCH_TOKEN))
        self.check(b'"isError":true' in body or b'"error"' in body,
                   f"wrong arguments: {body[:200]!r}")
        status, _ = await raw.send("POST", "/mcp", b'{"jsonrpc": "2.0", "id": 1,',
                                   _mcp_headers("up_echo", BENCH_TOKEN))
        self.check(400 <= status < 500, f"bad JSON: {status}")

    async def sessions(self, count: int) -> None:
        for _ in range(count):
            async with http_client(self.url, "legacy", BENCH_TOKEN) as client:
                tools = {t.name for t in await client.list_tools()}
                self.check({"up_echo", "st_echo"} <= tools, f"listed {sorted(tools)[:5]}")
                for tool in ("up_echo", "st_echo", "up_echo"):
                    result = await client.call_tool(tool, {"text": "s"})
                    self.check(not result.is_error, f"session call: {result}")

    async def admin(self) -> None:
        raw = Raw(self.port)
        auth = {"authorization": f"Bearer {BENCH_TOKEN}"}
        try:
            for path in ("/metrics", "/api/v1/servers", "/api/v1/stats/overview",
                         "/api/v1/logs/invocations?limit=50", "/health/servers"):
                status, _ = await raw.send("GET", path, b"", auth)
                self.check(status == 200, f"GET {path}: {status}")
        finally:
            await raw.close()


class StdioSoak:
    """A 2026-07-28 host on the gateway's stdio front: one pipe, newline-delimited JSON,
    every call with its own ``clientInfo``, ``client_id``, progress token and log level."""

    def __init__(self, proc: asyncio.subprocess.Process, soak: Soak) -> None:
        self.proc, self.soak = proc, soak

    async def send(self, line: bytes) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + b"\n")
        await self.proc.stdin.drain()
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(self.proc.stdout.readline(),
                                                                   120))
        return answer

    async def calls(self, calls: int) -> None:
        check = self.soak.check
        for i in range(calls):
            n = next(self.soak.serial)
            tool = ("up_echo", "st_echo")[i % 2]
            answer = await self.send(_call(n, tool, {"text": f"t{n}"}))
            check(f'"t{n}"' in json.dumps(answer), f"stdio call {n}: {answer}")
            if i % 10:
                continue
            answer = await self.send(_call(n, f"st_nosuch{n}", {}))
            check("error" in answer or answer.get("result", {}).get("isError"),
                  f"stdio unknown tool: {answer}")
            answer = await self.send(_call(n, "st_echo", {"text": n}))
            check("error" in answer or answer.get("result", {}).get("isError"),
                  f"stdio wrong arguments: {answer}")
            answer = await self.send(b'{"jsonrpc": "2.0", "id": 1,')
            check(answer.get("error", {}).get("code") == -32700, f"stdio bad JSON: {answer}")


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="soak-") as root, contextlib.ExitStack() as ps:
        ws = Workspace(Path(root), "auto", 10.0)
        _, up_url, _ = await http_upstream(ws, ps)
        port = free_port()
        argv = ["-m", "fast_mcp_gateway", "serve", "--transport", "http", "--host", "127.0.0.1",
                "--port", str(port), "--config", str(config(ws, up_url)),
                "--log-level", "WARNING", "--db", str(ws.root / "store.db")]
        gateway = ps.enter_context(process(argv, ws.logs / "gateway.log"))
        await until_serving(f"http://127.0.0.1:{port}/mcp", "auto", BENCH_TOKEN, "st_echo", 120)
        with (ws.logs / "gateway-stdio.log").open("wb") as err:
            stdio = await asyncio.create_subprocess_exec(
                PY, "-m", "fast_mcp_gateway", "serve", "--config",
                str(config(ws, up_url, auth=False)), "--log-level", "WARNING",
                "--db", str(ws.root / "store-stdio.db"), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=err, limit=1 << 22)
        try:
            return await soak(args, Soak(port), gateway.pid, stdio)
        finally:
            if stdio.returncode is None:
                stdio.terminate()
                await stdio.wait()


async def soak(args: argparse.Namespace, http: Soak, http_pid: int,
               stdio_proc: asyncio.subprocess.Process) -> int:
    stdio = StdioSoak(stdio_proc, Soak(0))
    fronts = {"http": (http, http_pid), "stdio": (stdio.soak, stdio_proc.pid)}
    requests: dict[str, list[float]] = {front: [] for front in fronts}
    rss: dict[str, list[float]] = {front: [] for front in fronts}
    for r in range(args.rounds + 1):
        await http.lane(args.calls)
        await http.sessions(args.sessions)
        await http.admin()
        await stdio.calls(args.calls)
        label = "warm-up" if r == 0 else f"round {r}/{args.rounds}"
        line = []
        for front, (counted, pid) in fronts.items():
            mb = memory_mb(pid)
            line.append(f"{front} {counted.requests} requests, RSS {mb:.1f} MB")
            if r and mb is not None:
                requests[front].append(counted.requests)
                rss[front].append(mb)
        print(f"{label}: {'; '.join(line)}; load {load()}", file=sys.stderr)
    failed = 0
    for front, (counted, _) in fronts.items():
        xs, ys = requests[front], rss[front]
        half = len(ys) // 2
        overall = slope(xs, ys) * 10_000 if len(ys) > 1 else 0.0
        if len(ys) - half < 2:
            half = 0  # too few rounds for a second half of its own
        late = slope(xs[half:], ys[half:]) * 10_000 if len(ys) > 1 else 0.0
        print(f"{front} front: gateway RSS (MB) after each round: "
              f"{' '.join(f'{v:.1f}' for v in ys)}")
        print(f"  requests measured: {int(xs[-1] - xs[0]) if xs else 0} (of "
              f"{counted.requests}); growth {ys[-1] - ys[0] if ys else 0.0:+.1f} MB; slope "
              f"{overall:+.2f} MB per 10,000 requests over every round, {late:+.2f} over "
              f"the last {len(ys) - half}")
        print(f"  target: < {TARGET_MB_PER_10K:g} MB per 10,000 requests over the last "
              f"rounds (bounded caches -- SQLite's page cache, the token and guard "
              f"memories -- fill in the first ones): "
              f"{'PASS' if late < TARGET_MB_PER_10K else 'FAIL'}")
        if counted.wrong:
            print(f"  {len(counted.wrong)} unexpected answers, first: {counted.wrong[:5]}")
            failed = 1
    return failed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=40)
    sys.exit(asyncio.run(main(parser.parse_args())))
