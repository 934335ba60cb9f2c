"""Call records spilled to a local file when the gateway stops while its store is away.

A stop waited for an unreachable store to take the records it held, for the whole
flush budget (``shutdown_flush_timeout``, 30 s: an orchestrator's whole grace period),
and then dropped them.  Now the call recorder hands what it holds to ``CallSpool.spill``
at once: one JSON-lines file per stop, in the spool folder (``settings.spool_dir``,
default ``$XDG_DATA_HOME/fast-mcp-gateway/spool``), owner-only, written to a ``.part``
file, fsynced and renamed, so a file under its final name is whole.  Its first line
names the store it is for (the URL without its password) and how many records follow;
the records are already redacted (arguments masked, errors masked) as the store would
have them, and stamped with the gateway that served them.

At the next start with the same store (``replay``, once the store is open) every
file for it is written in batches and then removed.  A batch is one transaction, and
a record whose id is stored already is neither stored nor counted again
(``add_invocations``), so a replay cut short by a crash or an outage is simply run
again: nothing is duplicated.  Files for another store stay, and are named once at
start (with how many records wait in them and for which store).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from fast_mcp_gateway.store.base import InvocationStore
from fast_mcp_gateway.store.files import private_dir
from fast_mcp_gateway.store.records import Invocation
from fast_mcp_gateway.store.retry import while_unavailable

logger = logging.getLogger(__name__)

FORMAT = 1
BATCH = 500  # records per transaction when replaying


class CallSpool:
    """The spool files of the store named ``target`` (a URL without its password, or a
    file path) in ``folder``."""

    def __init__(self, folder: Path, target: str) -> None:
        self.folder = folder
        self.target = target
        self.key = hashlib.sha256(target.encode()).hexdigest()[:16]

    def spill(self, records: Sequence[Invocation]) -> Path:
        """Write ``records`` to a new spool file (module docstring); its path.
        ``OSError`` when it cannot be written."""
        private_dir(self.folder)
        path = self.folder / f"calls-{self.key}-{time.time_ns()}-{os.getpid()}.jsonl"
        part = path.with_name(path.name + ".part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps({"spool": FORMAT, "store": self.target,
                                      "records": len(records)}) + "\n")
                for record in records:
                    out.write(json.dumps(dataclasses.asdict(record)) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        _sync_folder(self.folder)
        return path

    def files(self) -> list[Path]:
        """This store's spool files, oldest first."""
        return sorted(self.folder.glob(f"calls-{self.key}-*.jsonl"))

    def others(self) -> list[tuple[Path, str, int]]:
        """Other stores' spool files: (path, store, records)."""
        found = []
        for path in sorted(self.folder.glob("calls-*.jsonl")):
            if path.name.startswith(f"calls-{self.key}-"):
                continue
            try:
                head = json.loads(path.open(encoding="utf-8").readline())
                found.append((path, str(head["store"]), int(head["records"])))
            except (OSError, ValueError, KeyError, TypeError):
                found.append((path, "an unknown store", 0))
        return found

    async def replay(self, store: Callable[[], InvocationStore]) -> int:
        """Write every spool file of this store into ``store()`` and remove it (waiting
        out an outage); the number of records written.  A file that cannot be read is
        left where it is, logged with what to do."""
        written = 0
        for path in self.files():
            try:
                records = await anyio.to_thread.run_sync(_read, path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.error("cannot replay the spooled call records in %s (%s); move the "
                             "file away to stop this message (its records are not in the "
                             "store)", path, exc)
                continue
            for start in range(0, len(records), BATCH):
                chunk = records[start:start + BATCH]

                async def write(chunk: list[Invocation] = chunk) -> None:
                    await store().add_invocations(chunk)

                await while_unavailable(write, first=0.5, most=5.0)
            path.unlink()
            written += len(records)
            logger.info("wrote %d spooled call record(s) from %s into the store; removed "
                        "the file", len(records), path)
        return written

    def name_others(self) -> None:
        """Say once which spool files wait for another store (a gateway started with
        another --db), and how to write them."""
        for path, target, count in self.others():
            logger.warning("%s holds %d call record(s) spilled for %s, not this gateway's "
                           "store: a gateway started with that store (--db) writes them; "
                           "delete the file if they are not wanted", path, count, target)


def spool_target(db: str | os.PathLike[str]) -> str:
    """What names a store in its spool files: its URL without the password, or its file."""
    text = os.fspath(db)
    if re.match(r"[A-Za-z][A-Za-z0-9+.\-]+:", text) and not text.lower().startswith("sqlite:"):
        return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", text)
    path = text.split(":", 1)[1].lstrip("/") if text.lower().startswith("sqlite:") else text
    return str(Path(("/" + path) if text.lower().startswith("sqlite:") else path).resolve())


def _read(path: Path) -> list[Invocation]:
    with path.open(encoding="utf-8") as lines:
        head = json.loads(lines.readline())
        if head.get("spool") != FORMAT:
            raise ValueError(f"spool format {head.get('spool')!r}, this gateway reads {FORMAT}")
        records = [Invocation(**json.loads(line)) for line in lines if line.strip()]
    if len(records) != head["records"]:
        raise ValueError(f"{len(records)} record(s) where its first line says "
                         f"{head['records']}")
    return records


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

