"""The HTTP express lane with a raw client: gateway and upstream CPU per call, A/B.

    python benchmarks/http_raw.py [--calls 3000] [--rounds 4] [--base PYTHON]
                                  [--gap-us 300] [--relay] [--tls] [--auth]
                                  [--upstream auto|legacy|2026-07-28] [--host auto|legacy]

A client that parses nothing (one keep-alive connection, the same canned 2026-07-28
``tools/call`` POST each time, the answer read by ``Content-Length``) calls
``upstream.py --http`` directly (``direct``) and through ``mcp-gateway serve
--transport http`` (``this``, and ``base`` run by another install's ``--base``
python), rounds interleaved, the order alternating.  Printed per target: the
gateway's CPU per call (``/proc``), the upstream's CPU per call, and the p50.

An SDK client spends ~0.5 ms of CPU per call itself, and on two shared cores the
HTTP rows of ``run.py`` spread by 0.1 ms from run to run; without it, the gateway's
CPU per call repeats to a few microseconds, which is what a change to the lane's
code shows up in.

``--relay`` adds ``relay``: the byte copier (``relay.py --tcp``) in front of the
upstream, the floor of any middle process.  Each middle's CPU is also split into user
and system time (``/proc/PID/stat``, clock ticks: +-1 tick over a round's calls).

``--upstream legacy`` has the gateways open a handshake-era session with the upstream
(``protocol: legacy``: an ``Mcp-Session-Id``, SSE answers): the lane's calls then go
through ``HttpTap``'s handshake-era path (or, before it, the SDK's client).  Printed
too: the TCP connections opened per call while each target ran (``ActiveOpens`` of
the network namespace, ``bench_harness.tcp_opens``: ``direct``'s figure is what the
rest of the machine opened meanwhile).

``--tls``: the upstream serves ``https`` (a certificate of a private CA made for the
run, trusted by ``SSL_CERT_FILE`` in the gateways' environment, as a user would); the
gateways' clients still reach them over plain HTTP, ``direct`` over TLS.  Give
``--upstream`` an era there: ``auto`` opens 2026-07-28 only where the side door applies
(an older build opens the handshake era towards https).

``--host legacy``: the client is a handshake-era host instead (the session lane,
``http/session_lane.py``): a session opened on each target (``initialize``,
``notifications/initialized``), then each call's POST under its ``Mcp-Session-Id`` on a
new connection, as the SDK's client sends it (it leaves each SSE answer's connection
unread to the end, so none is pooled), the SSE answer read to its end.

``--auth``: the upstream accepts only a bearer token (``upstream.py``'s
``BENCH_UPSTREAM_BEARER``), ``direct`` sends it, and the gateways get it from a token
endpoint served by this process (``auth: {type: client_credentials}``: one token for
the run, on the SDK's client path before the side door carried it, on ``HttpTap``
since).

``--gap-us N`` adds ``direct-gap``: direct calls with the client sleeping N us
between a call's answer and the next call, roughly the time a middle process adds.
On this machine the upstream itself then spends more CPU per call and answers
later (its core went idle meanwhile): part of any middle process's cost that is
paid in the upstream, not in the middle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_harness import (
    PY,
    RELAY,
    Workspace,
    cpu_s,
    delta,
    load,
    tcp_opens,
    user_system,
)
from bench_http import free_port, gateway_config, http_upstream, process, until_serving

_ERA = "2025-06-18"  # --host legacy's
_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
         "io.modelcontextprotocol/clientCapabilities": {},
         "io.modelcontextprotocol/clientInfo": {"name": "http_raw", "version": "1"}}


def session_request(port: int, tool: str, session: str) -> bytes:
    """One handshake-era ``tools/call`` POST on ``session``."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": {"text": "hello"}}}, separators=(",", ":")).encode()
    head = (f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            "accept: application/json, text/event-stream\r\ncontent-type: application/json\r\n"
            f"mcp-session-id: {session}\r\nmcp-protocol-version: {_ERA}\r\n"
            f"user-agent: http_raw\r\ncontent-length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def open_session(port: int) -> str:
    """A handshake-era session on ``port``'s ``/mcp`` (``initialize``, ``initialized``)."""
    import httpx2

    accept = {"accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        opened = await http.post("/mcp", headers=accept, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": _ERA, "capabilities": {},
                "clientInfo": {"name": "http_raw", "version": "1"}}})
        session = opened.headers["mcp-session-id"]
        done = await http.post("/mcp", headers={**accept, "mcp-session-id": session,
                                                "mcp-protocol-version": _ERA},
                               json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        if done.status_code != 202:
            raise RuntimeError(f"port {port} refused the session's initialized: {done}")
    return session


async def session_calls(port: int, tool: str, n: int, session: str) -> list[float]:
    """``n`` sequential calls on ``session``, each on a new connection; latencies (s)."""
    data, latencies = session_request(port, tool, session), []
    for _ in range(n):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            got = b""
            while not got.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's end
                more = await reader.read(65536)
                if not more:
                    raise RuntimeError(f"port {port} ended its answer early: {got[:300]!r}")
                got += more
            latencies.append(time.perf_counter() - started)
        finally:
            writer.close()
        if not got.startswith(b"HTTP/1.1 200 ") or b'"hello"' not in got \
                or b'"isError":true' in got:
            raise RuntimeError(f"unexpected answer from port {port}: {got[:400]!r}")
    return latencies


_BEARER = "bench-upstream-token-0123456789abcdef"  # --auth: the upstream's one token


async def token_endpoint() -> tuple[asyncio.Server, str]:
    """``--auth``'s authorization server: any POST gets ``_BEARER`` for an hour (a
    client-credentials answer); its token URL."""
    answer = json.dumps({"access_token": _BEARER, "token_type": "bearer",
                         "expires_in": 3600}).encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        size = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(size)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: %d\r\n\r\n%b"
                     % (len(answer), answer))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/token"


def with_auth(config: Path, token_url: str) -> Path:
    """``config``'s one server with a client-credentials ``auth`` at ``token_url``."""
    config.write_text(config.read_text() + "\n".join([
        "    auth:", "      type: client_credentials", "      client_id: bench",
        "      client_secret: bench-secret", f"      token_url: {token_url}"]) + "\n")
    return config


def request(port: int, tool: str, bearer: str | None = None) -> bytes:
    """One 2026-07-28 ``tools/call`` POST, as the MCP SDK's client sends it: no log
    level (FastMCP's ``Client``, ``run.py``'s host, asks for ``debug`` on every call);
    with ``bearer``, its ``Authorization``."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": {"text": "hello"}, "_meta": _META}},
        separators=(",", ":")).encode()
    head = (f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            "accept: application/json, text/event-stream\r\ncontent-type: application/json\r\n"
            f"mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: {tool}\r\n"
            + (f"authorization: Bearer {bearer}\r\n" if bearer else "")
            + f"user-agent: http_raw\r\ncontent-length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def calls(port: int, tool: str, n: int, gap: float = 0.0,
                session: str | None = None, tls: ssl.SSLContext | None = None,
                bearer: str | None = None) -> list[float]:
    """``n`` sequential calls on one connection (on ``session``: each on its own; over
    TLS with ``tls``; with ``bearer``); their latencies (s)."""
    if session is not None:
        return await session_calls(port, tool, n, session)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    data, latencies = request(port, tool, bearer), []
    try:
        for _ in range(n):
            started = time.perf_counter()
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")]
            if not head.startswith(b"HTTP/1.1 200 ") or not lengths:
                raise RuntimeError(f"port {port} did not answer 200 with a Content-Length "
                                   f"(a JSON answer): {head[:300]!r}")
            body = await reader.readexactly(lengths[0])
            latencies.append(time.perf_counter() - started)
            if b'"hello"' not in body or b'"isError":true' in body:
                raise RuntimeError(f"unexpected answer from port {port}: {body[:300]!r}")
            if gap:
                await asyncio.sleep(gap)
    finally:
        writer.close()
        await writer.wait_closed()
    return latencies


def private_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA's certificate and one it signed for 127.0.0.1 with its key, in ``folder``;
    ``SSL_CERT_FILE`` (this process's and its children's) trusts the CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "http_raw CA")])

    def made(subject: x509.Name, public: object, *extensions: x509.ExtensionType) -> bytes:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                   .public_key(public).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=2)))
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths[0].write_bytes(made(ca_name, ca_key.public_key(),
                              x509.BasicConstraints(ca=True, path_length=None)))
    paths[1].write_bytes(made(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream")]), key.public_key(),
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.environ["SSL_CERT_FILE"] = str(paths[0])
    return paths


async def main(args: argparse.Namespace) -> None:
    pythons = {"this": PY, **({"base": args.base} if args.base else {})}
    with tempfile.TemporaryDirectory(prefix="http-raw-") as root, contextlib.ExitStack() as ps:
        ws = Workspace(Path(root), args.upstream, 10.0)
        tls = private_ca(ws.root) if args.tls else None
        bearer = _BEARER if args.auth else None
        up_port, up_url, upstream = await http_upstream(ws, ps, tls and tls[1:], bearer)
        issuer, token_url = await token_endpoint() if args.auth else (None, "")
        direct_tls = ssl.create_default_context(cafile=tls[0]) if tls else None
        # label -> (port, tool, gateway pid or None, gap in seconds)
        targets: dict[str, tuple[int, str, int | None, float]] = {
            "direct": (up_port, "echo", None, 0.0)}
        if args.gap_us:
            targets["direct-gap"] = (up_port, "echo", None, args.gap_us / 1e6)
        if args.relay:
            port = free_port()
            relay = ps.enter_context(process([str(RELAY), "--tcp", str(port), str(up_port)],
                                             ws.logs / "relay.log"))
            targets["relay"] = (port, "echo", relay.pid, 0.0)
        for label, python in pythons.items():
            port = free_port()
            config = gateway_config(ws, label, up_url, None)
            if args.auth:
                config = with_auth(config, token_url)
            argv = ["-m", "fast_mcp_gateway", "serve", "--transport", "http", "--host",
                    "127.0.0.1", "--port", str(port), "--config",
                    str(config), "--log-level", "WARNING",
                    "--db", str(ws.root / f"store-{label}.db")]
            proc = ps.enter_context(process(argv, ws.logs / f"gw-{label}.log", None, python))
            await until_serving(f"http://127.0.0.1:{port}/mcp", "auto", None, "up_echo", 120)
            targets[label] = (port, "up_echo", proc.pid, 0.0)
        sessions = {label: await open_session(port) if args.host == "legacy" else None
                    for label, (port, _, _, _) in targets.items()}
        for label, (port, tool, pid, _) in targets.items():  # warm-up
            await calls(port, tool, 300, session=sessions[label],
                        tls=direct_tls if pid is None else None,
                        bearer=bearer if pid is None else None)
        cpu: dict[str, list[float]] = {label: [] for label in targets}
        up_cpu: dict[str, list[float]] = {label: [] for label in targets}
        split: dict[str, list[tuple[float, float]]] = {label: [] for label in targets}
        p50: dict[str, list[float]] = {label: [] for label in targets}
        conns: dict[str, list[float]] = {label: [] for label in targets}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}: load {load()}", file=sys.stderr)
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for label in order:
                port, tool, pid, gap = targets[label]
                before, up_before, ticks = cpu_s(pid), cpu_s(upstream.pid), user_system(pid)
                opens = tcp_opens()
                latencies = await calls(port, tool, args.calls, gap, sessions[label],
                                        direct_tls if pid is None else None,
                                        bearer if pid is None else None)
                conns[label].append(((tcp_opens() or 0) - (opens or 0)) / args.calls)
                used, up_used = delta(cpu_s(pid), before), delta(cpu_s(upstream.pid), up_before)
                after = user_system(pid)
                if ticks is not None and after is not None:
                    split[label].append((1e6 * (after[0] - ticks[0]) / args.calls,
                                         1e6 * (after[1] - ticks[1]) / args.calls))
                if used is not None:
                    cpu[label].append(1e6 * used / args.calls)
                if up_used is not None:
                    up_cpu[label].append(1e6 * up_used / args.calls)
                p50[label].append(1e6 * statistics.median(latencies))
                mid = f"middle {cpu[label][-1]:.0f} us, " if used is not None else ""
                print(f"  {label:10s} {mid}upstream {up_cpu[label][-1]:.0f} us, "
                      f"p50 {p50[label][-1]:.0f} us, {conns[label][-1]:.2f} connections "
                      "per call", file=sys.stderr)
        print("medians over rounds (CPU per call: the process's threads' run time, /proc)")
        for label in targets:
            mid = (f"middle CPU {statistics.median(cpu[label]):6.1f} us "
                   f"({', '.join(f'{v:.0f}' for v in cpu[label])}; user "
                   f"{statistics.median(u for u, _ in split[label]):.0f} + system "
                   f"{statistics.median(s for _, s in split[label]):.0f}), "
                   if cpu[label] and split[label] else " " * 10)
            print(f"{label:10s} {mid}upstream CPU {statistics.median(up_cpu[label]):6.1f} us, "
                  f"p50 {statistics.median(p50[label]):6.0f} us, "
                  f"{statistics.median(conns[label]):.2f} connections per call")
        print(f"load at end: {load()}")
        if issuer is not None:
            issuer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=lambda v: max(1, int(v)), default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--base", help="another install's python (e.g. main's .venv)")
    parser.add_argument("--relay", action="store_true",
                        help="also measure the byte relay (relay.py --tcp)")
    parser.add_argument("--auth", action="store_true",
                        help="the upstream takes a bearer; the gateways get it by "
                             "auth: client_credentials")
    parser.add_argument("--tls", action="store_true",
                        help="the upstream serves https (a private CA, SSL_CERT_FILE)")
    parser.add_argument("--upstream", default="auto", choices=("auto", "legacy", "2026-07-28"),
                        help="the era of the gateways' session with the upstream")
    parser.add_argument("--host", default="auto", choices=("auto", "legacy"),
                        help="the client's era: legacy, a handshake-era session")
    parser.add_argument("--gap-us", type=float, default=0.0,
                        help="also call direct with this pause between calls")
    asyncio.run(main(parser.parse_args()))
