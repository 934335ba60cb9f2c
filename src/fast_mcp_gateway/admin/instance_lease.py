"""One gateway per ``--instance-id`` on a store: the ``instance:<id>`` lease.

Two gateways started with one ``--instance-id`` (a copied unit file) both lead alerts
(the ``alerts`` lease is held by instance id: each posts every webhook and history
row), and their call records, health history and audit rows cannot be told apart.  So
each gateway holds the lease ``instance:<id>`` for its process (the holder names its
host, pid and config file), renewed every ``RENEW_SECONDS`` for ``TTL_SECONDS`` and
released at a clean stop.  One that finds the lease held by another process says so
at WARNING, once, naming that process and the fix, and at INFO when the id is its own
again (the other stopped, or was a predecessor killed without a clean stop; one on this
host and pid namespace whose pid no longer runs is taken over at the start,
``_take_from_dead``).  Store failures
are left to the change feed and the recorder to report.

A SQLite file is one gateway's, but nothing stops a second from opening it: the default
file is every gateway's that is given no ``--db`` (Claude Desktop's, and one started in
a terminal to try something).  So the lease is held on every store, and its holder
names the gateway's config file: ``others`` lists the gateways running on the store now,
and at its start (``release_unknown_names``, from ``ControlPlane.attach``) a gateway
finding one with another config file says what they share, and while any runs it frees
no server's names for being unknown to it.

The lease also says which servers the gateway's config file configures (``Lease.servers``,
renewed with it and at once after a reload): a forget of a server's pins, on any host
of the store, is refused while a running gateway configures it (``admin/pins.py:
configured_elsewhere``), with no need to read that gateway's file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Collection
from pathlib import Path

import anyio
import anyio.abc

from fast_mcp_gateway.config.names import shown_name
from fast_mcp_gateway.config.schema import GatewayConfig
from fast_mcp_gateway.routing.bindings import NameBook
from fast_mcp_gateway.store import StorageError, Store
from fast_mcp_gateway.store.records import Lease
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)

TTL_SECONDS = 30.0
RENEW_SECONDS = 10.0


PREFIX = "instance:"
_CONFIG = re.compile(r" config (.*) #[0-9a-f]{6}\Z", re.S)


def holder_of(config_source: str) -> str:
    """This process as a lease holder: its host, pid (and where that pid is one:
    ``pid_space``) and config file, and a nonce."""
    source = os.path.abspath(config_source) if os.path.exists(config_source) else config_source
    space = pid_space()
    return (f"host {socket.gethostname()} pid {os.getpid()}"
            f"{f' ns {space}' if space else ''} config {source} #{secrets.token_hex(3)}")


def pid_space() -> str | None:
    """Where this process's pid names it: its kernel's boot and pid namespace, hashed
    (None where ``/proc`` tells neither).  A host name alone does not: containers on
    host networking (Kubernetes ``hostNetwork``) share the node's name with their own
    pids, and machines cloned from one image share a name too."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        space = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{boot} {space}".encode()).hexdigest()[:12]


_PROCESS = re.compile(r"host (\S+) pid (\d+) ns ([0-9a-f]{12}) ")


def _gone(holder: str) -> int | None:
    """The pid of ``holder`` if it names this host and pid namespace (``pid_space``) and
    no process runs with that pid here now; else None (another host's or container's,
    running, or not ours to tell: this process's own pid is another gateway of this
    process, as library code may run)."""
    found = _PROCESS.match(holder)
    if found is None or found[1] != socket.gethostname() or found[3] != pid_space():
        return None
    pid = int(found[2])
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except OSError:  # another user's process (EPERM): it runs
        return None
    return None


async def _take_from_dead(store: Store, name: str, holder: str, instance_id: str,
                          servers: Collection[str]) -> None:
    """At a start, take the instance lease from a predecessor on this host that no
    longer runs (killed, crashed, OOM-killed: no clean stop released it), rather than
    warn for ``TTL_SECONDS`` that "another gateway runs" with this id -- the message a
    supervisor's restart after every crash would log.  Only at the start: a gateway
    running since whose lease is taken still says so (``_hold``)."""
    other = await store.lease(name)
    if other is None or other.expires_at <= time.time():
        return
    pid = _gone(other.holder)
    if pid is None:
        return
    await store.release_lease(name, other.holder)
    if await store.hold_lease(name, holder, TTL_SECONDS, servers):
        logger.info("--instance-id %s: taken over from pid %d on this host, which no longer "
                    "runs (it stopped without a clean stop: killed or crashed)", instance_id,
                    pid)


def configured(config: GatewayConfig) -> frozenset[str]:
    """The servers ``config``'s file configures, invalid entries too (all of it: another
    profile's servers are this file's), as the instance lease says them."""
    return frozenset({*config.servers, *config.invalid})


def config_of(holder: str) -> str | None:
    """The config file a holder names (None: a holder from before it was named)."""
    found = _CONFIG.search(holder)
    return found[1] if found else None


def host_of(holder: str) -> str:
    """The host name a holder names ("?" for one that names none)."""
    found = _WHERE.match(holder)
    return found[1] if found else "?"


_WHERE = re.compile(r"host (\S+) pid \d+(?: ns ([0-9a-f]{12}))? ")


def local(holder: str) -> bool:
    """Whether ``holder`` runs where this process does, its files this process's: this
    host and, where the holder names one, this ``pid_space`` (a container on host
    networking shares the node's host name, not its files).  One naming no pid space
    (/proc told it none, or from before it was named) is judged by its host name."""
    found = _WHERE.match(holder)
    return found is not None and found[1] == socket.gethostname() \
        and found[2] in (None, pid_space())


async def others(store: Store, holder: str) -> list[Lease]:
    """The other gateways running on ``store`` now: their unexpired instance leases."""
    now = time.time()
    return [lease for lease in await store.leases(PREFIX)
            if lease.holder != holder and lease.expires_at > now]


async def others_running(store: Store, holder: str, where: str) -> bool:
    """Whether other gateways run on ``store`` (``where``, as shown) now, or that cannot
    be told; one serving another config file is warned of, with what they share."""
    try:
        running = await others(store, holder)
    except StorageError:
        return True  # nothing is decided on a guess
    mine = config_of(holder)
    alien = [o for o in running if config_of(o.holder) not in (mine, None)]
    if alien:
        logger.warning(
            "another gateway runs on %s with another config file (%s): gateways on one "
            "store share its runtime registrations (each runs the other's), route rules, "
            "exposed names, call log and alerts; if this one serves something else, give "
            "it a store of its own with --db PATH (or MCP_GATEWAY_DB)", where,
            "; ".join(o.holder for o in alien[:3]))
    return bool(running)


async def release_unknown_names(store: Store, holder: str, names: NameBook,
                                known: set[str], source: str, where: str,
                                instance_id: str, configures: Collection[str] = ()) -> None:
    """At a start on ``store`` (``where``, as shown), free the names of servers in
    neither the config file ``source`` (all of it: another profile's servers keep
    theirs) nor the store's registrations (``known``): removed from the file while no
    gateway ran, nothing released them.  Not while another gateway runs on the store
    (``others_running``): they may be its servers.  This gateway's lease is taken first
    (``keep_instance_id`` renews it): of two starting together, each started before the
    other looked, so at least one sees the other.  The lease says the servers the
    config file ``configures`` from the start."""
    with contextlib.suppress(StorageError):
        if not await store.hold_lease(f"{PREFIX}{instance_id}", holder, TTL_SECONDS,
                                      configures):
            await _take_from_dead(store, f"{PREFIX}{instance_id}", holder, instance_id,
                                  configures)
    if await others_running(store, holder, where):
        return
    gone = sorted(names.servers() - known)
    for server in gone:
        names.release(server)
    if gone:
        logger.info("freed the exposed names of server(s) %s: in neither %s nor the servers "
                    "registered in %s (removed while no gateway ran)",
                    ", ".join(shown_name(s) for s in gone), source, where)


async def keep_instance_id(store_of: Callable[[], Store | None], instance_id: str,
                           holder: str, tried: anyio.Event | None = None,
                           config: Callable[[], GatewayConfig] | None = None,
                           reloaded: ChangeSignal | None = None, *,
                           task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                           ) -> None:
    """Hold ``instance:<instance_id>`` as ``holder`` until cancelled (see the module
    docstring), saying the servers its ``config`` file configures: renewed every
    ``RENEW_SECONDS``, and at once when they change (checked at each ``reloaded``
    notice); ``tried`` is set once the first attempt to take it is over."""
    name = f"{PREFIX}{instance_id}"
    clash = False
    task_status.started()
    try:
        while True:
            store = store_of()
            said = frozenset() if config is None else configured(config())
            if store is not None:
                try:
                    clash = await _hold(store, name, holder, instance_id, clash, said)
                except StorageError:
                    pass  # the store's outage is said by the change feed and the recorder
                except Exception:  # a check must not stop the gateway (background group)
                    logger.exception("checking --instance-id %s failed; trying again",
                                     instance_id)
            if tried is not None:
                tried.set()
            if reloaded is None or config is None:
                await anyio.sleep(RENEW_SECONDS)
            else:
                await reloaded.wait_until(functools.partial(_changed, config, said),
                                          RENEW_SECONDS)
    finally:
        store = store_of()
        if store is not None:
            # A failure leaves it to run out by itself.
            with anyio.move_on_after(2, shield=True), contextlib.suppress(StorageError):
                await store.release_lease(name, holder)


def _changed(config: Callable[[], GatewayConfig], said: frozenset[str]) -> bool:
    return configured(config()) != said


async def _hold(store: Store, name: str, holder: str, instance_id: str, clash: bool,
                servers: Collection[str] = ()) -> bool:
    """Take or renew the lease; whether another process holds it (said when it changes)."""
    if await store.hold_lease(name, holder, TTL_SECONDS, servers):
        if clash:  # news, not a problem: INFO (the clash was a WARNING)
            logger.info("--instance-id %s is this gateway's alone again", instance_id)
        return False
    if not clash:
        other = await store.lease(name)
        who, until = (other.holder, other.expires_at) if other is not None else ("?", 0.0)
        logger.warning(
            "another gateway runs with --instance-id %s (%s, its claim renewed until %s): "
            "give every gateway its own --instance-id -- two with one id both lead alerts "
            "(every webhook and alert history row twice) and their call records, health "
            "history and audit rows cannot be told apart.  (A gateway with this id killed "
            "without a clean stop holds it until then.)", instance_id, who,
            time.strftime("%H:%M:%S", time.localtime(until)))
    return True
