"""What was held for the store, spilled to a local file when the gateway stops while
the store is away.

A stop waited for an unreachable store to take the records it held, for the whole
flush budget (``shutdown_flush_timeout``, 30 s: an orchestrator's whole grace period),
and then dropped them.  Now the call recorder, the health history's writer and the
held audit entries' (``admin/held_audit.py``) hand what they hold to the ``Spool``
(``hold_calls``, ``hold_health``, ``hold_audit``) at once, and the gateway's stop
writes it (``write``): one JSON-lines file per stop, in the spool
folder (``settings.spool_dir``, default ``$XDG_DATA_HOME/fast-mcp-gateway/spool``),
owner-only, written to a ``.part`` file (locked while it is written), fsynced and
renamed, so a file under its final name is whole; one line says how many and where.
Its first line names the store it is for (the URL without its credentials, or the
SQLite file) and how many of each kind follow; the records are as the store would have
them (arguments and errors already masked, each stamped with the gateway that served
it; the format: ``store/spool_records.py``).

At the next start with the same store (``replay``, once the store answers) every file
for it is written and then removed, nothing already stored written again
(``spool_records.write_into``): a replay cut short by a crash or an outage is simply
run again.  A file is replayed under an
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
from fast_mcp_gateway.store.records import AuditEntry, HealthRecord, Invocation
from fast_mcp_gateway.store.spool_records import (
    BATCH,
    Held,
    counted,
    head_counts,
    read,
    salvage,
    write_into,
)
from fast_mcp_gateway.telemetry.redaction import mask_urls

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

__all__ = ["BATCH", "Spool", "spool_target"]
UNREACHABLE = "the store is unreachable"


class Spool:
    """The spool files of the store named ``target`` (a URL without its password, or a
    file path) in ``folder``, and what is held to be written into the next one."""

    def __init__(self, folder: Path, target: str) -> None:
        self.folder = folder
        self.target = target
        self.key = hashlib.sha256(target.encode()).hexdigest()[:16]
        self.held = Held()
        self._why: list[str] = []  # why what is held was not written (``write``'s line)

    def hold_calls(self, records: Sequence[Invocation]) -> None:
        self.held.calls.extend(records)
        self._because(UNREACHABLE)

    def hold_health(self, records: Sequence[HealthRecord]) -> None:
        self.held.health.extend(records)
        self._because(UNREACHABLE)

    def hold_audit(self, entries: Sequence[AuditEntry], why: str = "") -> None:
        """Hold audit entries: the store was unreachable, or ``why`` they were not
        written (an admin operation still running as the store closed)."""
        self.held.audit.extend(entries)
        self._because(why or UNREACHABLE)

    def _because(self, why: str) -> None:
        if why not in self._why:
            self._why.append(why)

    def write(self) -> Path | None:
        """Write what is held to a new spool file (module docstring) and say so in one
        line; its path (None: nothing held, or it could not be written: logged, with
        what was lost and the fix)."""
        held, self.held = self.held, Held()
        why, self._why = "; ".join(self._why) or UNREACHABLE, []
        if not held:
            return None
        try:
            path = self._write(held)
        except OSError as exc:
            logger.error("stopping: %s, and %s held for it could not be spilled to %s "
                         "(%s): they are lost; make the folder writable (or set "
                         "MCP_GATEWAY_SPOOL_DIR)", why, counted(*held.counts()),
                         self.folder, exc)
            return None
        logger.warning("stopping: %s; spilled %s to %s, written into the store at the next "
                       "start with it", why, counted(*held.counts()), path)
        return path

    @property
    def holding(self) -> bool:
        """Something is held to be spilled (the stop's hard-exit backstop waits)."""
        return bool(self.held)

    def _write(self, held: Held) -> Path:
        private_dir(self.folder)
        path, part, fd = self._created()
        try:
            # Locked until renamed (``recover`` leaves a ``.part`` being written).
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.writelines(held.lines(self.target))
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
                    found.append((path, str(head["store"]), counted(*head_counts(head)) + cut))
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
            held = await anyio.to_thread.run_sync(read, claim)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("cannot replay the spilled records in %s (%s); move the file "
                         "away to stop this message (its records are not in the store)",
                         path, exc)
            return 0
        try:
            await write_into(store, held)
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
                    "the file", counted(*held.counts()), path)
        return len(held)

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
            meant, held, bad = salvage(data)
        except ValueError as exc:
            logger.error("cannot recover the records of %s, a spill cut short at a stop "
                         "(%s); move the file away to stop this message (its records are "
                         "not in the store)", part, exc)
            return None
        if meant is None:
            whole, lost = "an unknown number (its first line is torn)", "unknown"
        else:
            whole = "the " + counted(*meant)
            missing = [max(0, m - n) for m, n in zip(meant, held.counts(), strict=True)]
            lost = counted(*missing) if any(missing) else "nothing"
        path = None
        if held:
            try:
                path = self._write(held)
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
                       "removed the file", part, counted(*held.counts()) if held else "none",
                       whole,
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

