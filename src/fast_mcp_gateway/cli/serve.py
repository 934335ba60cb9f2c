"""``mcp-gateway serve`` once its settings and config are checked: spawn, run, stop.

``_spawn_first`` starts the stdio upstreams before the server stack is imported
(``early_starts``: from what), then builds the ``Gateway`` and serves it until the host
goes away or a signal says stop (``_serve``, with the ``_hard_exit`` backstop).
``bind_refusal`` and ``announcement`` are what ``serve`` refuses and tells a person
about who can reach it.  A module apart from ``cli/main.py`` (the parser and the
dispatch), which imports it for ``serve`` only: it imports the standard library and what
the parser has loaded already, so ``serve`` loads nothing more before the spawn.
"""

from __future__ import annotations

import errno
import gc
import ipaddress
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import anyio

from fast_mcp_gateway.cli.log_format import say
from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.config.settings import (
    HOW_TO_ADD_A_TOKEN,
    GatewaySettings,
    is_loopback,
)
from fast_mcp_gateway.config.settings import bind_refusal as bind_refusal  # serve's check
from fast_mcp_gateway.errors import BackgroundTaskFailed


def early_starts(config: GatewayConfig, settings: GatewaySettings | None = None
                 ) -> list[tuple[str, list[str], dict[str, str], str | None]]:
    """What every enabled stdio replica of ``config`` is started from (over stdio with
    ``--profile``: of the profile's servers only, as ``Gateway`` runs no others)."""
    only = None
    if settings is not None and settings.transport == "stdio" and settings.profile is not None:
        # Only with a profile: front.profiles loads FastMCP, which a plain serve must
        # not wait for before spawning.
        from fast_mcp_gateway.front.profiles import profile_servers

        only = profile_servers(settings.profile, config.options)
    starts = []
    for server in config.servers.values():
        if not server.enabled or (only is not None and server.name not in only):
            continue
        for replica, _weight in server.replica_configs():
            if replica.kind == "stdio" and replica.command is not None:
                starts.append((replica.command, list(replica.args), dict(replica.env),
                               replica.cwd))
    return starts


async def _spawn_first(config: GatewayConfig, settings: GatewaySettings,
                       loop: str = "asyncio",
                       sockets: list[socket.socket] | None = None,
                       dashboard: socket.socket | None = None) -> BackgroundTaskFailed | None:
    """Start the stdio upstreams, then import and build the gateway while they start;
    serve it.  What stopped it, if a background task failed (``Gateway.failure``).

    The server stack takes seconds to import on a small machine, and each upstream
    takes as long to start: doing both at once halves the wait.  Each replica's first
    connect adopts its process (``upstream/processes.py``); one nobody adopts (a runtime
    registration replaced or disabled its server) is stopped after the first attempts.
    """
    from fast_mcp_gateway._version import GATEWAY_NAME, __version__
    from fast_mcp_gateway.front.early import EarlyAnswer, can_read_early, served_threadless
    from fast_mcp_gateway.upstream.loops import new_identity, served_here
    from fast_mcp_gateway.upstream.processes import discard_early, spawn_early

    # The host's opening request is answered meanwhile, where it can be (early.py).
    early = None
    if settings.transport == "stdio" and served_threadless() and can_read_early():
        early = EarlyAnswer(name=GATEWAY_NAME, version=__version__,
                            separator=config.options.separator,
                            identity=new_identity(served_here(settings.config, settings.store)))
        early.start()
    try:
        await spawn_early(early_starts(config, settings))
        # Importing the server stack allocates much and frees little: the collector's
        # full passes over it cost ~15 % of the CPU to the initialize answer.  What it
        # made lives as long as the process, so it is frozen (moved where no collection
        # scans it): left in the generations, the first young collection walked all of
        # it (~180,000 objects, ~45 ms of CPU) just before the answer, and every full
        # one after.  Only young passes run meanwhile (each object is walked once, in
        # its first pass, then left alone): they free the import's cyclic garbage as it
        # is made (pydantic's signature of a builtin default factory leaves a copy of
        # sys.modules in a cycle, ~20 of them), which a disabled collector let
        # gc.freeze keep for good (~0.4 MB; issue 15), at no measurable CPU.
        thresholds = gc.get_threshold()
        gc.set_threshold(*_IMPORT_THRESHOLDS)
        try:
            from fast_mcp_gateway.gateway import Gateway
        finally:
            if _MIDDLE_PASS:
                gc.collect(1)
            gc.freeze()
            gc.set_threshold(*thresholds)
        reclaim_fastmcp_logger(settings.log_level)
        for told in misspelt_variables(os.environ):
            logging.getLogger(__name__).warning("%s", told)

        if sockets and settings.port == 0:  # the port the system chose: in the banner, URLs
            settings = settings.model_copy(update={"port": sockets[0].getsockname()[1]})
        gateway = Gateway(config, settings, answer_first=settings.transport == "stdio",
                          early=early)
        detail = f"event loop: {loop}" + (
            f"; {len(config.invalid)} left out, their entries are invalid (logged above)"
            if config.invalid else "")
        # The server count once: the banner, or (none: a host launched it) this line.
        banner = announcement(settings, len(config.servers), interactive=sys.stdin.isatty(),
                              authenticated=config.options.auth is not None, detail=detail)
        if not banner:
            logging.getLogger("fast_mcp_gateway").info(
                "starting %d upstream(s) from %s over %s (%s)", len(config.servers),
                settings.config, settings.transport, detail)
        for line in banner:
            print(say(line, as_json=settings.log_format == "json",
                      instance=settings.instance_id), file=sys.stderr, flush=True)
        async with anyio.create_task_group() as tg:

            async def discard_unadopted() -> None:
                await gateway.startup.attempted.wait()
                await discard_early()

            tg.start_soon(discard_unadopted)
            await _serve(gateway, sockets, dashboard)
            tg.cancel_scope.cancel()
        return gateway.failure
    finally:
        if early is not None:
            early.close()
        with anyio.CancelScope(shield=True):
            await discard_early()


_NEVER = 1 << 30  # a collector threshold never reached: that generation is not collected
# Python 3.13's young passes promote the import's cyclic garbage (inspect's signature
# closures, each holding a copy of sys.modules) to the middle generation while it is
# still alive: there young passes never reach it, and freezing kept ~400 objects (~0.4
# MB) for good.  There the middle generation is collected too, now and then during the
# import and once before the freeze.  Up to 3.12 young passes free it all; the middle
# passes would only cost CPU (~10-15 ms to the initialize answer, measured on 3.11).
_MIDDLE_PASS = sys.version_info >= (3, 13)
_IMPORT_THRESHOLDS = (2000, 10 if _MIDDLE_PASS else _NEVER, _NEVER)


def misspelt_variables(environ: Mapping[str, str]) -> list[str]:
    """What to say of each ``MCP_GATEWAY_*`` variable of ``environ`` that is no setting
    but close to one (``MCP_GATEWAY_PROT``): ignored, as every unknown one (the keyword
    ``GatewaySettings(prot=...)`` is refused), it left the default in force unsaid.
    Others, a tool's own (``MCP_GATEWAY_NPM_TOOLS``), are not named."""
    names = [f"MCP_GATEWAY_{field.upper()}" for field in GatewaySettings.model_fields]
    unknown = [name for name in environ if name.upper().startswith("MCP_GATEWAY_")
               and name.upper() not in names]
    if not unknown:
        return []
    import difflib

    return [f"{name} is no setting and is ignored: did you mean {close[0]}?"
            for name in unknown
            if (close := difflib.get_close_matches(name.upper(), names, n=1, cutoff=0.85))]


def reclaim_fastmcp_logger(level: str) -> None:
    """FastMCP's import gives the ``fastmcp`` logger rich console handlers of its own
    and stops it propagating: its records came out in another format, wrapped over
    several lines, at INFO, and past the secret filter on the root's handler (``cli/main``
    configures logging before FastMCP is imported).  They go to the root's handler
    again, at the level ``configure_logging`` chose; FastMCP's "Error calling tool"
    line for an error raised on purpose (a refusal, an upstream's error: the answer and
    the call record say why) is dropped, as are its "Error reading resource" and "Error
    rendering prompt" lines for such errors; a crash's traceback is kept."""
    logger = logging.getLogger("fastmcp")
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    server = logging.getLogger("fastmcp.server.server")
    if not any(isinstance(f, _RaisedOnPurpose) for f in server.filters):
        server.addFilter(_RaisedOnPurpose())


class _RaisedOnPurpose(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        if record.msg.startswith("Error calling tool "):
            return bool(record.exc_info)
        if record.msg.startswith(("Error reading resource ", "Error rendering prompt ")):
            # Logged with a traceback whatever was raised: an upstream's error answer
            # (MCPError) or the gateway's own refusal (ResourceError, PromptError) is
            # an answer, not a crash.  (Imported here: FastMCP is loaded by now, and
            # this module is imported before it.)
            from fastmcp.exceptions import PromptError, ResourceError
            from mcp.shared.exceptions import MCPError

            error = record.exc_info[1] if record.exc_info else None
            return not isinstance(error, MCPError | ResourceError | PromptError)
        return True


def listen(settings: GatewaySettings) -> list[socket.socket]:
    """The HTTP/SSE listening sockets, bound before anything starts (as asyncio's
    ``create_server`` binds them: every address the host resolves to, ``SO_REUSEADDR``,
    IPv6 sockets IPv6 only), handed to uvicorn.  Bound by uvicorn instead, a port in use
    was found after the upstreams had started, and ended in a traceback.

    Raises ``OSError`` with a message for a person (``listen_problem``)."""
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {settings.host}: the name does not resolve "
                      f"({exc.strerror}); use --host 127.0.0.1 or an address of this "
                      "machine") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if sockets[1:] and address[1] == 0:  # port 0: the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(listen_problem(settings, exc)) from None
            # Listening at once: a host connecting while the gateway starts waits in the
            # backlog (uvicorn's size) instead of being refused.
            sock.listen(2048)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def listen_problem(settings: GatewaySettings, exc: OSError) -> str:
    """Why binding ``settings.host``:``settings.port`` failed, and what to do."""
    return _bind_problem(f"{settings.host}:{settings.port}", settings.host, settings.port,
                         exc, port_flag="--port or MCP_GATEWAY_PORT",
                         other_host="use --host 127.0.0.1")


class DashboardPortInUse(OSError):
    """``listen_dashboard``'s port is taken (``cli/main.py`` asks whether by another
    gateway's dashboard: ``cli/dashboard.held_by_a_gateway``)."""


def listen_dashboard(host: str, port: int) -> socket.socket:
    """The stdio dashboard's listening socket (``serve --dashboard HOST:PORT``, checked
    by ``ui.standalone.parse_address``), bound before anything starts as ``listen`` binds
    the HTTP port, and handed to ``serve_dashboard``.  Bound there instead, a port in
    use was found after the upstreams had started, and the gateway went on without it.

    Raises ``OSError`` with a message for a person (``DashboardPortInUse`` for a port
    in use)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        kind = DashboardPortInUse if exc.errno == errno.EADDRINUSE else OSError
        raise kind(_bind_problem(
            f"{shown}:{port} for the dashboard", host, port, exc,
            port_flag="--dashboard HOST:PORT (or MCP_GATEWAY_DASHBOARD)",
            other_host="use --dashboard 127.0.0.1:PORT")) from None
    return sock


def _bind_problem(where: str, host: str, port: int, exc: OSError, *, port_flag: str,
                  other_host: str) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot listen on {where}: the port is in use (another gateway, or "
                f"another program: 'ss -ltnp sport = :{port}' shows which); stop "
                f"it, or choose another port with {port_flag}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {where}: this machine has no address {host}; "
                f"{other_host} or one of its addresses")
    if exc.errno == errno.EACCES:
        return (f"cannot listen on {where}: permission denied (ports below 1024 need "
                f"privileges); choose a port above 1023 with {port_flag}")
    return f"cannot listen on {where}: {exc.strerror or exc}"


def announcement(settings: GatewaySettings, servers: int, *, interactive: bool,
                 authenticated: bool | None = None, detail: str = "") -> list[str]:
    """What ``serve`` tells a person at start-up (on stderr; stdout is the protocol's).

    Over stdio the host normally launched the gateway and nobody reads stderr live, so
    only a terminal user (stdin is a TTY) gets the explanation.  ``authenticated``:
    ``gateway.auth`` is configured (``None``: not known, no line about access);
    ``detail``: said with the server count (the event loop, entries left out).
    """
    lines: list[str] = []
    if settings.transport == "stdio":
        if interactive:
            lines += [
                f"serving {servers} server(s) from {settings.config} over stdio"
                f"{f' ({detail})' if detail else ''}.",
                "this terminal is now the MCP host: the gateway expects JSON-RPC on stdin.",
                "to use it, add this command to an MCP host (README: 'Claude Desktop'), or try "
                "it with 'mcp-gateway check' or the MCP Inspector.",
                "stop with Ctrl-C.",
            ]
        return lines
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    path = settings.path if settings.transport == "http" else "/sse"
    if _every_address(settings.host):  # http://0.0.0.0:... is no URL to give a host
        family = "IPv4 address" if "." in settings.host else "address"
        detail = f"listening on every {family}, {settings.host}" + (
            f"; {detail}" if detail else "")
        host = "<this machine's name or address>"
    lines.append(f"serving {servers} server(s) from {settings.config} at "
                 f"http://{host}:{settings.port}{path} ({settings.transport}"
                 f"{f'; {detail}' if detail else ''}); stop with Ctrl-C.")
    if (proxied := _proxied_name(settings)) is not None:
        lines.append(f"note: --allowed-host {proxied} without MCP_GATEWAY_PUBLIC_URL: clients "
                     f"using that name (through a proxy or tunnel on this machine) are told "
                     f"http://{host}:{settings.port} in OAuth metadata (gateway.auth.jwt), "
                     "and the dashboard does not know a proxy's path; set "
                     "MCP_GATEWAY_PUBLIC_URL to the URL they use (README: 'Behind a reverse "
                     "proxy').")
    if authenticated:
        lines.append("every request needs a bearer token (gateway.auth).")
    elif not is_loopback(settings.host):
        lines.append(f"WARNING: listening on {settings.host}, reachable from other machines; "
                     "anyone who can reach this port can use the gateway's tools.")
    elif settings.allow_unauthenticated_admin:
        lines.append("WARNING: --allow-unauthenticated-admin: any program on this machine can "
                     "manage the gateway, including adding servers that run commands.")
    elif authenticated is False:
        lines.append("no gateway.auth: programs on this machine may list and call tools; admin "
                     f"operations are refused until you add a token ({HOW_TO_ADD_A_TOKEN}).")
    return lines


def _proxied_name(settings: GatewaySettings) -> str | None:
    """A name of ``--allowed-host`` other machines reach a loopback gateway by (through
    a proxy or tunnel), when no ``MCP_GATEWAY_PUBLIC_URL`` says the URL they use."""
    if settings.public_url or not is_loopback(settings.host):
        return None
    for entry in settings.allowed_hosts:
        name = (entry[1:].partition("]")[0] if entry.startswith("[")
                else entry.rpartition(":")[0] if entry.count(":") == 1 else entry)
        if "*" not in entry and not is_loopback(name):
            return entry
    return None


def _every_address(host: str) -> bool:
    """Whether ``host`` is the unspecified address (``0.0.0.0``, ``::``): every one."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


async def _serve(gateway: Any, sockets: list[socket.socket] | None = None,
                 dashboard: socket.socket | None = None) -> None:
    """Serve until the host goes away or a signal says stop; stop quietly either way.

    stdio: on SIGTERM/SIGINT the upstreams are terminated at once and serving is
    cancelled.  The SDK's stdio server may read stdin in a worker thread that
    cancellation cannot interrupt, so if an orderly stop has not finished after
    ``_EXIT_GRACE`` seconds the process exits hard (its upstreams are gone by then).
    HTTP/SSE: uvicorn stops gracefully on the same signals (open connections, then the
    lifespan, which stops the upstreams); the hard exit is only a backstop.
    A host that closes the gateway's stdout is a normal end, not a crash.
    """
    http = gateway.settings.transport != "stdio"
    log = logging.getLogger("fast_mcp_gateway")
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT,
                                            signal.SIGHUP) as signals:
                async for received in signals:
                    if received == signal.SIGHUP:
                        tg.start_soon(gateway.reload_on_signal, "SIGHUP")
                        continue
                    log.info("received %s: stopping", signal.Signals(received).name)
                    timer = threading.Timer(hard_exit_after(gateway.settings)
                                            if http else _EXIT_GRACE,
                                            _hard_exit, args=(gateway,))
                    timer.daemon = True
                    timer.start()
                    if http:
                        gateway.request_stop()
                        return
                    gateway.kill_upstreams()
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signal)
        try:
            await gateway.run_async(sockets=sockets, dashboard=dashboard)
        except* (BrokenPipeError, ConnectionResetError):
            log.info("the host closed the gateway's stdout: stopping")
            gateway.kill_upstreams()
        except* BackgroundTaskFailed:
            pass  # it stopped: ``gateway.failure`` says why, ``main`` exits with 1
        tg.cancel_scope.cancel()


_EXIT_GRACE = 2.0


def hard_exit_after(settings: Any) -> float:
    """Seconds from a signal to an HTTP/SSE gateway's hard exit: uvicorn's grace for
    requests (``stop_grace`` in whole seconds: ``http/serving.py``), then ``stop_grace``
    for admin operations, then as long again for the rest.  Three times ``stop_grace``
    came before uvicorn's grace had ended for a value under a second (0.2: 0.6 s)."""
    grace = float(settings.stop_grace)
    return math.ceil(grace) + 2 * grace


def _spill_in_flight(gateway: Any) -> int:
    """The hard exit's part for admin operations in flight (in its thread): wait up to
    their grace, then spill those still running as unfinished, unless the orderly stop
    spilled them already (``ControlPlane.unfinished`` hands each out once).  How many."""
    recorder = gateway.recorder
    spool = getattr(recorder, "spool", None)
    control = gateway.control
    until = time.monotonic() + control.in_flight.grace
    while len(control.in_flight) and time.monotonic() < until:
        time.sleep(0.05)  # a daemon thread: the event loop may still be finishing them
    if not (len(control.in_flight) and control.store is not None and spool is not None):
        return 0
    unfinished = control.unfinished()
    if not unfinished:
        return 0
    logging.getLogger("fast_mcp_gateway").warning(
        "exiting with %d admin operation(s) still running: %s", len(unfinished),
        "; ".join(f"{e.action} {e.target or ''} by {e.actor}" for e in unfinished))
    spool.hold_audit(unfinished, "admin operations still running at the hard exit")
    spool.write()
    return len(unfinished)


def _hard_exit(gateway: Any) -> None:
    """The backstop for a stop that hangs; it never cuts the call log's final flush, or
    the spill of what is held for an unreachable store, short (that is bounded by
    ``shutdown_flush_timeout`` itself), nor an admin operation in flight within the
    stop's wait for it (``admin/in_flight.py``): one still running then, before the
    orderly stop spilled it, is named and spilled as unfinished here."""
    from fast_mcp_gateway.front.stdio import restore_blocking

    recorder = gateway.recorder
    spool = getattr(recorder, "spool", None)
    _spill_in_flight(gateway)
    deadline = time.monotonic() + gateway.settings.shutdown_flush_timeout
    while (recorder is not None and time.monotonic() < deadline
           and ((not recorder.stopped and recorder.pending)
                or (spool is not None and spool.holding))):
        time.sleep(0.05)  # a daemon thread: the event loop may still be writing or spilling
    restore_blocking()
    os._exit(0)
