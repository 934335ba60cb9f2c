"""The HTTP front: hosts over streamable HTTP on 127.0.0.1, side by side with direct.

One upstream (``upstream.py --http``) serves every target, so any difference is the
front's:

* direct:        client --HTTP--> upstream
* relay:         client --TCP--> ``relay.py --tcp`` (bytes copied, nothing parsed)
  --TCP--> upstream: the floor of any HTTP middle process on this machine
* gateway:       client --HTTP--> ``mcp-gateway serve --transport http`` (no auth)
  --HTTP--> upstream
* gateway+token: client --HTTP (static bearer token)--> a second gateway with
  ``gateway.auth`` --HTTP--> upstream
* gateway+jwt:   the same second gateway, called with an RS256 JWT (fixed public key)
* fastmcp:       client --HTTP--> FastMCP's proxy (``fastmcp_proxy.py --http``, one
  persistent upstream session) --HTTP--> upstream
* gateway/stdio: client --HTTP--> a third gateway --stdio--> its own ``upstream.py``
  (the commonest deployment: local stdio servers offered over HTTP)
* fastmcp/stdio: client --HTTP--> FastMCP's proxy --stdio--> its own ``upstream.py``

The two ``/stdio`` rows have no direct twin (a stdio server is not reachable over HTTP
without a middle process): they read against ``direct`` (the same program serving HTTP
itself) and against each other.

The two auth rows share one gateway process, so their difference is the verification
itself (the JWT is verified per request, or served from the verifier's cache).  Each
round measures every target in an order shuffled anew each round and notes the load
average first.

``MCP_GATEWAY_BENCH_BASELINE=/path/to/other/venv/bin/python`` adds ``gateway@base``,
``gateway+jwt@base`` and ``gateway/stdio@base``: the same three gateways run by another
install (e.g. the main branch), for a before/after in one interleaved run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
from bench_harness import (
    DIRECT,
    FASTMCP,
    FASTMCP_PROXY,
    GATEWAY,
    PY,
    RELAY,
    RELAY_LABEL,
    UPSTREAM,
    UPSTREAM_TOOLS,
    Endpoint,
    Running,
    Workspace,
    children_of,
    cmdline,
    interleaved_latency,
    memory_mb,
    percentile,
    rotated,
    sequential_latency,
    throughput,
    wait_no_children,
)
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

GATEWAY_TOKEN, GATEWAY_JWT = "gateway+token", "gateway+jwt"
GATEWAY_STDIO, FASTMCP_STDIO = "gateway/stdio", "fastmcp/stdio"
HTTP_TARGETS = (DIRECT, RELAY_LABEL, GATEWAY, GATEWAY_TOKEN, GATEWAY_JWT, FASTMCP, GATEWAY_STDIO,
                FASTMCP_STDIO)
BENCH_TOKEN = "bench-token-0123456789abcdef"  # a throwaway, loopback-only credential
Log = Callable[[str], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_client(url: str, protocol: str, auth: str | None = None) -> Client[Any]:
    return Client(StreamableHttpTransport(url, auth=auth), mode=protocol, timeout=120,
                  init_timeout=120)


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None,
            python: str = PY) -> Any:
    """A child process (stderr to ``log``), terminated and reaped on exit."""
    with log.open("wb") as err:
        proc = subprocess.Popen([python, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def until_serving(url: str, protocol: str, auth: str | None, tool: str,
                        within: float) -> None:
    """Poll until ``url`` lists ``tool`` (the server is up and its upstream connected)."""
    deadline = time.monotonic() + within
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            async with http_client(url, protocol, auth) as client:
                if tool in {t.name for t in await client.list_tools()}:
                    return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        await anyio.sleep(0.2)
    raise RuntimeError(f"{url} did not serve {tool} within {within:g} s ({last!r})")


async def http_upstream(ws: Workspace, stack: contextlib.ExitStack,
                        tls: tuple[Path, Path] | None = None,
                        bearer: str | None = None) -> tuple[int, str, Any]:
    """``upstream.py --http`` on a free port (a child of ``stack``), once it serves: its
    port, its MCP URL and its process (the standalone tools' one upstream); over TLS
    with ``tls`` (its certificate and key: ``SSL_CERT_FILE`` must trust it); accepting
    only ``bearer`` when given."""
    port = free_port()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/mcp"
    proc = stack.enter_context(process([str(UPSTREAM), "--http", str(port),
                                        *(map(str, tls) if tls else ())],
                                       ws.logs / "upstream.log",
                                       {"BENCH_UPSTREAM_BEARER": bearer} if bearer else None))
    await until_serving(url, ws.protocol, bearer, "echo", 120)
    return port, url, proc


def gateway_config(ws: Workspace, tag: str, upstream_url: str | None, auth: str | None,
                   protocol: str | None = None) -> Path:
    """A servers.yaml with the one upstream: by URL, or (``None``) spawned over stdio;
    ``protocol`` (the gateway -> upstream mode) defaults to the run's."""
    config = ws.root / f"servers-{tag}.yaml"
    where = ([f"    url: {upstream_url}"] if upstream_url is not None else
             [f"    command: {json.dumps(PY)}", f"    args: {json.dumps([str(UPSTREAM)])}"])
    lines = ["servers:", "  up:", *where, f"    protocol: {protocol or ws.protocol}"]
    if auth:
        lines = ["gateway:", "  auth:", *auth.splitlines(), *lines]
    config.write_text("\n".join(lines) + "\n")
    return config


def auth_section(public_key: str) -> str:
    """``gateway.auth`` (indented under it): the bench token by digest, and RS256 JWTs."""
    import hashlib

    key = "\n".join("          " + line for line in public_key.strip().splitlines())
    return "\n".join([
        "    tokens:",
        "      - name: bench",
        f"        sha256: {hashlib.sha256(BENCH_TOKEN.encode()).hexdigest()}",
        "        scopes: [tools]",
        "    jwt:",
        "      issuer: https://idp.bench.invalid/",
        "      audience: mcp-gateway",
        "      public_key: |",
        key,
    ])


@contextlib.asynccontextmanager
async def http_targets(ws: Workspace, plan: Any, log: Log, protocol: str, tag: str = "http"
                       ) -> AsyncIterator[dict[str, Running]]:
    """Start the upstream, both gateways and the proxy; connect one client to each, in
    ``protocol`` mode (clients, gateways and proxies to the upstream alike); ``tag``
    names the phase's configs, stores and logs."""
    from fastmcp.server.auth.providers.jwt import RSAKeyPair

    keys = RSAKeyPair.generate()
    jwt = keys.create_token(subject="bench-user", issuer="https://idp.bench.invalid/",
                            audience="mcp-gateway", scopes=["tools"],
                            expires_in_seconds=24 * 3600)
    ports = {name: free_port() for name in ("up", "relay", "gw", "gwa", "proxy", "gwb",
                                            "gwab", "gws", "proxys", "gwsb")}
    baseline = os.environ.get("MCP_GATEWAY_BENCH_BASELINE")
    up_url = f"http://127.0.0.1:{ports['up']}/mcp"
    settings = {k: v for k, v in os.environ.items() if k.startswith("MCP_GATEWAY_")}

    def serve(name: str, port: int, auth: str | None, url: str | None = up_url) -> list[str]:
        config = gateway_config(ws, name, url, auth, protocol)
        return ["-m", "fast_mcp_gateway", "serve", "--transport", "http", "--host",
                "127.0.0.1", "--port", str(port), "--config", str(config), "--log-level",
                "WARNING", "--connect-timeout", f"{ws.connect_timeout:g}",
                "--db", str(ws.root / f"store-{name}.db")]

    spawned: list[int] = []  # the /stdio rows' own upstreams
    with contextlib.ExitStack() as procs:
        log("  starting the HTTP upstream")
        upstream = procs.enter_context(process([str(UPSTREAM), "--http", str(ports["up"])],
                                               ws.logs / f"{tag}-upstream.log"))
        await until_serving(up_url, protocol, None, "echo", plan.ready_within)
        log("  starting the relay, the gateways and FastMCP's proxy")
        relay = procs.enter_context(process([str(RELAY), "--tcp", str(ports["relay"]),
                                             str(ports["up"])], ws.logs / f"{tag}-relay.log"))
        gw = procs.enter_context(process(serve(tag, ports["gw"], None),
                                         ws.logs / f"{tag}-gateway.log", settings))
        gwa = procs.enter_context(process(serve(f"{tag}-auth", ports["gwa"],
                                                auth_section(keys.public_key)),
                                          ws.logs / f"{tag}-gateway-auth.log", settings))
        proxy = procs.enter_context(process(
            [str(FASTMCP_PROXY), "--http", str(ports["proxy"]), "--mode", protocol, up_url],
            ws.logs / f"{tag}-fastmcp.log"))
        gws = procs.enter_context(process(serve(f"{tag}-stdio", ports["gws"], None, None),
                                          ws.logs / f"{tag}-gateway-stdio.log", settings))
        proxys = procs.enter_context(process(
            [str(FASTMCP_PROXY), "--http", str(ports["proxys"]), "--mode", protocol, PY,
             str(UPSTREAM)], ws.logs / f"{tag}-fastmcp-stdio.log"))
        extra = {}
        if baseline:
            gwb = procs.enter_context(process(serve(f"{tag}-base", ports["gwb"], None),
                                              ws.logs / f"{tag}-gateway-base.log", settings,
                                              baseline))
            gwab = procs.enter_context(process(serve(f"{tag}-auth-base", ports["gwab"],
                                                     auth_section(keys.public_key)),
                                               ws.logs / f"{tag}-gateway-auth-base.log",
                                               settings, baseline))
            gwsb = procs.enter_context(process(serve(f"{tag}-stdio-base", ports["gwsb"], None,
                                                     None),
                                               ws.logs / f"{tag}-gateway-stdio-base.log",
                                               settings, baseline))
            extra = {f"{GATEWAY}@base": (f"http://127.0.0.1:{ports['gwb']}/mcp", None,
                                         gwb.pid, "up_"),
                     f"{GATEWAY_STDIO}@base": (f"http://127.0.0.1:{ports['gwsb']}/mcp", None,
                                               gwsb.pid, "up_"),
                     f"{GATEWAY_JWT}@base": (f"http://127.0.0.1:{ports['gwab']}/mcp", jwt,
                                             gwab.pid, "up_")}
        urls = {DIRECT: (up_url, None, upstream.pid, ""),
                RELAY_LABEL: (f"http://127.0.0.1:{ports['relay']}/mcp", None, relay.pid, ""),
                GATEWAY: (f"http://127.0.0.1:{ports['gw']}/mcp", None, gw.pid, "up_"),
                GATEWAY_TOKEN: (f"http://127.0.0.1:{ports['gwa']}/mcp", BENCH_TOKEN, gwa.pid,
                                "up_"),
                GATEWAY_JWT: (f"http://127.0.0.1:{ports['gwa']}/mcp", jwt, gwa.pid, "up_"),
                FASTMCP: (f"http://127.0.0.1:{ports['proxy']}/mcp", None, proxy.pid, ""),
                GATEWAY_STDIO: (f"http://127.0.0.1:{ports['gws']}/mcp", None, gws.pid, "up_"),
                FASTMCP_STDIO: (f"http://127.0.0.1:{ports['proxys']}/mcp", None, proxys.pid,
                                ""),
                **extra}
        async with contextlib.AsyncExitStack() as clients:
            runs: dict[str, Running] = {}
            for label, (url, auth, pid, prefix) in urls.items():
                await until_serving(url, protocol, auth, prefix + "echo", plan.ready_within)
                client = await clients.enter_async_context(http_client(url, protocol, auth))
                ep = Endpoint(label, (), prefix, frozenset(prefix + t for t in UPSTREAM_TOOLS))
                own = _own_upstream(pid) if label.endswith("/stdio") or "/stdio@" in label \
                    else None
                spawned += [own] if own is not None else []
                runs[label] = Running(ep, client, pid, None if label == DIRECT else pid,
                                      own or upstream.pid,
                                      str(getattr(client.session, "protocol_version", "")))
            yield runs
    # An upstream whose parent exited first is ours now (we are a subreaper): reap it.
    await wait_no_children(within=30, adopted=spawned)


async def http_phase(ws: Workspace, plan: Any, res: Any, log: Log, name: str = "http",
                     protocol: str | None = None) -> None:
    """Latency, throughput and CPU per call of each HTTP front, round by round; ``name``
    is the phase (``http-legacy``: every client, gateway and proxy in the handshake
    era, whatever the run's ``--protocol``)."""
    from bench_phases import Phase

    async with http_targets(ws, plan, log, protocol or ws.protocol, name) as runs:
        for label, run in runs.items():
            res.negotiated[f"{name} {label}"] = run.protocol
        for run in runs.values():  # warm-up: every code path once, nothing timed
            await sequential_latency(run, plan.warmup_calls)
            await throughput(run, plan.callers, 3)
        era = " in the handshake era" if name != "http" else ""
        ph = res.phases[name] = Phase(
            f"HTTP front{era} (streamable HTTP on 127.0.0.1, one persistent client each)",
            list(runs))
        ph.define("p50", "per-call latency p50 (ms)")
        ph.define("p95", "per-call latency p95 (ms)")
        ph.define("thr", f"throughput, {plan.callers} callers on 1 client (calls/s)",
                  "{:.0f}", "higher")
        ph.define("cpu_mid", "CPU per call, middle process (ms)", paired=False)
        ph.define("cpu_up", "CPU per call, upstream (ms)")
        ph.define("rss_mid", "RSS, middle process (MB)", "{:.0f}", paired=False)
        for r in range(plan.rounds):
            ph.start_round(r, plan.rounds, f"HTTP front{era}", log)
            order = [runs[label] for label in rotated(list(runs), r)]
            for label, got in (await interleaved_latency(order, plan.latency_calls)).items():
                if got.failed is not None:  # one target failing is a note, not the end
                    ph.notes.append(f"round {r + 1}: {label} failed: {got.failed}")
                    continue
                ph.put("p50", label, r, 1000 * percentile(got.samples, 50))
                ph.put("p95", label, r, 1000 * percentile(got.samples, 95))
                ph.put("cpu_mid", label, r, _per(got.cpu_mid, len(got.samples)))
                ph.put("cpu_up", label, r, _per(got.cpu_up, len(got.samples)))
            for run in order:
                try:
                    value: float | None = await throughput(run, plan.callers,
                                                           plan.calls_per_caller)
                except* RuntimeError as group:
                    value = None
                    ph.notes.append(f"round {r + 1}: {run.endpoint.label} throughput "
                                    f"failed: {group.exceptions[0]}")
                ph.put("thr", run.endpoint.label, r, value)
            for run in order:
                ph.put("rss_mid", run.endpoint.label, r, memory_mb(run.middle))
        ph.notes.append("gateway+token and gateway+jwt are one gateway process with "
                        "gateway.auth (static token by digest; RS256 JWT, fixed public key); "
                        "gateway has no auth")
        ph.notes.append("gateway/stdio and fastmcp/stdio reach their own upstream.py over "
                        "stdio (cpu_up is that process's); the others share the HTTP one")


def _own_upstream(pid: int) -> int | None:
    """The stdio ``upstream.py`` a gateway or proxy spawned (for its CPU)."""
    script = str(UPSTREAM).encode()
    return next((c for c in children_of(pid) if script in cmdline(c)), None)


def _per(total: float | None, count: int) -> float | None:
    return None if total is None else 1000.0 * total / count


__all__ = ["FASTMCP_STDIO", "GATEWAY", "GATEWAY_STDIO", "HTTP_TARGETS", "http_phase"]
