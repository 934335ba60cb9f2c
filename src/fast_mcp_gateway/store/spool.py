"""What was held for the store, spilled to a local file when the gateway stops while
the store is away.

A stop waited for an unreachable store to take the records it held, for the whole
flush budget (``shutdown_flush_timeout``, 30 s: an orchestrator's whole grace period),
and then dropped them.  Now the call recorder and the health history's writer hand
what they hold to the ``Spool`` (``hold_calls``, ``hold_health``) at once, and the
gateway's stop writes it (``write``): one JSON-lines file per stop, in the spool
folder (``settings.spool_dir``, default ``$XDG_DATA_HOME/fast-mcp-gateway/spool``),
owner-only, written to a ``.part`` file (locked while it is written), fsynced and
renamed, so a file under its final name is whole; one line says how many and where.
Its first line names the store it is for (the URL without its credentials, or the
SQLite file) and how many of each kind follow; the records are as the store would have
them (arguments and errors already masked, each stamped with the gateway that served
it).

At the next start with the same store (``replay``, once the store answers) every file
for it is written and then removed: call records in batches (one transaction each; a
record whose id is stored already is neither stored nor counted again,
``add_invocations``), health transitions once those already stored are left out (same
time, server, replica, status and gateway).  So a replay cut short by a crash or an
outage is simply run again: nothing is duplicated.  A file is replayed under an
exclusive lock (``flock``, released by a crash): of two gateways of the store on one
host starting together, one replays it and the other leaves it.  Files for another
store stay, and are named at start (with what waits in them and for which store).

A stop killed while it wrote (SIGKILL at the end of a grace period, an OOM kill) left
a ``.part`` file nothing read nor named, for ever.  Before replaying, ``recover`` takes
each ``.part`` of the store whose lock no process holds (its writer died; one being
written is locked and left), keeps the records whole in it -- a record is a line, and
only a line that parses is whole: the last one is torn by the kill -- into a complete
spool file, replayed with the others, and removes the ``.part``; one WARNING names it,
what was recovered and what was lost (its first line says how many it was to hold).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import anyio
import anyio.abc

from fast_mcp_gateway.store.base import Store
from fast_mcp_gateway.store.files import private_dir
from fast_mcp_gateway.store.records import HealthRecord, Invocation
from fast_mcp_gateway.store.retry import while_unavailable
from fast_mcp_gateway.telemetry.redaction import mask_urls

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

FORMAT = 1
BATCH = 500  # call records per transaction when replaying


class Spool:
    """The spool files of the store named ``target`` (a URL without its password, or a
    file path) in ``folder``, and what is held to be written into the next one."""

    def __init__(self, folder: Path, target: str) -> None:
        self.folder = folder
        self.target = target
        self.key = hashlib.sha256(target.encode()).hexdigest()[:16]
        self.calls: list[Invocation] = []
        self.health: list[HealthRecord] = []

    def hold_calls(self, records: Sequence[Invocation]) -> None:
        self.calls.extend(records)

    def hold_health(self, records: Sequence[HealthRecord]) -> None:
        self.health.extend(records)

    def write(self) -> Path | None:
        """Write what is held to a new spool file (module docstring) and say so in one
        line; its path (None: nothing held, or it could not be written: logged, with
        what was lost and the fix)."""
        calls, health = self.calls, self.health
        if not (calls or health):
            return None
        held = _counted(len(calls), len(health))
        try:
            path = self._write(calls, health)
        except OSError as exc:
            self.calls, self.health = [], []
            logger.error("stopping: the store is unreachable, and %s held for it could not "
                         "be spilled to %s (%s): they are lost; make the folder writable "
                         "(or set MCP_GATEWAY_SPOOL_DIR)", held, self.folder, exc)
            return None
        self.calls, self.health = [], []
        logger.warning("stopping: the store is unreachable; spilled %s to %s, written into "
                       "the store at the next start with it", held, path)
        return path

    @property
    def holding(self) -> bool:
        """Something is held to be spilled (the stop's hard-exit backstop waits)."""
        return bool(self.calls or self.health)

    def _write(self, calls: list[Invocation], health: list[HealthRecord]) -> Path:
        private_dir(self.folder)
        path, part, fd = self._created()
        try:
            # Locked until renamed (``recover`` leaves a ``.part`` being written).
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps({"spool": FORMAT, "store": self.target,
                                      "calls": len(calls), "health": len(health)}) + "\n")
                for kind, records in (("call", calls), ("health", health)):
                    for record in records:
                        out.write(json.dumps({kind: dataclasses.asdict(record)}) + "\n")
                out.flush()
                os.fsync(out.fileno())
                os.replace(part, path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        _sync_folder(self.folder)
        return path

    def _created(self) -> tuple[Path, Path, int]:
        """A new spool file's final name, its ``.part`` (created, owner-only) and the
        ``.part``'s descriptor, locked."""
        while True:
            path = self.folder / f"held-{self.key}-{time.time_ns()}-{os.getpid()}.jsonl"
            part = path.with_name(path.name + ".part")
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            if sys.platform == "win32":
                return path, part, fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # a start's ``recover`` took it between the two (empty) and removed it
                if os.path.samestat(os.fstat(fd), os.stat(part)):
                    return path, part, fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def files(self) -> list[Path]:
        """This store's spool files, oldest first."""
        return sorted(self.folder.glob(f"held-{self.key}-*.jsonl"))

    def others(self) -> list[tuple[Path, str, str]]:
        """Other stores' spool files, and ``.part`` files no process writes (a stop
        killed while it spilled): (path, store, what it holds)."""
        found = []
        for path in sorted([*self.folder.glob("held-*.jsonl"),
                            *self.folder.glob("held-*.jsonl.part")]):
            if path.name.startswith(f"held-{self.key}-"):
                continue
            with _claimed(path) as claim:
                if claim is None:  # being written (a ``.part``), or replayed
                    continue
                cut = " (some of them: a spill cut short at a stop)" * (path.suffix == ".part")
                try:
                    head = json.loads(claim.readline())
                    found.append((path, str(head["store"]), _counted(
                        int(head["calls"]), int(head["health"])) + cut))
                except (OSError, ValueError, KeyError, TypeError):
                    found.append((path, "an unknown store", "records" + cut))
        return found

    async def run(self, store: Store, *,
                  task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The start's task: name other stores' files, replay this one's into ``store``
        (a store not open yet, ``DeferredStore``, is waited for as an outage)."""
        task_status.started()
        self.name_others()
        await self.replay(lambda: store)

    async def replay(self, store: Callable[[], Store]) -> int:
        """Write every spool file of this store into ``store()`` and remove it (waiting
        out an outage); the number of records written.  A file that cannot be read, or
        whose records the store refuses, is left where it is, logged with what to do."""
        await anyio.to_thread.run_sync(self.recover)
        written = 0
        for path in self.files():
            with _claimed(path) as claim:
                if claim is not None:  # else replayed, or being replayed, by another
                    written += await self._replay(path, claim, store)
        return written

    async def _replay(self, path: Path, claim: IO[str], store: Callable[[], Store]) -> int:
        """Write the claimed file ``path`` into ``store()`` and remove it."""
        try:
            calls, health = await anyio.to_thread.run_sync(_read, path, claim)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("cannot replay the spilled records in %s (%s); move the file "
                         "away to stop this message (its records are not in the store)",
                         path, exc)
            return 0
        try:
            await _write(store, calls, health)
        except Exception as exc:  # noqa: BLE001 - a refused record must not stop the start
            logger.error("cannot write the spilled records in %s into the store (%s); the "
                         "file is kept: move the file away to stop this message (the "
                         "records not written are not in the store)", path, exc)
            return 0
        if sys.platform == "win32":  # an open file cannot be removed there
            claim.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        logger.info("wrote %s spilled at an earlier stop from %s into the store; removed "
                    "the file", _counted(len(calls), len(health)), path)
        return len(calls) + len(health)

    def parts(self) -> list[Path]:
        """This store's ``.part`` files: being written, or left by a stop killed then."""
        return sorted(self.folder.glob(f"held-{self.key}-*.jsonl.part"))

    def recover(self) -> list[Path]:
        """Make a complete spool file of the whole records of each ``.part`` file of
        this store no process writes, and remove it (module docstring); the files made."""
        made = []
        for part in self.parts():
            with _claimed(part) as claim:
                if claim is not None:  # else being written, or recovered by another
                    path = self._recover(part, claim)
                    made += [path] if path is not None else []
        return made

    def _recover(self, part: Path, claim: IO[str]) -> Path | None:
        with open(claim.fileno(), "rb", closefd=False) as raw:
            data = raw.read()
        try:
            head, calls, health, bad = _salvage(data)
        except ValueError as exc:
            logger.error("cannot recover the records of %s, a spill cut short at a stop "
                         "(%s); move the file away to stop this message (its records are "
                         "not in the store)", part, exc)
            return None
        got = _counted(len(calls), len(health))
        if head is None:
            meant, lost = "an unknown number (its first line is torn)", "unknown"
        else:
            meant = "the " + _counted(head["calls"], head["health"])
            missing = (max(0, head["calls"] - len(calls)), max(0, head["health"] - len(health)))
            lost = _counted(*missing) if any(missing) else "nothing"
        path = None
        if calls or health:
            try:
                path = self._write(calls, health)
            except OSError as exc:
                logger.error("cannot recover the records of %s, a spill cut short at a "
                             "stop: writing them to %s failed (%s); make the folder "
                             "writable (the file is kept)", part, self.folder, exc)
                return None
        if sys.platform == "win32":  # an open file cannot be removed there
            claim.close()
        with contextlib.suppress(OSError):  # else recovered again: replays add nothing
            os.unlink(part)
        _sync_folder(self.folder)
        logger.warning("%s: a spill cut short at a stop (the gateway was killed while it "
                       "wrote it): recovered %s of %s it was to hold%s; %slost: %s; "
                       "removed the file", part, got if calls or health else "none", meant,
                       f", to be written into the store from {path}" if path else "",
                       f"{bad} torn or unreadable line(s) skipped, " if bad else "", lost)
        return path

    def name_others(self) -> None:
        """Say which spool files wait for another store (a gateway started with
        another --db), and how to write them."""
        for path, target, held in self.others():
            logger.warning("%s holds %s spilled for %s, not this gateway's store: a gateway "
                           "started with that store (--db) writes them; delete the file if "
                           "they are not wanted", path, held, target)


def spool_target(db: str | os.PathLike[str]) -> str:
    """What names a store in its spool files: its URL without credentials, or its file."""
    text = os.fspath(db)
    if re.match(r"[A-Za-z][A-Za-z0-9+.\-]+:", text) and not text.lower().startswith("sqlite:"):
        return mask_urls(text)  # its user and password, a ?password=... too
    path = text.split(":", 1)[1].lstrip("/") if text.lower().startswith("sqlite:") else text
    return str(Path(("/" + path) if text.lower().startswith("sqlite:") else path).resolve())


@contextmanager
def _claimed(path: Path) -> Iterator[IO[str] | None]:
    """``path`` opened and locked for this process to replay; None when another
    process holds it (replaying it) or removed it (replayed it)."""
    try:
        claim = path.open(encoding="utf-8")
    except FileNotFoundError:
        claim = None
    if claim is None:
        yield None
        return
    with claim:
        yield claim if _locked(claim, path) else None


def _locked(claim: IO[str], path: Path) -> bool:
    """Whether this process now holds ``claim``'s lock, and it is still the file under
    ``path`` (not replayed and removed meanwhile).  The lock goes with the process."""
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(claim.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    try:
        return os.path.samestat(os.fstat(claim.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


async def _write(store: Callable[[], Store], calls: list[Invocation],
                 health: list[HealthRecord]) -> None:
    """Write ``calls`` (in batches) and the ``health`` transitions not stored yet into
    ``store()``, waiting out an outage; the store's refusal is raised."""
    for start in range(0, len(calls), BATCH):
        chunk = calls[start:start + BATCH]

        async def write(chunk: list[Invocation] = chunk) -> None:
            await store().add_invocations(chunk)

        await while_unavailable(write, first=0.5, most=5.0)

    async def write_health() -> None:
        await store().add_health_records(await _not_stored(store(), health))

    await while_unavailable(write_health, first=0.5, most=5.0)


def _read(path: Path, lines: IO[str]) -> tuple[list[Invocation], list[HealthRecord]]:
    calls: list[Invocation] = []
    health: list[HealthRecord] = []
    head = json.loads(lines.readline())
    if head.get("spool") != FORMAT:
        raise ValueError(f"spool format {head.get('spool')!r}, this gateway reads {FORMAT}")
    for line in lines:
        if line.strip():
            entry = json.loads(line)
            if "call" in entry:
                calls.append(Invocation(**entry["call"]))
            else:
                health.append(HealthRecord(**entry["health"]))
    if (len(calls), len(health)) != (head["calls"], head["health"]):
        raise ValueError(f"{len(calls)} call record(s) and {len(health)} health transition(s) "
                         f"where its first line says {head['calls']} and {head['health']}")
    return calls, health


def _salvage(data: bytes) -> tuple[dict[str, int] | None, list[Invocation],
                                  list[HealthRecord], int]:
    """What a ``.part`` file holds whole: its first line's counts (None: torn), its
    records, and how many lines are torn or unreadable.  A spool format it does not
    know is raised (a newer gateway's file: left to it)."""
    head: dict[str, int] | None = None
    calls: list[Invocation] = []
    health: list[HealthRecord] = []
    bad = 0
    for number, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)  # a line cut short never parses: a JSON object
        except ValueError:
            bad += 1
            continue
        if number == 0 and isinstance(entry, dict) and entry.get("spool") != FORMAT:
            raise ValueError(f"spool format {entry.get('spool')!r}, this gateway reads "
                             f"{FORMAT}")
        try:
            if number == 0:
                head = {"calls": int(entry["calls"]), "health": int(entry["health"])}
            elif "call" in entry:
                calls.append(Invocation(**entry["call"]))
            else:
                health.append(HealthRecord(**entry["health"]))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return head, calls, health, bad


async def _not_stored(store: Store, health: list[HealthRecord]) -> list[HealthRecord]:
    """``health`` without the transitions the store holds already (a replay cut short
    after they were written): the store's history of each server, newest first, back to
    the oldest one spilled."""
    def key(r: HealthRecord) -> tuple[object, ...]:
        return (r.at, r.server, r.replica, r.status, r.instance_id)

    stored: set[tuple[object, ...]] = set()
    for server in sorted({r.server for r in health}):
        oldest = min(r.at for r in health if r.server == server)
        before: int | None = None
        while True:
            page = await store.health_records(server=server, limit=500, before_id=before)
            stored.update(key(r) for r in page)
            if len(page) < 500 or page[-1].at < oldest:
                break
            before = page[-1].id
    return [r for r in health if key(r) not in stored]


def _counted(calls: int, health: int) -> str:
    parts = [f"{calls} call record(s)"] if calls or not health else []
    if health:
        parts.append(f"{health} health transition(s)")
    return " and ".join(parts)


def _sync_folder(folder: Path) -> None:
    """fsync the folder: the rename survives a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

